// Fine-tuning: the loss falls on a toy set, the frozen backbone stays bit-identical, the best
// epoch by validation is the one restored, argument errors name the argument.
import test from "ava";
import { Finetuner } from "../lib/finetune/finetuner.js";
import { better, finetune, scoreProbabilities, scoreSplit } from "../lib/finetune/train.js";
import type { LabeledBatch } from "../lib/finetune/train.js";
import { ViLReF } from "../lib/model/vilref.js";

const R = 32;

/** n toy images: label 0 = bright, label 1 = left half brighter than the right. */
function toy(n: number, seed: number, invert = false): LabeledBatch {
  const images = new Float32Array(n * 3 * R * R),
    labels = new Float32Array(n * 2);
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < n; i++) {
    const bright = i % 2,
      left = (i >> 1) % 2;
    labels[2 * i] = invert ? 1 - bright : bright;
    labels[2 * i + 1] = invert ? 1 - left : left;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < R; y++)
        for (let x = 0; x < R; x++)
          images[((i * 3 + c) * R + y) * R + x] =
            (bright ? 1 : -1) + (left && x < R / 2 ? 1 : 0) + 0.3 * (rand() - 0.5);
  }
  return { images: { data: images, shape: [n, 3, R, R] }, labels: { data: labels, shape: [n, 2] } };
}

function visualOf(state: Record<string, { data: ArrayLike<number | bigint> }>): Map<string, number[]> {
  return new Map(
    Object.entries(state)
      .filter(([k]) => k.startsWith("visual."))
      .map(([k, v]) => [k, Array.from(v.data as ArrayLike<number>)]),
  );
}

test("the BCE falls on a toy multi-label set", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const ft = new Finetuner(model, { classes: 2, lr: 1e-2, backboneLr: 1e-4, seed: 1 });
  t.like(ft.config, { classes: 2, width: 64, frozen: false });
  const batch = toy(16, 1);
  const losses: number[] = [];
  for (let i = 0; i < 30; i++) losses.push((await ft.step(batch)).loss);
  t.true(losses.at(-1)! < 0.6 * losses[0]!, `losses ${losses[0]} → ${losses.at(-1)}`);
  const p = await ft.predict(batch.images);
  t.deepEqual(p.shape, [16, 2]);
  const scores = scoreProbabilities(p.data, batch.labels.data, 2);
  t.true(scores.auc[0]! > 0.9 && scores.meanAuc > 0.7, `AUC ${scores.auc.join(", ")}`);
});

test("frozen: the backbone stays bit-identical and is not in the state; unfrozen it moves", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 2 });
  const before = visualOf(await model.stateDict());
  const frozen = new Finetuner(model, { classes: 2, frozen: true });
  const head0 = await frozen.stateDict();
  t.deepEqual(Object.keys(head0).sort(), ["head.bias", "head.weight"]);
  for (let i = 0; i < 5; i++) await frozen.step(toy(8, i));
  t.deepEqual(visualOf(await model.stateDict()), before);
  t.notDeepEqual(
    Array.from((await frozen.stateDict())["head.weight"]!.data as Float32Array),
    Array.from(head0["head.weight"]!.data as Float32Array),
  );
  const open = new Finetuner(model, { classes: 2, backboneLr: 1e-3 });
  t.true(Object.keys(await open.stateDict()).includes("visual.conv1.weight"));
  await open.step(toy(8, 9));
  t.notDeepEqual(visualOf(await model.stateDict()).get("visual.conv1.weight"), before.get("visual.conv1.weight"));
});

test("the best epoch by validation is kept and restored", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const ft = new Finetuner(model, { classes: 2, lr: 1e-2, backboneLr: 0, seed: 3 });
  const train = toy(16, 4),
    val = toy(8, 5, true); // validation labels inverted: training makes it worse
  const once = (b: LabeledBatch) =>
    async function* () {
      yield b;
    };
  const result = await finetune(ft, { epochs: 4, train: once(train), val: once(val), test: once(val) });
  t.is(result.epochs.length, 4);
  let best = 0;
  result.epochs.forEach((e, i) => {
    if (better(e.val, result.epochs[best]!.val) && i !== best) best = i;
  });
  t.is(result.bestEpoch, best + 1);
  t.true(
    result.bestEpoch < 4,
    `best epoch ${result.bestEpoch}: ${result.epochs.map((e) => e.val.meanAuc.toFixed(3)).join(" ")}`,
  );
  t.deepEqual(await scoreSplit(ft, once(val)()), result.best, "the restored weights score as the best epoch did");
  t.deepEqual(result.test, result.best);
});

test("better(): higher mean AUC wins, then lower loss; a defined AUC beats NaN", (t) => {
  const s = (meanAuc: number, loss: number) => ({ auc: [], meanAuc, loss, samples: 1 });
  t.true(better(s(0.8, 1), s(0.7, 0.1)));
  t.false(better(s(0.7, 0.1), s(0.8, 1)));
  t.true(better(s(0.8, 0.5), s(0.8, 0.6)));
  t.true(better(s(0.5, 9), s(NaN, 0.1)));
  t.true(better(s(NaN, 0.1), undefined));
});

test("bad arguments are refused naming them", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  t.throws(() => new Finetuner({} as ViLReF, { classes: 2 }), {
    instanceOf: TypeError,
    message: "model: expected a ViLReF model",
  });
  t.throws(() => new Finetuner(model, {} as { classes: number }), {
    instanceOf: TypeError,
    message: /^options\.classes/,
  });
  t.throws(() => new Finetuner(model, { classes: 2, frozen: "yes" as unknown as boolean }), {
    instanceOf: TypeError,
    message: "options.frozen: expected a boolean",
  });
  const ft = new Finetuner(model, { classes: 2 });
  const b = toy(4, 1);
  await t.throwsAsync(ft.step({ images: b.images, labels: { data: new Float32Array(12), shape: [4, 3] } }), {
    instanceOf: RangeError,
    message: /^batch\.labels: expected shape \[4, 2\]/,
  });
  await t.throwsAsync(
    ft.step({ images: { data: new Float32Array(3 * 16 * 16), shape: [1, 3, 16, 16] }, labels: b.labels }),
    { instanceOf: RangeError, message: /^batch\.images: expected shape \[\*, 3, 32, 32\]/ },
  );
  await t.throwsAsync(ft.step({ images: b.images, labels: { data: new Float32Array(8).fill(3), shape: [4, 2] } }), {
    instanceOf: RangeError,
    message: "batch.labels: values must lie in [0, 1]",
  });
  await t.throwsAsync(ft.loadStateDict({ "head.weight": (await ft.stateDict())["head.weight"]! }), {
    instanceOf: RangeError,
    message: 'stateDict["head.bias"]: missing',
  });
  await t.throwsAsync(
    ft.loadStateDict({ ...(await ft.stateDict()), text_projection: { data: new Float32Array(1), shape: [1] } }),
    { instanceOf: RangeError, message: /^stateDict\["text_projection"\]: not a tensor of this finetuner/ },
  );
});
