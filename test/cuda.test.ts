/**
 * The CUDA test subset: what scripts/gpu/run.sh runs on the GPU machine with the carried Node
 * (VILREF_TEST_DEVICE=cuda). Device placement of model, momentum encoders, queue, optimizer state
 * and loss; bfloat16/float16 weights and autocast against float32; the float16 loss scaler under a
 * forced overflow; dispose() giving CUDA memory back; NCCL two-rank equivalence with two GPUs.
 * Without CUDA the CUDA-only tests are skipped (the skip says why) and the device-independent ones
 * run with device "cpu": placement, bfloat16 autocast of a training step, the errors that CUDA-only
 * options give on the CPU, and the memory counters' CPU answer.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ViLReF } from "../lib/model/vilref.js";
import type { Device } from "../lib/model/vilref.js";
import { cudaMemory, emptyCudaCache, native, resetCudaPeakMemory } from "../lib/native.js";
import { distAvailability } from "../lib/train/dist.js";
import { Trainer } from "../lib/train/trainer.js";
import type { TrainerStateRecord } from "../lib/train/trainer.js";
import type { StepsOutput } from "./helpers/dist-worker.js";
import { C, batch } from "./helpers/train-batch.js";

const info = native().cuda();
const device = (process.env.VILREF_TEST_DEVICE ?? (info.available ? "cuda" : "cpu")) as Device;
const onCuda = device.startsWith("cuda");
const cudaOnly = onCuda ? test.serial : test.serial.skip;
if (!onCuda) console.warn(`cuda tests: CUDA-only tests skipped (device ${device}; cuda available: ${info.available})`);
/** "cuda" is "cuda:0" once tensors are on it. */
const canonical = (d: string) => (d === "cuda" ? "cuda:0" : d);

/** ‖a − b‖₂ / ‖b‖₂ */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
}

function images(n: number, seed: number, resolution = 32) {
  let s = seed;
  const data = Float32Array.from({ length: n * 3 * resolution * resolution }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 3 - 1.5;
  });
  return { data, shape: [n, 3, resolution, resolution] };
}

test.serial(`placement on ${device}: weights, momentum encoders, queue, optimizer state and loss`, async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3, device });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 16, lr: 1e-3 });
  const before = await trainer.devices();
  t.is(canonical(before.parameters), canonical(device));
  t.is(canonical(before.momentum), canonical(device));
  t.is(canonical(before.queue), canonical(device), "the queue is made on the model's device");
  t.is(before.optimizer, null);
  t.is(before.loss, null);
  for (let k = 0; k < 3; k++) await trainer.step(batch(4, 10 + k));
  const after = await trainer.devices();
  for (const where of [after.parameters, after.momentum, after.queue, after.optimizer, after.loss])
    t.is(canonical(where ?? "none"), canonical(device));
  const q = await trainer.queueState();
  t.is(q.valid, 12, "three steps of 4 enqueued on the device");
  t.true(Array.from(q.image.data).some((x) => x !== 0));
});

test.serial("the memory counters: zeros for the CPU, a named error for a device that is not there", (t) => {
  t.deepEqual(cudaMemory("cpu"), { allocated: 0, reserved: 0, peakAllocated: 0, peakReserved: 0 });
  t.notThrows(() => resetCudaPeakMemory("cpu"));
  t.notThrows(() => emptyCudaCache());
  t.throws(() => cudaMemory(`cuda:${info.deviceCount}`), {
    instanceOf: RangeError,
    message: /^device: .*does not exist/,
  });
  t.throws(() => cudaMemory("tpu:0"), { instanceOf: RangeError, message: /^device:/ });
});

test.serial(`bfloat16 autocast of a WSCL step on ${device} agrees with float32`, async (t) => {
  const run = async (precision: "float32" | "bfloat16") => {
    const model = ViLReF.create("tiny-vit", { seed: 5, device });
    const trainer = new Trainer(model, { labelDim: C, queueSize: 16, lr: 1e-3, precision });
    const results = [];
    for (let k = 0; k < 3; k++) results.push(await trainer.step(batch(6, 20 + k)));
    return results;
  };
  const f32 = await run("float32");
  const bf16 = await run("bfloat16");
  for (let k = 0; k < 3; k++) {
    const dl = Math.abs(bf16[k]!.loss - f32[k]!.loss) / f32[k]!.loss;
    const dg = Math.abs(bf16[k]!.gradNorm - f32[k]!.gradNorm) / f32[k]!.gradNorm;
    t.true(dl < 2e-2, `step ${k}: loss ${bf16[k]!.loss} vs ${f32[k]!.loss} (relative ${dl})`);
    t.true(dg < 8e-2, `step ${k}: gradient norm ${bf16[k]!.gradNorm} vs ${f32[k]!.gradNorm} (relative ${dg})`);
  }
  t.not(bf16[0]!.loss, f32[0]!.loss, "bfloat16 really ran (not the same bits as float32)");
});

test.serial("CUDA-only options on the CPU are named errors", (t) => {
  t.throws(() => ViLReF.create("tiny-vit", { device: "cpu", dtype: "bfloat16" }), {
    instanceOf: RangeError,
    message: /options\.dtype/,
  });
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  t.throws(() => new Trainer(model, { labelDim: C, precision: "float16" }), {
    instanceOf: RangeError,
    message: /options\.precision: float16.*CUDA/,
  });
  if (!info.available)
    t.throws(() => ViLReF.create("tiny-vit", { device: "cuda" }), {
      instanceOf: RangeError,
      message: /options\.device/,
    });
});

