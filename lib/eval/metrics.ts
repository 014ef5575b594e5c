/**
 * Evaluation metrics as pure functions over plain arrays: ROC AUC (ties handled by mid-ranks) and
 * retrieval recall at k. No model, no I/O: protocols (zero-shot, linear probe, retrieval) call these.
 */

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
  for (let i = 0; i < n; ) {
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

/**
 * Recall at k for a score matrix `scores` [rows, cols] (row-major): the fraction of rows whose
 * target column is among the k best. A candidate tied with the target counts as ranked above it
 * (ties never help). Returns one value per k.
 */
export function recallAtK(scores: ArrayLike<number>, rows: number, cols: number, targets: ArrayLike<number>, ks: readonly number[]): number[] {
  if (scores.length !== rows * cols) throw new RangeError(`recallAtK: expected ${rows}×${cols} scores, got ${scores.length}`);
  if (targets.length !== rows) throw new RangeError(`recallAtK: expected ${rows} targets, got ${targets.length}`);
  const hits = ks.map(() => 0);
  for (let r = 0; r < rows; r++) {
    const t = targets[r]!;
    if (!(Number.isInteger(t) && t >= 0 && t < cols)) throw new RangeError(`recallAtK: targets[${r}] = ${t} is not a column index`);
    const s = scores[r * cols + t]!;
    let rank = 0; // candidates scoring at least as well as the target, the target excluded
    for (let c = 0; c < cols; c++) if (c !== t && !(scores[r * cols + c]! < s)) rank++;
    ks.forEach((k, i) => {
      if (rank < k) hits[i]!++;
    });
  }
  return hits.map((h) => (rows === 0 ? Number.NaN : h / rows));
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose(m: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

export interface RetrievalScores {
  /** Image → text: for image i, is report i among the k best? */
  imageToText: Record<`R@${number}`, number>;
  textToImage: Record<`R@${number}`, number>;
}

/** Paired image↔text retrieval from the similarity matrix [n images, n texts], pair i ↔ i. */
export function pairedRetrieval(similarity: ArrayLike<number>, n: number, ks: readonly number[] = [1, 5, 10]): RetrievalScores {
  const targets = Int32Array.from({ length: n }, (_, i) => i);
  const named = (v: number[]) => Object.fromEntries(ks.map((k, i) => [`R@${k}`, v[i]!])) as Record<`R@${number}`, number>;
  return {
    imageToText: named(recallAtK(similarity, n, n, targets, ks)),
    textToImage: named(recallAtK(transpose(similarity, n, n), n, n, targets, ks)),
  };
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
