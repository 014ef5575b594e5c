// Training-step options: frozen towers, gradient checkpointing, bfloat16 autocast (float16 needs
// CUDA, which these tests cannot reach: its loss scaler is checked through the exported state only).
import test from "ava";
import { ViLReF } from "../lib/model/vilref.js";
import { lossScalerUpdate, Trainer } from "../lib/train/trainer.js";
import { batch, C } from "./helpers/train-batch.js";

type Dict = Record<string, { data: ArrayLike<number | bigint> }>;
const floats = (t: { data: ArrayLike<number | bigint> }) => Array.from(t.data as ArrayLike<number>);
const same = (a: Dict, b: Dict, k: string) => {
  const x = floats(a[k]!),
    y = floats(b[k]!);
  return x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
};

for (const tower of ["visual", "text"] as const) {
  test(`freeze ["${tower}"]: the tower stays bit-identical (momentum copy too), the rest trains`, async (t) => {
    const model = ViLReF.create("tiny-vit", { seed: 11 });
    const before = (await model.stateDict()) as Dict;
    const trainer = new Trainer(model, { labelDim: C, lr: 1e-2, queueSize: 8, momentum: 0.9, freeze: [tower] });
    for (let i = 0; i < 3; i++) t.true(Number.isFinite((await trainer.step(batch(4, 20 + i))).loss));
    const after = (await model.stateDict()) as Dict;
    const momentum = (await trainer.momentumStateDict()) as Dict;
    const frozen = (k: string) =>
      tower === "visual" ? k.startsWith("visual.") && k !== "visual.proj" : k.startsWith("bert.");
    const keys = Object.keys(before).filter((k) => !k.endsWith("position_ids"));
    const frozenKeys = keys.filter(frozen);
    t.true(frozenKeys.length > 5);
    for (const k of frozenKeys) {
      t.true(same(before, after, k), `${k} moved`);
      t.true(same(after, momentum, k), `momentum ${k} differs`);
    }
    const otherTower = keys.filter(
      (k) => (tower === "visual" ? k.startsWith("bert.") : k.startsWith("visual.")) && k.endsWith("weight"),
    );
    t.true(
      otherTower.some((k) => !same(before, after, k)),
      "the other tower trained",
    );
    for (const k of ["visual.proj", "text_projection"]) t.false(same(before, after, k), `${k} trained`);
    // the model's own flags are restored: a trainer without freeze trains the tower
    const free = new Trainer(model, { labelDim: C, lr: 1e-2, queueSize: 0 });
    await free.step(batch(4, 30));
    t.false(
      same(
        after,
        (await model.stateDict()) as Dict,
        frozenKeys.find((k) => k.endsWith("weight"))!,
      ),
    );
  });
}

test("freeze: bad towers are named", (t) => {
  const model = ViLReF.create("tiny-vit");
  t.throws(() => new Trainer(model, { labelDim: C, freeze: ["image" as "visual"] }), {
    instanceOf: RangeError,
    message: 'options.freeze[0]: expected "visual" or "text"',
  });
  t.throws(() => new Trainer(model, { labelDim: C, freeze: "visual" as unknown as ["visual"] }), {
    instanceOf: TypeError,
    message: /^options\.freeze:/,
  });
  t.throws(() => new Trainer(model, { labelDim: C, gradientCheckpointing: 1 as unknown as boolean }), {
    instanceOf: TypeError,
    message: /^options\.gradientCheckpointing:/,
  });
});

function maxRelDiff(a: Dict, b: Dict): { worst: number; key: string; changed: number } {
  let worst = 0,
    key = "",
    changed = 0;
  for (const k of Object.keys(a)) {
    const x = floats(a[k]!),
      y = floats(b[k]!);
    if (typeof x[0] !== "number") continue;
    let scale = 1e-6,
      diff = 0;
    x.forEach((v, i) => {
      scale = Math.max(scale, Math.abs(v));
      diff = Math.max(diff, Math.abs(v - y[i]!));
    });
    const d = diff / scale;
    if (d > worst) [worst, key] = [d, k];
    changed++;
  }
  return { worst, key, changed };
}

for (const preset of ["tiny-vit"]) {
  // ResNet stages are not checkpointed
  test(`gradient checkpointing gives the same losses and weights (${preset})`, async (t) => {
    const run = async (gradientCheckpointing: boolean) => {
      const model = ViLReF.create(preset, { seed: 12 });
      const trainer = new Trainer(model, { labelDim: C, lr: 1e-3, queueSize: 8, gradientCheckpointing });
      const losses: number[] = [];
      const recomputed: number[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await trainer.step(batch(4, 40 + i));
        losses.push(r.loss);
        recomputed.push(r.recomputedBlocks);
      }
      return { losses, recomputed, state: (await model.stateDict()) as Dict };
    };
    const plain = await run(false),
      ckpt = await run(true);
    // tiny-vit: 2 ViT blocks + 2 BERT layers re-run in each step's backward, none without the option
    t.deepEqual(plain.recomputed, [0, 0]);
    t.deepEqual(ckpt.recomputed, [4, 4]);
    const lossDiff = Math.max(...plain.losses.map((l, i) => Math.abs(l - ckpt.losses[i]!) / Math.abs(l)));
    const w = maxRelDiff(plain.state, ckpt.state);
    t.log(
      `${preset}: loss rel diff ${lossDiff.toExponential(2)}, worst weight rel diff ` +
        `${w.worst.toExponential(2)} (${w.key}) over ${w.changed} tensors`,
    );
    t.true(lossDiff <= 1e-5);
    t.true(w.worst <= 1e-5, `${w.key}: ${w.worst}`);
  });
}

