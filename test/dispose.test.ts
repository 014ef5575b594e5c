// dispose(): every object that owns native memory frees it on request — at once, without the
// garbage collector — after the calls already queued on it; later calls reject naming the class.
import test from "ava";
import { ViLReF } from "../lib/model/vilref.js";
import { Head } from "../lib/head.js";
import { Segmenter } from "../lib/segment/segmenter.js";
import { Finetuner } from "../lib/finetune/finetuner.js";
import { Trainer } from "../lib/train/trainer.js";
import { distAvailability, initProcessGroup } from "../lib/train/dist.js";
import { freePort } from "../lib/train/launch.js";
import { cpuCache } from "../lib/native.js";
import { batch, C } from "./helpers/train-batch.js";

const images = (n: number, r = 32) => ({
  data: Float32Array.from({ length: n * 3 * r * r }, (_, i) => Math.sin(i)),
  shape: [n, 3, r, r],
});
const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

test.serial("dispose() of a vit-b-16 returns most of its memory to the system, without global.gc", async (t) => {
  const model = ViLReF.create("vit-b-16", { seed: 1 });
  const bytes = model.parameters().reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1) * 4, 0);
  t.true(bytes > 600 * 2 ** 20, `${mib(bytes)} MiB of parameters`);
  const before = process.memoryUsage().rss;
  const encoded = model.encodeImages(images(1, 224)); // queued before dispose: it finishes first
  const disposed = model.dispose();
  t.deepEqual((await encoded).shape, [1, 512]);
  await disposed;
  const after = process.memoryUsage().rss;
  // The CPU block cache kept only what it held before (the encode's activations), not the weights.
  t.true(cpuCache().cachedBytes < bytes / 4, `block cache holds ${mib(cpuCache().cachedBytes)} MiB`);
  t.log(`parameters ${mib(bytes)} MiB; RSS ${mib(before)} → ${mib(after)} MiB`);
  t.true(before - after > 0.8 * bytes, `RSS fell by ${mib(before - after)} MiB of ${mib(bytes)} MiB`);
});

test("calls queued before dispose() finish with their results; later calls reject naming the class", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const x = images(2);
  const expected = await model.encodeImages(x);
  const queued = [model.encodeImages(x), model.encodeImages(x), model.stateDict()];
  t.false(model.disposed);
  const first = model.dispose();
  t.true(model.disposed);
  t.is(model.dispose(), first, "a second dispose() is the same promise");
  const [a, b, state] = await Promise.all(queued);
  t.deepEqual(a!, expected);
  t.deepEqual(b, expected);
  t.true("visual.proj" in (state as object));
  await first;
  const e = await t.throwsAsync(model.encodeImages(x));
  t.is(e!.constructor, Error);
  t.regex(e!.message, /^ViLReF was disposed/);
  await t.throwsAsync(model.encodeTexts({ data: new BigInt64Array(8).fill(101n), shape: [1, 8] }), {
    message: /ViLReF was disposed/,
  });
  await t.throwsAsync(model.save("/nonexistent/x.safetensors"), { message: /ViLReF was disposed/ });
  t.throws(() => model.parameters(), { message: /ViLReF was disposed/ });
  t.is(model.config.embed_dim, 24, "the config stays readable");
});

test("await using frees at the end of the block; using starts it", async (t) => {
  let outer: ViLReF;
  {
    await using model = ViLReF.create("tiny-vit");
    outer = model;
    t.deepEqual((await model.encodeImages(images(1))).shape, [1, 24]);
  }
  t.true(outer.disposed);
  await t.throwsAsync(outer.encodeImages(images(1)), { message: /ViLReF was disposed/ });
  let head: Head;
  {
    using h = new Head({ inFeatures: 3, outFeatures: 2 });
    head = h;
  }
  t.true(head.disposed);
  await t.throwsAsync(head.forward({ data: new Float32Array(3), shape: [1, 3] }), { message: /^Head was disposed/ });
});

test("a model's trainers and fine-tuners are disposed with it; none can be made on a disposed model", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 8 });
  const ft = new Finetuner(model, { classes: 2 });
  const step = trainer.step(batch(4, 1)); // queued before: finishes
  await model.dispose();
  t.true(Number.isFinite((await step).loss));
  t.true(trainer.disposed && ft.disposed);
  await t.throwsAsync(trainer.step(batch(4, 2)), { message: /^Trainer was disposed/ });
  await t.throwsAsync(ft.predict(images(1)), { message: /^Finetuner was disposed/ });
  t.throws(() => new Trainer(model, { labelDim: C }), { message: /ViLReF was disposed/ });
  t.throws(() => new Finetuner(model, { classes: 2 }), { message: /ViLReF was disposed/ });
});

test("disposing a trainer or fine-tuner leaves the model working", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 5 });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 8 });
  await trainer.step(batch(4, 1));
  await trainer.dispose();
  await t.throwsAsync(trainer.queueState(), { message: /^Trainer was disposed/ });
  const ft = new Finetuner(model, { classes: 2 });
  await ft.dispose();
  await t.throwsAsync(ft.step({ images: images(1), labels: { data: new Float32Array(2), shape: [1, 2] } }), {
    message: /^Finetuner was disposed/,
  });
  t.deepEqual((await model.encodeImages(images(1))).shape, [1, 24]);
  await model.dispose();
  t.true(trainer.disposed);
});

test("Segmenter and Head: queued calls finish, later ones reject", async (t) => {
  const seg = new Segmenter({ tile: 32, patch: 8, width: 32, layers: 2, heads: 2 });
  const predicted = seg.predict(images(1));
  await seg.dispose();
  t.deepEqual((await predicted).shape, [1, 1, 32, 32]);
  await t.throwsAsync(seg.predict(images(1)), { message: /^Segmenter was disposed/ });
  await t.throwsAsync(seg.stateDict(), { message: /^Segmenter was disposed/ });
  const head = new Head({ inFeatures: 3, outFeatures: 2 });
  const y = head.forward({ data: new Float32Array(6), shape: [2, 3] });
  void head.dispose();
  t.deepEqual((await y).shape, [2, 2]);
  await t.throwsAsync(head.stateDict(), { message: /^Head was disposed/ });
});

const distTest = distAvailability().available ? test : test.skip;
distTest("a ProcessGroup disposes (await using), and a trainer cannot take a disposed one", async (t) => {
  const port = await freePort();
  let kept;
  {
    await using group = await initProcessGroup({
      rank: 0,
      worldSize: 1,
      localRank: 0,
      masterAddr: "127.0.0.1",
      masterPort: port,
      timeoutMs: 20000,
    });
    kept = group;
    const sum = await group.allReduce({ data: Float32Array.of(1, 2), shape: [2] });
    t.deepEqual([...sum.data], [1, 2]);
  }
  t.is(kept.rank, 0, "its description stays readable");
  await t.throwsAsync(kept.barrier(), { message: /^ProcessGroup was disposed/ });
  const model = ViLReF.create("tiny-vit");
  t.throws(() => new Trainer(model, { labelDim: C, processGroup: kept }), { message: /ProcessGroup was disposed/ });
  await model.dispose();
});
