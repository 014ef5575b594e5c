/**
 * Evaluation metrics as pure functions over plain arrays: ROC AUC (ties handled by mid-ranks),
 * retrieval recall at k from target ranks, average precision, accuracy, balanced accuracy, F1, (weighted) kappa and
 * percentile-bootstrap confidence intervals. No model, no I/O: protocols (zero-shot, linear probe,
 * retrieval) call these.
 */
import { hashSeed, mulberry32 } from "../data/rng.js";

/**
 * Area under the ROC curve of `scores` for binary `labels` (truthy = positive): the probability that
 * a random positive scores above a random negative, ties counting one half (Mann–Whitney U with
 * mid-ranks). NaN when either class is empty or a score is not finite.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`rocAuc: ${n} scores but ${labels.length} labels`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i++) if (!Number.isFinite(scores[i])) return Number.NaN;
  order.sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const mid = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!]) {
        pos++;
        rankSum += mid;
      }
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return Number.NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

export interface ColumnAuc {
  /** NaN when the column lacks positives or negatives among its known cases. */
  auc: number;
  positives: number;
  negatives: number;
}

/**
 * One-vs-rest AUC of each column of `scores` [n, C] (row-major) against `y` [n, C]: 1 positive,
 * 0 negative, NaN unknown (that case is left out of that column). The per-label AUC of the
 * pre-training held-out evaluation and the probe's validation AUC.
 */
export function columnAucs(scores: ArrayLike<number>, y: ArrayLike<number>, n: number, C: number): ColumnAuc[] {
  if (scores.length !== n * C || y.length !== n * C)
    throw new RangeError(`columnAucs: expected ${n}×${C} scores and targets, got ${scores.length} and ${y.length}`);
  const out: ColumnAuc[] = [];
  for (let c = 0; c < C; c++) {
    const s: number[] = [];
    const l: number[] = [];
    for (let i = 0; i < n; i++) {
      const v = y[i * C + c]!;
      if (Number.isNaN(v)) continue;
      s.push(scores[i * C + c]!);
      l.push(v);
    }
    const positives = l.filter((v) => v).length;
    out.push({ auc: rocAuc(s, l), positives, negatives: l.length - positives });
  }
  return out;
}

/**
 * Recall at k from 0-based target ranks (lib/eval/rank.ts `targetRanks`: the number of other
 * candidates scoring at least as high as the target, so ties never help): the fraction of ranks
 * below each k. NaN when there are no ranks.
 */
export function recallAtK(ranks: ArrayLike<number>, ks: readonly number[]): number[] {
  for (const k of ks)
    if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`recallAtK: k must be a whole number ≥ 1, got ${k}`);
  const hits = ks.map(() => 0);
  for (let r = 0; r < ranks.length; r++) {
    const rank = ranks[r]!;
    for (let i = 0; i < ks.length; i++) if (rank < ks[i]!) hits[i]!++;
  }
  return hits.map((h) => (ranks.length === 0 ? Number.NaN : h / ranks.length));
}

/** Mean of the finite values (NaN when there are none). */
export function finiteMean(values: Iterable<number>): number {
  let s = 0;
  let n = 0;
  for (const v of values) {
    if (Number.isFinite(v)) {
      s += v;
      n++;
    }
  }
  return n === 0 ? Number.NaN : s / n;
}

// ---- ranking metrics beyond AUC -------------------------------------------------------------------

/**
 * Average precision of `scores` for binary `labels` as scikit-learn defines it: the sum over the
 * distinct score thresholds, best first, of (recall gained) × (precision there); tied scores enter
 * together. NaN without positives or with a non-finite score.
 */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`averagePrecision: ${n} scores but ${labels.length} labels`);
  for (let i = 0; i < n; i++) if (!Number.isFinite(scores[i])) return Number.NaN;
  let pos = 0;
  for (let i = 0; i < n; i++) if (labels[i]) pos++;
  if (pos === 0) return Number.NaN;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let tp = 0;
  let seen = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) if (labels[order[k]!]) tp++;
    seen = j + 1;
    const recall = tp / pos;
    ap += (recall - prevRecall) * (tp / seen);
    prevRecall = recall;
    i = j + 1;
  }
  return ap;
}

/** Points of the ROC curve (false-positive rate, true-positive rate), from (0,0) to (1,1); ties make one step. */
export function rocCurve(
  scores: ArrayLike<number>,
  labels: ArrayLike<number | boolean>,
): { fpr: number[]; tpr: number[] } {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`rocCurve: ${n} scores but ${labels.length} labels`);
  let pos = 0;
  for (let i = 0; i < n; i++) if (labels[i]) pos++;
  const neg = n - pos;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const fpr = [0];
  const tpr = [0];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) labels[order[k]!] ? tp++ : fp++;
    fpr.push(neg === 0 ? Number.NaN : fp / neg);
    tpr.push(pos === 0 ? Number.NaN : tp / pos);
    i = j + 1;
  }
  return { fpr, tpr };
}

