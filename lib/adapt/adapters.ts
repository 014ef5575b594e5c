/**
 * Few-shot adapters on frozen, L2-normalised image features (the arithmetic is native/fewshot.cc):
 *
 * - Tip-Adapter (training-free): a cache of the few-shot images' features (keys [m, d]) and labels
 *   (values [m, C]); logits = zeroShot + α · exp(−β (1 − F·Kᵀ)) · V. With α = 0 they are the
 *   zero-shot logits. Multi-label caches are normalised by the affinity mass (the share of the
 *   neighbours that are positive), so that α means the same whatever the number of shots.
 * - Tip-Adapter-F: the keys (and, multi-label, a bias per class) trained on the few-shot set.
 * - CLIP-Adapter: a residual bottleneck MLP on the image feature, blended by `ratio`, classified by
 *   the class text features.
 *
 * Everything is row-major typed arrays; `task` is "multilabel" (targets [n, C] of 1 / 0 / NaN) or
 * "single" (class indices [n]).
 */
import { native } from "../native.js";
import type { FewShotTask } from "../native.js";

export type { FewShotTask } from "../native.js";

export type Targets = { kind: "multilabel"; y: Float32Array } | { kind: "single"; t: Int32Array };

export interface TipCache {
  /** Normalised features [m, d] of the few-shot images. */
  keys: Float32Array;
  /** Labels [m, C]: one-hot (single-label) or 0/1 with unknown as 0 (multi-label). */
  values: Float32Array;
  m: number;
  d: number;
  C: number;
  /** A·V / rowsum(A) (multi-label) rather than A·V. */
  normalize: boolean;
}

const mat = (data: Float32Array, rows: number, cols: number) => ({ data, shape: [rows, cols] });
const taskOf = (t: Targets): FewShotTask => (t.kind === "multilabel" ? "multilabel" : "single");

/** The cache of few-shot features [m, d] (normalised) and their targets over C classes. */
export function buildCache(keys: Float32Array, m: number, d: number, targets: Targets, C: number): TipCache {
  if (keys.length !== m * d) throw new RangeError(`keys: expected ${m}×${d} values, got ${keys.length}`);
  const values = new Float32Array(m * C);
  if (targets.kind === "single") {
    if (targets.t.length !== m) throw new RangeError(`targets: expected ${m} class indices`);
    targets.t.forEach((c, i) => {
      if (!(c >= 0 && c < C)) throw new RangeError(`targets[${i}]: class ${c} is outside [0, ${C})`);
      values[i * C + c] = 1;
    });
  } else {
    if (targets.y.length !== m * C) throw new RangeError(`targets: expected ${m}×${C} labels`);
    targets.y.forEach((v, i) => (values[i] = v === 1 ? 1 : 0));
  }
  return { keys, values, m, d, C, normalize: targets.kind === "multilabel" };
}

export interface TipParams {
  beta: number;
  alpha: number;
  /** A bias per class (Tip-Adapter-F, multi-label). */
  bias?: Float32Array;
}

/** Tip-Adapter logits [n, C] of normalised features [n, d] with zero-shot logits [n, C]. */
export async function tipLogits(
  features: Float32Array,
  n: number,
  cache: TipCache,
  zeroShot: Float32Array,
  p: TipParams,
): Promise<Float32Array> {
  const r = await native().fewshot.tipLogits({
    features: mat(features, n, cache.d),
    keys: mat(cache.keys, cache.m, cache.d),
    values: mat(cache.values, cache.m, cache.C),
    zeroShot: mat(zeroShot, n, cache.C),
    normalize: cache.normalize,
    beta: p.beta,
    alpha: p.alpha,
    ...(p.bias ? { bias: { data: p.bias, shape: [cache.C] } } : {}),
  });
  return r.data;
}

