// Head: LibTorch's forward pass against the JavaScript reference, state dicts, config errors.
import test from "ava";
import { Head, referenceForward } from "../lib/head.js";

function input(n: number, d: number) {
  return { data: Float32Array.from({ length: n * d }, (_, i) => Math.sin(i * 0.37) * 2), shape: [n, d] };
}

for (const activation of ["gelu", "quick_gelu", "relu", "tanh"] as const) {
  test(`forward matches the JavaScript reference (${activation})`, async (t) => {
    const config = { inFeatures: 24, hidden: [40, 16], outFeatures: 5, activation, seed: 11 };
    const head = new Head(config);
    const x = input(9, 24);
    const y = await head.forward(x);
    t.deepEqual(y.shape, [9, 5]);
    const ref = referenceForward(config, await head.stateDict(), x.data, 9);
    ref.forEach((v, i) => t.true(Math.abs(v - y.data[i]!) < 1e-5, `[${i}] ${y.data[i]} vs ${v}`));
  });
}

test("the seed decides the initial weights, with torch.nn.Linear's bounds", async (t) => {
  const a = await new Head({ inFeatures: 16, outFeatures: 4, seed: 1 }).stateDict();
  const b = await new Head({ inFeatures: 16, outFeatures: 4, seed: 1 }).stateDict();
  const c = await new Head({ inFeatures: 16, outFeatures: 4, seed: 2 }).stateDict();
  t.deepEqual(Object.keys(a), ["layers.0.weight", "layers.0.bias"]);
  t.deepEqual(Array.from(a["layers.0.weight"]!.data), Array.from(b["layers.0.weight"]!.data));
  t.notDeepEqual(Array.from(a["layers.0.weight"]!.data), Array.from(c["layers.0.weight"]!.data));
  t.true(Array.from(a["layers.0.weight"]!.data).every((v) => Math.abs(v) <= 0.25));
  t.deepEqual(a["layers.0.weight"]!.shape, [4, 16]);
});

test("stateDict returns copies; loadStateDict copies in", async (t) => {
  const head = new Head({ inFeatures: 4, outFeatures: 2, seed: 3 });
  const state = await head.stateDict();
  state["layers.0.weight"]!.data.fill(0);
  t.notDeepEqual(Array.from((await head.stateDict())["layers.0.weight"]!.data), [0, 0, 0, 0, 0, 0, 0, 0]);
  await head.loadStateDict(state);
  state["layers.0.bias"]!.data.fill(9); // after loading: must not reach the head
  const y = await head.forward(input(1, 4));
  t.deepEqual(Array.from(y.data), Array.from((await head.stateDict())["layers.0.bias"]!.data));
});

test("bad state dicts are rejected naming the key, and the head keeps its weights", async (t) => {
  const head = new Head({ inFeatures: 4, hidden: [3], outFeatures: 2, seed: 4 });
  const good = await head.stateDict();
  const { ["layers.1.bias"]: _dropped, ...missing } = good;
  await t.throwsAsync(head.loadStateDict(missing), {
    instanceOf: RangeError,
    message: 'stateDict["layers.1.bias"]: missing',
  });
  await t.throwsAsync(head.loadStateDict({ ...good, "layers.2.weight": good["layers.0.weight"]! }), {
    instanceOf: RangeError,
    message: 'stateDict["layers.2.weight"]: not a parameter of this head',
  });
  await t.throwsAsync(
    head.loadStateDict({ ...good, "layers.0.weight": { data: new Float32Array(12), shape: [4, 3] } }),
    {
      instanceOf: RangeError,
      message: 'stateDict["layers.0.weight"]: expected shape [3, 4] (2-D), got [4, 3]',
    },
  );
  await t.throwsAsync(
    head.loadStateDict({ ...good, "layers.1.bias": { data: Float32Array.from([1, NaN]), shape: [2] } }),
    { instanceOf: RangeError, message: /^stateDict\["layers\.1\.bias"\]\.data\[1\] is NaN/ },
  );
  t.deepEqual(await head.stateDict(), good);
});

test("config errors name the key", (t) => {
  t.throws(() => new Head({ inFeatures: 4, hidden: [8, 0], outFeatures: 2 }), {
    instanceOf: TypeError,
    message: /^Head config: hidden\[1\]: /,
  });
  t.throws(() => new Head({ inFeatures: 4, outFeatures: 2, activation: "swish" as "gelu" }), {
    instanceOf: TypeError,
    message: /^Head config: activation: /,
  });
  t.throws(
    () => new Head({ inFeatures: 4, outFeatures: 2, dropout: 0.1 } as unknown as { inFeatures: 4; outFeatures: 2 }),
    { instanceOf: TypeError, message: /dropout/ },
  );
  t.deepEqual(new Head({ inFeatures: 4, outFeatures: 2 }).config, {
    inFeatures: 4,
    hidden: [],
    outFeatures: 2,
    activation: "gelu",
  });
});
