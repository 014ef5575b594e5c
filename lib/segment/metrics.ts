/**
 * Binary segmentation metrics inside a field-of-view mask: Dice, IoU, sensitivity, specificity,
 * accuracy at a threshold, and ROC AUC of the probabilities (lib/eval/metrics.ts rocAuc).
 */
import { rocAuc } from "../eval/metrics.js";

export interface Confusion {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

export interface SegMetrics {
  /** 2TP / (2TP + FP + FN); 1 when both prediction and truth are empty. */
  dice: number;
  /** TP / (TP + FP + FN); 1 when both are empty. */
  iou: number;
  /** ROC AUC of the probabilities; NaN when a class is absent. */
  auc: number;
  /** TP / (TP + FN); NaN without positives. */
  sensitivity: number;
  /** TN / (TN + FP); NaN without negatives. */
  specificity: number;
  accuracy: number;
  /** Pixels counted (inside the field of view). */
  pixels: number;
}

function check(n: number, name: string, a: ArrayLike<number>): void {
  if (a.length !== n) throw new RangeError(`${name}: ${a.length} pixels, the prediction has ${n}`);
}

/** Counts inside `fov` (all pixels when undefined); a pixel is predicted positive when prob ≥ threshold. */
export function confusion(
  prob: ArrayLike<number>,
  target: ArrayLike<number>,
  fov?: ArrayLike<number>,
  threshold = 0.5,
): Confusion {
  const n = prob.length;
  check(n, "target", target);
  if (fov) check(n, "fov", fov);
  let tp = 0,
    fp = 0,
    fn = 0,
    tn = 0;
  for (let i = 0; i < n; i++) {
    if (fov && !fov[i]) continue;
    const p = prob[i]! >= threshold,
      t = target[i]! > 0;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
    else tn++;
  }
  return { tp, fp, fn, tn };
}

export function metricsFromConfusion(c: Confusion, auc = Number.NaN): SegMetrics {
  const { tp, fp, fn, tn } = c;
  const pixels = tp + fp + fn + tn;
  return {
    dice: 2 * tp + fp + fn === 0 ? 1 : (2 * tp) / (2 * tp + fp + fn),
    iou: tp + fp + fn === 0 ? 1 : tp / (tp + fp + fn),
    auc,
    sensitivity: tp + fn === 0 ? Number.NaN : tp / (tp + fn),
    specificity: tn + fp === 0 ? Number.NaN : tn / (tn + fp),
    accuracy: pixels === 0 ? Number.NaN : (tp + tn) / pixels,
    pixels,
  };
}

/** All metrics of one image inside its field of view. */
export function segmentationMetrics(
  prob: ArrayLike<number>,
  target: ArrayLike<number>,
  fov?: ArrayLike<number>,
  threshold = 0.5,
): SegMetrics {
  const c = confusion(prob, target, fov, threshold);
  let scores: Float32Array, labels: Uint8Array;
  if (fov) {
    const idx: number[] = [];
    for (let i = 0; i < prob.length; i++) if (fov[i]) idx.push(i);
    scores = Float32Array.from(idx, (i) => prob[i]!);
    labels = Uint8Array.from(idx, (i) => (target[i]! > 0 ? 1 : 0));
  } else {
    scores = Float32Array.from(prob);
    labels = Uint8Array.from(target, (t) => (t > 0 ? 1 : 0));
  }
  return metricsFromConfusion(c, rocAuc(scores, labels));
}

/** The mean of each metric over images (NaNs skipped). */
export function meanMetrics(list: readonly SegMetrics[]): SegMetrics {
  const keys = ["dice", "iou", "auc", "sensitivity", "specificity", "accuracy", "pixels"] as const;
  const out = {} as SegMetrics;
  for (const k of keys) {
    const v = list.map((m) => m[k]).filter((x) => Number.isFinite(x));
    out[k] =
      k === "pixels" ? v.reduce((a, b) => a + b, 0) : v.length ? v.reduce((a, b) => a + b, 0) / v.length : Number.NaN;
  }
  return out;
}
