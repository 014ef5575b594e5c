// One pre-training step in LibTorch: loss falls, ring-buffer queue, EMA arithmetic, logit-scale
// clamp, non-finite steps skipped, bad batches named.
import test from "ava";
import { ViLReF } from "../lib/model/vilref.js";
import { Trainer } from "../lib/train/trainer.js";
import { batch, C } from "./helpers/train-batch.js";

test("training loss falls on a fixed batch (WSCL with a queue)", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const trainer = new Trainer(model, { labelDim: C, lr: 2e-3, queueSize: 16 });
  const b = batch(8, 3);
  const losses: number[] = [];
  for (let i = 0; i < 30; i++) losses.push((await trainer.step(b)).loss);
  t.true(losses.every(Number.isFinite));
  t.true(losses.at(-1)! < 0.5 * losses[0]!, `loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)}`);
  t.is(trainer.skipped, 0);
});

test("the queue is a ring buffer: starts empty, fills, wraps, overwrites the oldest", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 2 });
  const trainer = new Trainer(model, { labelDim: C, lr: 1e-4, queueSize: 5 });
  const rows = (k: number): number[][] =>
    [
      [k, 0, 0, 0, 0],
      [0, k, 0, 0, 0],
    ].map((r) => r.map((x) => x / 10));
  t.like(await trainer.queueState(), { valid: 0, pointer: 0 });
  for (let step = 1; step <= 3; step++) {
    const r = await trainer.step(batch(2, step, rows(step)));
    t.is(r.queueValid, Math.min(5, 2 * step));
  }
  const q = await trainer.queueState();
  t.like(q, { valid: 5, pointer: 1, steps: 3 });
  // slots: 0 ← step 3 row 1 (wrapped), 1-2 ← step 1, 3 ← step 2 row 0... laid out as [3b, 1a, 1b,
  // 2a, 2b] then 3a over slot 4
  const label = (slot: number) =>
    Array.from(q.labels.data.subarray(slot * C, slot * C + C)).map((x) => Math.round(x * 10));
  t.deepEqual([0, 1, 2, 3, 4].map(label), [
    [0, 3, 0, 0, 0],
    [0, 1, 0, 0, 0],
    [2, 0, 0, 0, 0],
    [0, 2, 0, 0, 0],
    [3, 0, 0, 0, 0],
  ]);
  // entries are normalised momentum features
  const norm = Math.hypot(...Array.from(q.image.data.subarray(0, 24)));
  t.true(Math.abs(norm - 1) < 1e-5);
});

test("momentum encoders follow θm ← m·θm + (1 − m)·θ, updated before each step", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const m = 0.9;
  const trainer = new Trainer(model, { labelDim: C, lr: 1e-2, momentum: m, queueSize: 8 });
  const theta0 = (await model.stateDict())["visual.proj"]!.data as Float32Array;
  await trainer.step(batch(4, 1));
  const theta1 = (await model.stateDict())["visual.proj"]!.data as Float32Array;
  const mom1 = (await trainer.momentumStateDict())["visual.proj"]!.data as Float32Array;
  mom1.forEach((x, k) => t.true(Math.abs(x - theta0[k]!) < 1e-6, `step 1: m·θ0 + (1−m)·θ0 = θ0 [${k}]`));
  t.notDeepEqual(Array.from(theta1), Array.from(theta0), "the online weights moved");
  await trainer.step(batch(4, 2));
  const mom = (await trainer.momentumStateDict())["visual.proj"]!.data as Float32Array;
  mom.forEach((x, k) => t.true(Math.abs(x - (m * theta0[k]! + (1 - m) * theta1[k]!)) < 1e-6, `[${k}]`));
});

test("the logit scale is clamped to [0, ln 100] after the optimiser step", async (t) => {
  // at random initialisation positives and negatives score alike, so the loss wants a smaller
  // scale: a large learning rate drives it below 0, where the clamp must hold it
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  await model.loadStateDict({ logit_scale: { data: Float32Array.of(0.1), shape: [] } }, { strict: false });
  const trainer = new Trainer(model, { labelDim: C, lr: 0.5, queueSize: 0, loss: "clip" });
  const r = await trainer.step(batch(8, 5));
  t.is(r.logitScale, 0);
  t.is((await model.stateDict())["logit_scale"]!.data[0], 0);
  // and at the top: a scale loaded above ln 100 is brought back by the next step
  await model.loadStateDict({ logit_scale: { data: Float32Array.of(7), shape: [] } }, { strict: false });
  const top = await new Trainer(model, { labelDim: C, lr: 1e-6, queueSize: 0 }).step(batch(8, 6));
  t.true(Math.abs(top.logitScale - Math.log(100)) < 1e-6, `logit scale ${top.logitScale}`);
});