/** Tip-Adapter logits for every (β, α): index [b][a] → [n, C]. */
export async function tipGrid(
  features: Float32Array,
  n: number,
  cache: TipCache,
  zeroShot: Float32Array,
  betas: number[],
  alphas: number[],
): Promise<Float32Array[][]> {
  const r = await native().fewshot.tipGrid({
    features: mat(features, n, cache.d),
    keys: mat(cache.keys, cache.m, cache.d),
    values: mat(cache.values, cache.m, cache.C),
    zeroShot: mat(zeroShot, n, cache.C),
    normalize: cache.normalize,
    betas,
    alphas,
  });
  const size = n * cache.C;
  return betas.map((_, b) =>
    alphas.map((_, a) => r.data.slice((b * alphas.length + a) * size, (b * alphas.length + a + 1) * size)),
  );
}

export interface TrainSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  /** Default: 0. */
  weightDecay?: number;
  /** Default: 0. */
  seed?: number;
}

/**
 * Tip-Adapter-F: trains the cache keys (and a class bias, multi-label) on the few-shot images
 * themselves (features = the keys, each image's own cache entry masked). Returns the new cache.
 */
export async function trainTipF(
  cache: TipCache,
  targets: Targets,
  zeroShot: Float32Array,
  p: { beta: number; alpha: number },
  s: TrainSettings,
): Promise<{ cache: TipCache; bias: Float32Array; losses: number[] }> {
  const { m, d, C } = cache;
  const r = await native().fewshot.trainTipF({
    features: mat(cache.keys, m, d),
    keys: mat(cache.keys, m, d),
    values: mat(cache.values, m, C),
    zeroShot: mat(zeroShot, m, C),
    normalize: cache.normalize,
    targets: targets.kind === "single" ? { data: targets.t, shape: [m] } : mat(targets.y, m, C),
    task: taskOf(targets),
    cacheIndex: { data: Int32Array.from({ length: m }, (_, i) => i), shape: [m] },
    beta: p.beta,
    alpha: p.alpha,
    ...s,
    weightDecay: s.weightDecay ?? 0,
    seed: s.seed ?? 0,
  });
  return { cache: { ...cache, keys: r.keys.data }, bias: r.bias.data, losses: r.losses };
}

export interface ClipAdapterWeights {
  fc1: Float32Array;
  fc2: Float32Array;
  bias: Float32Array;
  hidden: number;
}

export interface ClipAdapterSettings extends TrainSettings {
  /** Share of the adapted feature in the blend (0.2). */
  ratio: number;
  /** Logit scale on the cosines. */
  scale: number;
  /** Bottleneck width. */
  hidden: number;
}

/** Trains a CLIP-Adapter on normalised features [n, d] against the class text features [C, d]. */
export async function trainClipAdapter(
  features: Float32Array,
  n: number,
  d: number,
  text: Float32Array,
  C: number,
  targets: Targets,
  s: ClipAdapterSettings,
): Promise<ClipAdapterWeights & { losses: number[] }> {
  const r = await native().fewshot.trainClipAdapter({
    features: mat(features, n, d),
    text: mat(text, C, d),
    targets: targets.kind === "single" ? { data: targets.t, shape: [n] } : mat(targets.y, n, C),
    task: taskOf(targets),
    ...s,
    weightDecay: s.weightDecay ?? 0,
    seed: s.seed ?? 0,
  });
  return { fc1: r.fc1.data, fc2: r.fc2.data, bias: r.bias.data, hidden: s.hidden, losses: r.losses };
}

/** CLIP-Adapter logits [n, C]. */
export async function clipAdapterLogits(
  features: Float32Array,
  n: number,
  d: number,
  text: Float32Array,
  C: number,
  task: FewShotTask,
  w: ClipAdapterWeights,
  s: { ratio: number; scale: number },
): Promise<Float32Array> {
  const r = await native().fewshot.clipAdapterLogits({
    features: mat(features, n, d),
    text: mat(text, C, d),
    task,
    ratio: s.ratio,
    scale: s.scale,
    fc1: mat(w.fc1, w.hidden, d),
    fc2: mat(w.fc2, d, w.hidden),
    bias: { data: w.bias, shape: [C] },
  });
  return r.data;
}
