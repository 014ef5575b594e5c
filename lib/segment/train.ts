/**
 * Training the segmenter on tiles for a time budget (or a number of steps) with a cosine lr over
 * that budget, and evaluating it by sliding windows at full resolution with metrics inside the
 * field of view.
 */
import { mulberry32 } from "../data/rng.js";
import { meanMetrics, metricsFromConfusion, confusion, segmentationMetrics } from "./metrics.js";
import type { SegMetrics } from "./metrics.js";
import { writeOverlay } from "./overlay.js";
import { sampleBatch } from "./sampler.js";
import type { Prepared } from "./sampler.js";
import type { Segmenter } from "./segmenter.js";
import { slidingWindow } from "./window.js";
import { join } from "node:path";
import type { SegImage } from "./drive.js";

export interface SegTrainOptions {
  /** Wall-clock budget in minutes (the lr follows a cosine over it). */
  minutes?: number;
  /** Or a number of steps (whichever ends first). */
  steps?: number;
  batchSize?: number;
  /** Peak lr of stem + decoder. Default: the segmenter's `options.lr`. */
  lr?: number;
  /** Peak lr of the backbone. Default: the segmenter's `options.backboneLr`. */
  backboneLr?: number;
  /** Linear warm-up steps (20). */
  warmup?: number;
  seed?: number;
  onStep?: (e: { step: number; loss: number; dice: number; lr: number; seconds: number }) => void;
}

export interface SegTrainResult {
  steps: number;
  seconds: number;
  /** Mean loss over the last 20 steps. */
  finalLoss: number;
  losses: number[];
}

/** lr factor at progress t ∈ [0, 1] after warm-up: cosine from 1 to 0.05. */
export function cosineFactor(t: number): number {
  return 0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, Math.max(0, t))));
}

export async function trainSegmenter(
  seg: Segmenter,
  items: readonly Prepared[],
  o: SegTrainOptions = {},
): Promise<SegTrainResult> {
  const budget = (o.minutes ?? Number.POSITIVE_INFINITY) * 60;
  const maxSteps = o.steps ?? Number.POSITIVE_INFINITY;
  if (!Number.isFinite(budget) && !Number.isFinite(maxSteps))
    throw new RangeError("trainSegmenter: give minutes or steps");
  const batchSize = o.batchSize ?? 8,
    lr = o.lr ?? seg.options.lr,
    backboneLr = o.backboneLr ?? seg.options.backboneLr,
    warmup = o.warmup ?? 20;
  const rng = mulberry32(o.seed ?? 0);
  const tile = seg.config.tile;
  const started = performance.now();
  const losses: number[] = [];
  let batch = sampleBatch(items, batchSize, tile, rng);
  let step = 0;
  for (;;) {
    const seconds = (performance.now() - started) / 1000;
    if (step >= maxSteps || seconds >= budget) break;
    const progress = Number.isFinite(maxSteps) ? Math.max(step / maxSteps, seconds / budget) : seconds / budget;
    const f = Math.min(1, (step + 1) / warmup) * cosineFactor(progress);
    const pending = seg.step(batch, { lr: lr * f, backboneLr: backboneLr * f });
    batch = sampleBatch(items, batchSize, tile, rng); // the next batch while this one trains
    const r = await pending;
    if (!Number.isFinite(r.loss)) throw new Error(`segmenter: the loss became ${r.loss} at step ${step + 1}`);
    losses.push(r.loss);
    step++;
    o.onStep?.({ step, loss: r.loss, dice: r.dice, lr: lr * f, seconds: (performance.now() - started) / 1000 });
  }
  const tail = losses.slice(-20);
  return {
    steps: step,
    seconds: (performance.now() - started) / 1000,
    finalLoss: tail.reduce((a, b) => a + b, 0) / Math.max(1, tail.length),
    losses,
  };
}

export interface SegEvalOptions {
  /** Window stride (default: half the tile). */
  stride?: number;
  threshold?: number;
  batchSize?: number;
  /** Write `<name>.png` overlays here (TP white, FP red, FN blue over the dimmed photo). */
  overlays?: string;
  /** The decoded images, for overlays (same order as items). */
  sources?: readonly SegImage[];
  /** Called after each image is evaluated. */
  onImage?: (done: number, total: number) => void;
}

export interface SegEvalResult {
  /** Mean over images. */
  mean: SegMetrics;
  /** Over all field-of-view pixels of all images pooled (AUC: the mean per image). */
  pooled: SegMetrics;
  perImage: (SegMetrics & { name: string })[];
}

export async function evaluateSegmenter(
  seg: Segmenter,
  items: readonly Prepared[],
  o: SegEvalOptions = {},
): Promise<SegEvalResult> {
  const tile = seg.config.tile;
  const stride = o.stride ?? Math.max(1, tile >> 1);
  const threshold = o.threshold ?? 0.5;
  const perImage: (SegMetrics & { name: string })[] = [];
  const sum = { tp: 0, fp: 0, fn: 0, tn: 0 };
  for (const [i, it] of items.entries()) {
    const prob = await slidingWindow(it.plane, tile, stride, (b) => seg.predict(b), o.batchSize ?? 32);
    const m = segmentationMetrics(prob, it.target, it.fov, threshold);
    perImage.push({ name: it.name, ...m });
    const c = confusion(prob, it.target, it.fov, threshold);
    sum.tp += c.tp;
    sum.fp += c.fp;
    sum.fn += c.fn;
    sum.tn += c.tn;
    if (o.overlays && o.sources?.[i])
      await writeOverlay(join(o.overlays, `${it.name}.png`), o.sources[i]!, prob, threshold);
    o.onImage?.(i + 1, items.length);
  }
  const mean = meanMetrics(perImage);
  return { mean, pooled: metricsFromConfusion(sum, mean.auc), perImage };
}