test("a non-finite loss skips the step: no update, no enqueue, counted", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 5 });
  const state = await model.stateDict();
  // zero image features: 0/0
  await model.loadStateDict({ "visual.proj": { data: new Float32Array(64 * 24), shape: [64, 24] } }, { strict: false });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 4 });
  const r = await trainer.step(batch(3, 1));
  t.true(r.skipped);
  t.true(Number.isNaN(r.loss));
  t.is(trainer.skipped, 1);
  t.is(r.queueValid, 0);
  t.deepEqual(
    Array.from((await model.stateDict())["text_projection"]!.data as Float32Array),
    Array.from(state["text_projection"]!.data as Float32Array),
  );
});

test("bad batches and options are named", async (t) => {
  const model = ViLReF.create("tiny-vit");
  const trainer = new Trainer(model, { labelDim: C, queueSize: 4 });
  const b = batch(4, 1);
  await t.throwsAsync(
    trainer.step({ ...b, images: batch(1, 1).images, ids: batch(1, 1).ids, labels: batch(1, 1).labels }),
    { instanceOf: RangeError, message: "batch.images: a contrastive step needs at least 2 pairs, got 1" },
  );
  await t.throwsAsync(trainer.step({ ...b, labels: { data: new Float32Array(4 * 3), shape: [4, 3] } }), {
    instanceOf: RangeError,
    message: /^batch\.labels: expected shape \[4, 5\]/,
  });
  await t.throwsAsync(trainer.step({ ...b, ids: batch(3, 1).ids }), {
    instanceOf: RangeError,
    message: /^batch\.ids: expected shape \[4, \*\]/,
  });
  await t.throwsAsync(trainer.step(b, { lr: -1 }), { instanceOf: RangeError, message: /^options\.lr:/ });
  t.throws(() => new Trainer(model, { labelDim: C, loss: "triplet" as "wscl" }), {
    instanceOf: RangeError,
    message: 'options.loss: expected "wscl" or "clip"',
  });
  t.throws(() => new Trainer(model, { labelDim: 0 }), { instanceOf: RangeError, message: /^options\.labelDim:/ });
  t.throws(() => new Trainer({ nativeHandle: {} } as unknown as ViLReF, { labelDim: C }), {
    instanceOf: TypeError,
    message: "model: expected a ViLReF model",
  });
  t.is((await trainer.step(b)).skipped, false, "and it still trains");
});

test("exportState/importState: a resumed trainer continues exactly as the uninterrupted one", async (t) => {
  const options = { labelDim: C, lr: 1e-3, queueSize: 6, momentum: 0.9, gradClip: 1 };
  const batches = Array.from({ length: 6 }, (_, i) => batch(4, 100 + i));
  // uninterrupted
  const a = ViLReF.create("tiny-vit", { seed: 9 });
  const ta = new Trainer(a, options);
  const straight: number[] = [];
  for (const b of batches) straight.push((await ta.step(b)).loss);
  // interrupted after 3 steps: weights + trainer state saved, then a fresh model and trainer
  const b1 = ViLReF.create("tiny-vit", { seed: 9 });
  const tb = new Trainer(b1, options);
  for (const b of batches.slice(0, 3)) await tb.step(b);
  const weights = await b1.stateDict();
  const state = await tb.exportState();
  t.true(Object.keys(state).some((k) => k.startsWith("optim.") && k.endsWith(".exp_avg")));
  t.deepEqual(Array.from(state["queue.position"]!.data as BigInt64Array), [6n, 0n]);
  const c = ViLReF.create("tiny-vit", { seed: 1234 }); // different start: everything must come from the checkpoint
  await c.loadStateDict(weights);
  const tc = new Trainer(c, options);
  await tc.importState(state);
  const resumed: number[] = [];
  for (const b of batches.slice(3)) resumed.push((await tc.step(b)).loss);
  t.deepEqual(resumed, straight.slice(3), "same losses, bit for bit");
  t.like(await tc.queueState(), { steps: 6, valid: 6 });
  // without the trainer state the continuation differs (the test can fail)
  const d = ViLReF.create("tiny-vit", { seed: 1234 });
  await d.loadStateDict(weights);
  const td = new Trainer(d, options);
  t.notDeepEqual((await td.step(batches[3]!)).loss, straight[3]);
  const before = await td.exportState();
  await t.throwsAsync(td.importState({ ...state, "queue.image": { data: new Float32Array(3), shape: [3] } }), {
    instanceOf: RangeError,
    message: 'state["queue.image"]: shape does not fit',
  });
  t.deepEqual(await td.exportState(), before, "a rejected record changes nothing");
});