// ---- classification metrics over predicted classes ------------------------------------------------

function checkClasses(name: string, pred: ArrayLike<number>, target: ArrayLike<number>, k: number): void {
  if (pred.length !== target.length)
    throw new RangeError(`${name}: ${pred.length} predictions but ${target.length} targets`);
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`${name}: classes must be a whole number ≥ 1, got ${k}`);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i]!;
    const t = target[i]!;
    if (!(Number.isInteger(p) && p >= 0 && p < k))
      throw new RangeError(`${name}: predictions[${i}] = ${p} is not a class index below ${k}`);
    if (!(Number.isInteger(t) && t >= 0 && t < k))
      throw new RangeError(`${name}: targets[${i}] = ${t} is not a class index below ${k}`);
  }
}

/** Confusion matrix [k, k] (row-major): entry [t, p] counts samples of class t predicted as p. */
export function confusionMatrix(pred: ArrayLike<number>, target: ArrayLike<number>, k: number): number[][] {
  checkClasses("confusionMatrix", pred, target, k);
  const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < pred.length; i++) m[target[i]!]![pred[i]!]!++;
  return m;
}

/** Fraction of predictions equal to the target (NaN for no samples). */
export function accuracy(pred: ArrayLike<number>, target: ArrayLike<number>): number {
  if (pred.length !== target.length)
    throw new RangeError(`accuracy: ${pred.length} predictions but ${target.length} targets`);
  let hit = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === target[i]) hit++;
  return pred.length === 0 ? Number.NaN : hit / pred.length;
}

/** Mean per-class recall over the classes that occur in the targets (scikit-learn's balanced accuracy). */
export function balancedAccuracy(pred: ArrayLike<number>, target: ArrayLike<number>, k: number): number {
  return balancedAccuracyFromConfusion(confusionMatrix(pred, target, k));
}

/** Balanced accuracy of a confusion matrix [true][predicted]. */
export function balancedAccuracyFromConfusion(m: readonly (readonly number[])[]): number {
  return finiteMean(
    m.map((row, c) => {
      const support = row.reduce((a, b) => a + b, 0);
      return support === 0 ? Number.NaN : row[c]! / support;
    }),
  );
}

/** F1 of one binary problem from its counts: 2TP / (2TP + FP + FN); NaN when there is nothing to
 * find and nothing found. */
export function f1FromCounts(tp: number, fp: number, fn: number): number {
  const d = 2 * tp + fp + fn;
  return d === 0 ? Number.NaN : (2 * tp) / d;
}

/** Binary F1 of 0/1 predictions against 0/1 labels. */
export function f1Binary(pred: ArrayLike<number | boolean>, labels: ArrayLike<number | boolean>): number {
  if (pred.length !== labels.length)
    throw new RangeError(`f1Binary: ${pred.length} predictions but ${labels.length} labels`);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i] && labels[i]) tp++;
    else if (pred[i]) fp++;
    else if (labels[i]) fn++;
  }
  return f1FromCounts(tp, fp, fn);
}

/** Macro F1 over classes (one-vs-rest per class, classes without support or predictions excluded)
 * and micro F1 (= accuracy for single-label). */
export function f1Multiclass(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  k: number,
): { macro: number; perClass: number[] } {
  return f1FromConfusion(confusionMatrix(pred, target, k));
}

/** Per-class and macro F1 of a confusion matrix [true][predicted]. */
export function f1FromConfusion(m: readonly (readonly number[])[]): { macro: number; perClass: number[] } {
  const perClass = m.map((row, c) => {
    const tp = row[c]!;
    const fn = row.reduce((a, b) => a + b, 0) - tp;
    const fp = m.reduce((a, r) => a + r[c]!, 0) - tp;
    return f1FromCounts(tp, fp, fn);
  });
  return { macro: finiteMean(perClass), perClass };
}

export type KappaWeights = "none" | "linear" | "quadratic";

/**
 * Cohen's kappa over k ordered classes: 1 − Σ w·O / Σ w·E, with O the observed confusion matrix,
 * E the outer product of its marginals / n, and w_ij = [i≠j] (none), |i−j|/(k−1) (linear) or
 * (i−j)²/(k−1)² (quadratic). NaN when the expected disagreement is 0 (e.g. one class only).
 */
export function cohenKappa(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  k: number,
  weights: KappaWeights = "none",
): number {
  return kappaFromConfusion(confusionMatrix(pred, target, k), weights);
}