cudaOnly("bfloat16 and float16 weights encode as float32 does, within their precision", async (t) => {
  const f32 = ViLReF.create("tiny-vit", { seed: 9, device });
  const x = images(8, 4);
  const ids = {
    data: BigInt64Array.from({ length: 8 * 8 }, (_, i) => BigInt(i % 8 === 0 ? 101 : 200 + i)),
    shape: [8, 8],
  };
  const ref = await f32.encodeImages(x);
  const refText = await f32.encodeTexts(ids);
  for (const dtype of ["bfloat16", "float16"] as const) {
    const low = ViLReF.create("tiny-vit", { seed: 9, device, dtype });
    const e = relErr((await low.encodeImages(x)).data, ref.data);
    const et = relErr((await low.encodeTexts(ids)).data, refText.data);
    t.true(e > 0 && e < 3e-2, `${dtype} images: relative error ${e}`);
    t.true(et > 0 && et < 3e-2, `${dtype} texts: relative error ${et}`);
  }
});

cudaOnly("bfloat16 ViT-B/16 on CUDA matches float32 (batch 4, 224 px)", async (t) => {
  const f32 = ViLReF.create("vit-b-16", { seed: 2, device });
  const bf16 = ViLReF.create("vit-b-16", { seed: 2, device, dtype: "bfloat16" });
  const x = images(4, 7, 224);
  const e = relErr((await bf16.encodeImages(x)).data, (await f32.encodeImages(x)).data);
  t.true(e > 0 && e < 3e-2, `relative error ${e}`);
});

cudaOnly("float16 loss scaling: a forced overflow skips the update, halves the scale, still enqueues", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 4, device });
  const trainer = new Trainer(model, { labelDim: C, queueSize: 16, lr: 1e-3, precision: "float16" });
  const first = await trainer.step(batch(4, 30));
  t.false(first.overflow);
  t.is(first.lossScale, 65536);
  // force the scale to 2^40: the float16 backward overflows
  const state: TrainerStateRecord = await trainer.exportState();
  state["trainer.scaler"] = { data: Float32Array.from([2 ** 40, 0]), shape: [2] };
  await trainer.importState(state);
  const weightsBefore = await model.stateDict();
  const over = await trainer.step(batch(4, 31));
  t.true(over.overflow, "the gradient overflowed");
  t.is(over.lossScale, 2 ** 40);
  t.is(over.queueValid, 8, "the batch is enqueued all the same");
  const weightsAfter = await model.stateDict();
  for (const [name, w] of Object.entries(weightsBefore))
    t.deepEqual(
      Array.from(weightsAfter[name]!.data.slice(0, 64), Number),
      Array.from(w.data.slice(0, 64), Number),
      name,
    );
  const next = await trainer.step(batch(4, 32));
  t.is(next.lossScale, 2 ** 39, "the scale was halved");
  const exported = await trainer.exportState();
  t.is((exported["trainer.scaler"]!.data as Float32Array)[0], next.overflow ? 2 ** 38 : 2 ** 39);
});

const disposable = (x: object): x is { dispose(): Promise<void> } =>
  typeof (x as { dispose?: unknown }).dispose === "function";
const hasDispose = disposable(ViLReF.prototype);
(onCuda && hasDispose ? test.serial : test.serial.skip)("dispose() gives a model's CUDA memory back", async (t) => {
  emptyCudaCache();
  const base = cudaMemory(device).allocated;
  const model = ViLReF.create("vit-b-16", { seed: 1, device });
  await model.encodeImages(images(2, 1, 224));
  const held = cudaMemory(device).allocated;
  t.true(held - base > 100e6, `ViT-B/16 + BERT weights hold > 100 MB (${held - base})`);
  if (disposable(model)) await model.dispose();
  emptyCudaCache();
  const after = cudaMemory(device);
  t.true(after.allocated - base < 8e6, `after dispose ${after.allocated - base} bytes remain`);
  t.true(after.reserved <= held, "the cache was emptied");
});

const twoGpus = onCuda && info.deviceCount >= 2 && distAvailability().backends.includes("nccl");
(twoGpus ? test.serial : test.serial.skip)("NCCL: 2 ranks × 4 on two GPUs equal 1 × 8 (3 WSCL steps)", async (t) => {
  const worker = fileURLToPath(new URL("./helpers/dist-worker.ts", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "vilref-nccl-"));
  const run = (world: number, out: string) =>
    Promise.all(
      Array.from({ length: world }, (_, rank) => {
        const spec = { mode: "steps", steps: 3, out, device: "cuda", ...(world > 1 ? { backend: "nccl" } : {}) };
        const env: NodeJS.ProcessEnv = { ...process.env, VILREF_TEST_SPEC: JSON.stringify(spec), VILREF_THREADS: "1" };
        if (world > 1)
          Object.assign(env, {
            MASTER_ADDR: "127.0.0.1",
            MASTER_PORT: "29613",
            WORLD_SIZE: String(world),
            RANK: String(rank),
            LOCAL_RANK: String(rank),
          });
        return new Promise<number | null>((resolve) =>
          spawn(process.execPath, ["--import=tsx", worker], { env, stdio: "inherit" }).on("exit", resolve),
        );
      }),
    );
  try {
    t.deepEqual(await run(1, join(dir, "one.json")), [0]);
    t.deepEqual(await run(2, join(dir, "two.json")), [0, 0]);
    const one = JSON.parse(readFileSync(join(dir, "one.json"), "utf8")) as StepsOutput;
    const two = JSON.parse(readFileSync(join(dir, "two.json"), "utf8")) as StepsOutput;
    for (let k = 0; k < 3; k++) t.true(Math.abs(one.losses[k]! - two.losses[k]!) < 1e-4, `step ${k} loss`);
    for (const [name, w] of Object.entries(one.model)) t.true(relErr(two.model[name]!, w) < 1e-4, name);
    t.true(relErr(two.queue.image, one.queue.image) < 1e-4, "the queues agree");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
