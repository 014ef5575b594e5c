/**
 * Similarity ranking and top-k search over feature rows, computed block by block in LibTorch
 * (native/rank.h): queries [n, d] against index rows [m, d] never hold n×m scores, only one block
 * of them (2^24 scores by default, 64 MiB in float32). Scores are inner products of the rows as
 * given, so the caller normalises them for cosine similarity (`normalizeRows` in features.ts);
 * float32 and float64 both work, the same on both sides.
 *
 * Definitions (the evaluation's, unchanged from the JavaScript they replace):
 * - the rank of a target is the number of other index rows scoring at least as high as it
 *   (0-based; ties never help the target); recall@k is the fraction of ranks below k;
 * - top-k lists each query's k best rows, best first, equal scores in ascending index order,
 *   fewer than k when the index has fewer rows.
 */
import type { FeatureMatrix, TensorData, TopKResult } from "../addon-types.js";
import { native } from "../native.js";

export type { FeatureMatrix, TopKResult } from "../addon-types.js";

export interface BlockOptions {
  /** Score elements one block may hold (default 2^24). Smaller blocks use less memory, not less time. */
  block?: number;
}

/** A row-major [n, d] matrix as the native functions take it. */
export function featureMatrix(data: Float32Array | Float64Array, n: number, d: number): FeatureMatrix {
  return data instanceof Float32Array ? { data, shape: [n, d] } : { data, shape: [n, d] };
}

/**
 * 0-based rank of each query's target among the index rows: how many other rows score at least as
 * high. `targets` holds one index row per query ([n]) or several ([n, t], each ranked on its own);
 * the result has the same layout. Queries are scored against the whole index a block at a time.
 */
export async function targetRanks(
  query: FeatureMatrix,
  index: FeatureMatrix,
  targets: Int32Array | TensorData<Int32Array>,
  options: BlockOptions = {},
): Promise<Int32Array> {
  const t = targets instanceof Int32Array ? { data: targets, shape: [targets.length] } : targets;
  const r = await native().rank.targetRanks(query, index, t, options);
  return r.data;
}

export interface TopKOptions extends BlockOptions {
  /** Index of `index`'s first row in the whole index (when it is one piece of a larger one). */
  offset?: number;
  /** The result over the earlier pieces, merged in (their indices must be below `offset`). */
  previous?: TopKResult;
}

/** The k best index rows of each query with their scores ([n, min(k, rows)], best first, ties by lower index). */
export async function topK(
  query: FeatureMatrix,
  index: FeatureMatrix,
  k: number,
  options: TopKOptions = {},
): Promise<TopKResult> {
  return native().rank.topK(query, index, { ...options, k });
}

/**
 * topK over an index that comes in pieces (rows in index order, e.g. read from disk a slice at a
 * time): the result equals topK over the pieces put together, and only one piece is held at once.
 */
export async function topKStream(
  query: FeatureMatrix,
  pieces: Iterable<FeatureMatrix> | AsyncIterable<FeatureMatrix>,
  k: number,
  options: BlockOptions = {},
): Promise<TopKResult> {
  const n = query.shape[0]!;
  let result: TopKResult | undefined;
  let offset = 0;
  for await (const piece of pieces) {
    result = await topK(query, piece, k, { ...options, offset, ...(result ? { previous: result } : {}) });
    offset += piece.shape[0]!;
  }
  if (result) return result;
  const empty = query.data instanceof Float32Array ? new Float32Array(0) : new Float64Array(0);
  return { scores: featureMatrix(empty, n, 0), indices: { data: new Int32Array(0), shape: [n, 0] } };
}