/** Cohen's kappa of a confusion matrix [true][predicted] (see cohenKappa). */
export function kappaFromConfusion(m: readonly (readonly number[])[], weights: KappaWeights = "none"): number {
  const k = m.length;
  const rows = m.map((r) => r.reduce((a, b) => a + b, 0));
  const n = rows.reduce((a, b) => a + b, 0);
  if (n === 0) return Number.NaN;
  const cols = Array.from({ length: k }, (_, j) => m.reduce((a, r) => a + r[j]!, 0));
  const w = (i: number, j: number) =>
    weights === "none"
      ? i === j
        ? 0
        : 1
      : k === 1
        ? 0
        : weights === "linear"
          ? Math.abs(i - j) / (k - 1)
          : (i - j) ** 2 / (k - 1) ** 2;
  let obs = 0;
  let exp = 0;
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      obs += w(i, j) * m[i]![j]!;
      exp += (w(i, j) * rows[i]! * cols[j]!) / n;
    }
  return exp === 0 ? Number.NaN : 1 - obs / exp;
}

/** Index of the largest value of each row of a row-major [rows, cols] matrix (first on ties). */
export function argmaxRows(m: ArrayLike<number>, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (m[r * cols + c]! > m[r * cols + best]!) best = c;
    out[r] = best;
  }
  return out;
}

// ---- AUC and AP of resamples without re-sorting -------------------------------------------------

/**
 * One class's scores sorted once, so that the AUC and AP of any bootstrap resample come from the
 * cases' multiplicities in O(n) instead of a sort per resample. It forms the same tie groups and
 * does the same floating-point operations in the same order as rocAuc and averagePrecision on the
 * resample written out (rank sums are sums of half-integers, exact in either order), so the values
 * are identical to the bit.
 */
export class SortedScores {
  /** Case ids in ascending order of their (finite) scores. */
  private readonly cases: Int32Array;
  private readonly positive: Uint8Array;
  /** Start of each tie group in `cases`, then cases.length. */
  private readonly groups: Int32Array;
  /** Cases whose score is not finite: a resample holding one has NaN AUC and AP, as rocAuc says. */
  private readonly nonFinite: Int32Array;
  private readonly size: Float64Array;
  private readonly pos: Float64Array;

  /** `scores` and `labels` (truthy = positive) of the cases `ids` (ids index the multiplicity arrays). */
  constructor(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>, ids: ArrayLike<number>) {
    const m = ids.length;
    if (scores.length !== m || labels.length !== m)
      throw new RangeError(`SortedScores: ${m} cases but ${scores.length} scores and ${labels.length} labels`);
    const finite: number[] = [];
    const bad: number[] = [];
    for (let i = 0; i < m; i++) (Number.isFinite(scores[i]) ? finite : bad).push(i);
    finite.sort((a, b) => scores[a]! - scores[b]!);
    this.cases = Int32Array.from(finite, (i) => ids[i]!);
    this.positive = Uint8Array.from(finite, (i) => (labels[i] ? 1 : 0));
    this.nonFinite = Int32Array.from(bad, (i) => ids[i]!);
    const starts: number[] = [];
    for (let k = 0; k < finite.length; k++)
      if (k === 0 || scores[finite[k]!] !== scores[finite[starts.at(-1)!]!]) starts.push(k);
    starts.push(finite.length);
    this.groups = Int32Array.from(starts);
    this.size = new Float64Array(starts.length - 1);
    this.pos = new Float64Array(starts.length - 1);
  }

  /** [AUC, AP] of the sample in which case `id` appears counts[id] times (as rocAuc, averagePrecision). */
  aucAp(counts: ArrayLike<number>): [number, number] {
    for (const id of this.nonFinite) if (counts[id]! > 0) return [Number.NaN, Number.NaN];
    const { cases, positive, groups, size, pos } = this;
    const G = groups.length - 1;
    let total = 0;
    let positives = 0;
    for (let g = 0; g < G; g++) {
      let s = 0;
      let p = 0;
      for (let k = groups[g]!; k < groups[g + 1]!; k++) {
        const c = counts[cases[k]!]!;
        s += c;
        if (positive[k]) p += c;
      }
      size[g] = s;
      pos[g] = p;
      total += s;
      positives += p;
    }
    return [this.auc(G, total, positives), this.ap(G, positives)];
  }

  /** rocAuc: mid-ranks of the tie groups in ascending order. */
  private auc(G: number, total: number, positives: number): number {
    let seen = 0;
    let rankSum = 0;
    for (let g = 0; g < G; g++) {
      const s = this.size[g]!;
      if (s === 0) continue;
      const mid = (seen + (seen + s - 1)) / 2 + 1;
      rankSum += this.pos[g]! * mid;
      seen += s;
    }
    const neg = total - positives;
    if (positives === 0 || neg === 0) return Number.NaN;
    return (rankSum - (positives * (positives + 1)) / 2) / (positives * neg);
  }