test("bfloat16 autocast: the loss is within bf16 tolerance of float32, weights stay float32", async (t) => {
  const step = async (precision: "float32" | "bfloat16") => {
    const model = ViLReF.create("tiny-vit", { seed: 13 });
    const trainer = new Trainer(model, { labelDim: C, lr: 1e-3, queueSize: 8, precision });
    const r1 = await trainer.step(batch(4, 50));
    const r2 = await trainer.step(batch(4, 51)); // with momentum features from the queue
    return { losses: [r1.loss, r2.loss], model, r2 };
  };
  const f32 = await step("float32"),
    bf16 = await step("bfloat16");
  const rel = f32.losses.map((l, i) => Math.abs(l - bf16.losses[i]!) / Math.abs(l));
  t.log(
    `loss float32 ${f32.losses.map((l) => l.toFixed(5))} bfloat16 ${bf16.losses.map((l) => l.toFixed(5))}; ` +
      `rel diff ${rel.map((r) => r.toExponential(2))}`,
  );
  t.true(rel.every((r) => r < 2e-2));
  t.true(
    rel.some((r) => r > 0),
    "autocast changed the arithmetic (the test can fail)",
  );
  t.is(bf16.model.dtype, "float32");
  const sd = await bf16.model.stateDict();
  t.true(
    Object.values(sd).every(
      (v) =>
        !(v.data instanceof Float32Array) ||
        (v as { dtype?: string }).dtype === undefined ||
        (v as { dtype?: string }).dtype === "float32",
    ),
  );
  t.true(sd["visual.proj"]!.data instanceof Float32Array);
  t.is(bf16.r2.lossScale, 1);
  t.false(bf16.r2.overflow);
});

test("precision: float16 needs CUDA, names are checked", (t) => {
  const model = ViLReF.create("tiny-vit");
  t.throws(() => new Trainer(model, { labelDim: C, precision: "float16" }), {
    instanceOf: RangeError,
    message: /^options\.precision: float16 \(with loss scaling\) needs a CUDA device/,
  });
  t.throws(() => new Trainer(model, { labelDim: C, precision: "half" as "float16" }), {
    instanceOf: RangeError,
    message: 'options.precision: expected "float32", "bfloat16" or "float16"',
  });
  // (a bfloat16/float16 model, which the Trainer refuses with mixed precision, exists on CUDA only)
});

test("the loss scaler's state is exported and imported (2^16 at the start)", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 14 });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 4 });
  const state = await trainer.exportState();
  t.deepEqual(floats(state["trainer.scaler"]!), [65536, 0]);
  await trainer.importState({ ...state, "trainer.scaler": { data: Float32Array.of(1024, 7), shape: [2] } });
  t.deepEqual(floats((await trainer.exportState())["trainer.scaler"]!), [1024, 7]);
  await t.throwsAsync(
    trainer.importState({ ...state, "trainer.scaler": { data: Float32Array.of(0, 7), shape: [2] } }),
    { instanceOf: RangeError, message: /^state\["trainer\.scaler"\]/ },
  );
  const { ["trainer.scaler"]: _, ...older } = state;
  await trainer.importState(older); // records of older versions have none
  t.pass();
});

test("the float16 loss scaler: ×2 after `interval` finite steps, ÷2 and skip on inf/nan", (t) => {
  t.deepEqual(lossScalerUpdate(65536, 0, [true, true, true], 3), {
    scale: 131072,
    goodSteps: 0,
    applied: [true, true, true],
  });
  t.deepEqual(lossScalerUpdate(65536, 1, [true, false, true], 3), {
    scale: 32768,
    goodSteps: 1,
    applied: [true, false, true],
  });
  const run = lossScalerUpdate(
    65536,
    0,
    Array.from({ length: 4001 }, (_, i) => i !== 4000),
  );
  t.deepEqual([run.scale, run.goodSteps, run.applied.filter((a) => !a).length], [(65536 * 4) / 2, 0, 1]);
  t.deepEqual(lossScalerUpdate(65536, 1999, [true]), { scale: 131072, goodSteps: 0, applied: [true] });
  t.throws(() => lossScalerUpdate(0, 0, []), { instanceOf: RangeError, message: /^scale:/ });
});

test("a seeded model is the same while another trainer restores its state on a worker thread", async (t) => {
  // The process's CPU generator is shared: a trainer's importState sets its state (for an exact
  // resume) on a libuv thread while the main thread may be seeding and drawing a new model's
  // initial weights. Those two must not interleave.
  const ref = (await ViLReF.create("tiny-vit", { seed: 21 }).stateDict()) as Dict;
  const trainer = new Trainer(ViLReF.create("tiny-vit", { seed: 22 }), { labelDim: C, queueSize: 4 });
  const state = await trainer.exportState();
  let differing = 0;
  for (let i = 0; i < 24; i++) {
    const restoring = [trainer.importState(state), trainer.importState(state)];
    const model = ViLReF.create("tiny-vit", { seed: 21 });
    await Promise.all(restoring);
    const w = maxRelDiff(ref, (await model.stateDict()) as Dict);
    if (w.worst !== 0) differing++;
  }
  t.is(differing, 0, `${differing} of 24 models created during a restore differ from the seed's`);
});
