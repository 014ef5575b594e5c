// A data-parallel worker for the dist tests and bench/dist.ts, started with the torchrun
// environment contract (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK). VILREF_TEST_SPEC (JSON):
//   { mode: "steps", steps, batch?, out, timeoutMs }  run `steps` steps of the fixed global batches below on
//                                             this rank's slice; rank 0 writes losses, the model's
//                                             and the momentum encoders' weights and the queue to `out`
//   { mode: "forever", timeoutMs }            step until killed, printing "step N" after each step
// With WORLD_SIZE unset it runs in one process on the whole global batch (the reference).
import { writeFileSync } from "node:fs";
import { mulberry32 } from "../../lib/data/rng.js";
import { ViLReF } from "../../lib/model/vilref.js";
import type { Device } from "../../lib/model/vilref.js";
import { initProcessGroup, isDistWorker, readDistEnv } from "../../lib/train/dist.js";
import type { ProcessGroup } from "../../lib/train/dist.js";
import { Trainer } from "../../lib/train/trainer.js";
import type { TrainBatch } from "../../lib/train/trainer.js";

export const C = 5;
export const GLOBAL_BATCH = 8;
export const TRAINER = {
  labelDim: C,
  lr: 1e-3,
  queueSize: 12,
  momentum: 0.9,
  loss: "wscl" as const,
  threshold: 1,
  gamma: 1,
};

/** The global batch of step k: rows r, r + W, ... belong to rank r. Labels repeat, so WSCL removes false negatives. */
export function globalBatch(k: number, n = GLOBAL_BATCH, resolution = 32): TrainBatch {
  const r = mulberry32(1000 + k);
  const images = Float32Array.from({ length: n * 3 * resolution * resolution }, () => r.next() * 2 - 1);
  const ids = new BigInt64Array(n * 8);
  for (let i = 0; i < n; i++) {
    ids[i * 8] = 101n;
    for (let j = 1; j < 7; j++) ids[i * 8 + j] = BigInt(200 + Math.floor(r.next() * 5000));
    ids[i * 8 + 7] = 102n;
  }
  const patterns = [
    [1, 0, 0, 0, 0],
    [0, 1, 0, 0.5, 0],
    [0, 0, 1, 0, 1],
  ];
  const labels = Float32Array.from(
    Array.from({ length: n }, () => patterns[Math.floor(r.next() * patterns.length)]!).flat(),
  );
  return {
    images: { data: images, shape: [n, 3, resolution, resolution] },
    ids: { data: ids, shape: [n, 8] },
    labels: { data: labels, shape: [n, C] },
  };
}

/** Rows rank, rank + W, rank + 2W, ... of a global batch: how lib/data/loader.ts shards an epoch's order. */
export function shard(b: TrainBatch, rank: number, world: number): TrainBatch {
  const n = b.images.shape[0]! / world;
  const rows = <T extends Float32Array | BigInt64Array | Int32Array>(t: { data: T; shape: number[] }) => {
    const per = t.data.length / t.shape[0]!;
    const out = new (t.data.constructor as new (n: number) => T)(n * per);
    for (let j = 0; j < n; j++)
      out.set(t.data.subarray((j * world + rank) * per, (j * world + rank + 1) * per) as never, j * per);
    return { data: out, shape: [n, ...t.shape.slice(1)] };
  };
  return {
    images: rows(b.images),
    ids: rows(b.ids as { data: BigInt64Array; shape: number[] }),
    labels: rows(b.labels),
  };
}

export interface StepsOutput {
  losses: number[];
  gradNorms: number[];
  logitScales: number[];
  allGatherSeconds: number[];
  allReduceSeconds: number[];
  stepSeconds: number[];
  model: Record<string, number[]>;
  momentum: Record<string, number[]>;
  queue: { valid: number; pointer: number; image: number[]; labels: number[] };
}

/** Runs `steps` steps on this rank's slice (world 1: the whole batch). */
export async function runSteps(
  steps: number,
  group?: ProcessGroup,
  batch = GLOBAL_BATCH,
  device: Device = "cpu",
): Promise<StepsOutput> {
  const model = ViLReF.create("tiny-vit", { seed: 7, device });
  const trainer = new Trainer(model, { ...TRAINER, ...(group ? { processGroup: group } : {}) });
  const world = group?.worldSize ?? 1;
  const rank = group?.rank ?? 0;
  const out: StepsOutput = {
    losses: [],
    gradNorms: [],
    logitScales: [],
    allGatherSeconds: [],
    allReduceSeconds: [],
    stepSeconds: [],
    model: {},
    momentum: {},
    queue: { valid: 0, pointer: 0, image: [], labels: [] },
  };
  for (let k = 0; k < steps; k++) {
    const b = shard(globalBatch(k, batch), rank, world);
    const t0 = performance.now();
    const r = await trainer.step(b);
    out.stepSeconds.push((performance.now() - t0) / 1000);
    out.losses.push(r.loss);
    out.gradNorms.push(r.gradNorm);
    out.logitScales.push(r.logitScale);
    out.allGatherSeconds.push(r.allGatherSeconds);
    out.allReduceSeconds.push(r.allReduceSeconds);
  }
  const plain = (d: Record<string, { data: ArrayLike<number | bigint> }>) =>
    Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Array.from(v.data, Number)]));
  out.model = plain(await model.stateDict());
  out.momentum = plain(await trainer.momentumStateDict());
  const q = await trainer.queueState();
  out.queue = {
    valid: q.valid,
    pointer: q.pointer,
    image: Array.from(q.image.data),
    labels: Array.from(q.labels.data),
  };
  return out;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.VILREF_TEST_SPEC ?? "{}") as {
    mode: "steps" | "forever";
    steps?: number;
    batch?: number;
    out?: string;
    timeoutMs?: number;
    /** "cuda": each rank on cuda:LOCAL_RANK (test/cuda.test.ts); default "cpu" */
    device?: "cpu" | "cuda";
    backend?: "gloo" | "nccl";
  };
  let group: ProcessGroup | undefined;
  const env = isDistWorker() ? readDistEnv() : undefined;
  if (env)
    group = await initProcessGroup({
      ...env,
      timeoutMs: spec.timeoutMs ?? 30000,
      ...(spec.backend ? { backend: spec.backend } : {}),
    });
  const device: Device = spec.device === "cuda" ? `cuda:${env?.localRank ?? 0}` : "cpu";
  if (spec.mode === "steps") {
    const r = await runSteps(spec.steps ?? 3, group, spec.batch ?? GLOBAL_BATCH, device);
    if ((group?.rank ?? 0) === 0 && spec.out) writeFileSync(spec.out, JSON.stringify(r));
    return;
  }
  const model = ViLReF.create("tiny-vit", { seed: 7 });
  const trainer = new Trainer(model, { ...TRAINER, ...(group ? { processGroup: group } : {}) });
  const world = group?.worldSize ?? 1;
  for (let k = 0; ; k++) {
    await trainer.step(shard(globalBatch(k % 4), group?.rank ?? 0, world));
    process.stdout.write(`step ${k + 1}\n`);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`worker error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