  /** averagePrecision: the tie groups in descending order. */
  private ap(G: number, positives: number): number {
    if (positives === 0) return Number.NaN;
    let tp = 0;
    let seen = 0;
    let ap = 0;
    let prevRecall = 0;
    for (let g = G - 1; g >= 0; g--) {
      const s = this.size[g]!;
      if (s === 0) continue;
      tp += this.pos[g]!;
      seen += s;
      const recall = tp / positives;
      ap += (recall - prevRecall) * (tp / seen);
      prevRecall = recall;
    }
    return ap;
  }
}

/** Multiplicity of each case 0..n−1 in a sample of case indices. */
export function multiplicities(indices: ArrayLike<number>, n: number): Int32Array {
  const counts = new Int32Array(n);
  for (let i = 0; i < indices.length; i++) counts[indices[i]!]!++;
  return counts;
}

// ---- bootstrap confidence intervals -------------------------------------------------------------

export interface Estimate {
  /** The statistic on the whole sample. */
  value: number;
  /** Percentile bootstrap interval [lo, hi] at `level` (NaN when the statistic is undefined). */
  lo: number;
  hi: number;
  level: number;
  /** Resamples drawn, and how many gave a finite statistic (e.g. both classes present for AUC). */
  resamples: number;
  valid: number;
}

export interface BootstrapOptions {
  /** Resamples (default 1000; 0 gives no interval). */
  resamples?: number;
  /** Seed of the resampling (default 0): the same seed gives the same interval. */
  seed?: number;
  /** Coverage (default 0.95). */
  level?: number;
}

/** The q-quantile of sorted values, linear between order statistics (numpy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/**
 * A statistic of n cases with a percentile bootstrap CI: `statistic(indices)` gets the indices of
 * a sample (all 0..n-1 for the point estimate, n draws with replacement for each resample) and
 * returns a number. Resamples where it is not finite are left out and counted (`valid`); fewer
 * than half valid leaves the interval NaN.
 */
export function bootstrap(
  n: number,
  statistic: (indices: Int32Array) => number,
  options: BootstrapOptions = {},
): Estimate {
  return bootstrapMany(n, (idx) => [statistic(idx)], options)[0]!;
}

/**
 * Several statistics of the same cases, each with its percentile CI, from the same resamples
 * (so a mean over classes and each class's value come from one pass): `statistic` returns a
 * fixed-length list.
 */
export function bootstrapMany(
  n: number,
  statistic: (indices: Int32Array) => number[],
  options: BootstrapOptions = {},
): Estimate[] {
  const B = options.resamples ?? 1000;
  const level = options.level ?? 0.95;
  if (!(Number.isInteger(B) && B >= 0))
    throw new RangeError(`bootstrap: resamples must be a whole number ≥ 0, got ${B}`);
  if (!(level > 0 && level < 1)) throw new RangeError(`bootstrap: level must be in (0, 1), got ${level}`);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const values = statistic(all);
  const stats = values.map(() => [] as number[]);
  if (B > 0 && n > 0 && values.some(Number.isFinite)) {
    const rng = mulberry32(hashSeed(options.seed ?? 0, n, 0xb00757));
    const idx = new Int32Array(n);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < n; i++) idx[i] = Math.floor(rng.next() * n);
      const s = statistic(idx);
      s.forEach((v, j) => {
        if (Number.isFinite(v) && Number.isFinite(values[j])) stats[j]!.push(v);
      });
    }
  }
  const a = (1 - level) / 2;
  return values.map((value, j) => {
    const st = stats[j]!.sort((x, y) => x - y);
    const ok = Number.isFinite(value) && B > 0 && st.length * 2 >= B;
    return {
      value,
      lo: ok ? quantileSorted(st, a) : Number.NaN,
      hi: ok ? quantileSorted(st, 1 - a) : Number.NaN,
      level,
      resamples: B,
      valid: st.length,
    };
  });
}

/** Picks the entries of `xs` at `indices`. */
export function pick<T extends ArrayLike<number>>(xs: T, indices: ArrayLike<number>): Float64Array {
  const out = new Float64Array(indices.length);
  for (let i = 0; i < indices.length; i++) out[i] = xs[indices[i]!]!;
  return out;
}

/** "0.812 [0.771, 0.850]" */
export function formatEstimate(e: Estimate, digits = 3): string {
  if (!Number.isFinite(e.value)) return "n/a";
  return Number.isFinite(e.lo)
    ? `${e.value.toFixed(digits)} [${e.lo.toFixed(digits)}, ${e.hi.toFixed(digits)}]`
    : e.value.toFixed(digits);
}
