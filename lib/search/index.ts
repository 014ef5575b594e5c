/**
 * Gallery search: the k index rows most similar (cosine) to each query, over embeddings written by
 * `vilref embed` (`<out>.npy` float32 N×D, ids from `<out>.ids.txt`, provenance from
 * `<out>.meta.json`). The index is read from disk a piece of rows at a time and scored in LibTorch
 * by the block-wise top-k of lib/eval/rank.ts (native/rank): a 1,000,000 × 512 index is searched
 * holding one piece of it and one block of scores, never an n×n (or queries × index) matrix.
 * Ties are broken by the lower index row; k larger than the index returns every row.
 *
 * image↔image, text→image and image→text are the same search: queries and index only need to be
 * features of one model's joint space (the caller encodes the queries; `searchIndex` checks the
 * dimension and the dtype).
 */
import { existsSync, readFileSync } from "node:fs";
import { metaPathFor } from "../embed/meta.js";
import type { EmbedMeta } from "../embed/meta.js";
import { idsPathFor, normalizeRowsInPlace } from "../embed/index.js";
import { normalizeRows } from "../eval/features.js";
import { topKStream } from "../eval/rank.js";
import type { FeatureMatrix } from "../eval/rank.js";
import { parseJsonText } from "../io/json.js";
import { NpyError, readNpyHeader, readNpyRows } from "../io/npy.js";
import type { NpyHeader } from "../io/npy.js";

/** An embedding file opened for search: its header, ids and provenance record (data stays on disk). */
export interface GalleryIndex {
  file: string;
  header: NpyHeader;
  rows: number;
  dim: number;
  /** One id per row (from `<file>.ids.txt`), or null when there is none (rows are then named by number). */
  ids: string[] | null;
  /** The `.meta.json` record `vilref embed` wrote, or null. */
  meta: EmbedMeta | null;
}

/** Opens an index: a 2-D float32 (or float64) `.npy` whose ids file, if any, has one id per row. */
export async function openIndex(file: string): Promise<GalleryIndex> {
  if (!existsSync(file)) throw new Error(`${file}: no such index file`);
  const header = await readNpyHeader(file);
  if (header.dtype !== "float32" && header.dtype !== "float64")
    throw new NpyError(
      `${file}: dtype ${header.dtype}; an index holds float32 features (as vilref embed writes them), one row per item`,
    );
  if (header.shape.length !== 2)
    throw new NpyError(`${file}: shape (${header.shape.join(", ")}); an index is 2-D (items × features)`);
  const [rows, dim] = header.shape as [number, number];
  const idsFile = idsPathFor(file);
  let ids: string[] | null = null;
  if (existsSync(idsFile)) {
    ids = readFileSync(idsFile, "utf8").split("\n");
    if (ids.at(-1) === "") ids.pop();
    if (ids.length !== rows) throw new Error(`${idsFile}: ${ids.length} ids for the ${rows} rows of ${file}`);
  }
  let meta: EmbedMeta | null = null;
  if (existsSync(metaPathFor(file))) {
    try {
      meta = parseJsonText(readFileSync(metaPathFor(file), "utf8")) as EmbedMeta;
    } catch {
      meta = null;
    }
  }
  return { file, header, rows, dim, ids, meta };
}

export interface SearchOptions {
  /** Results per query (more than the index's rows: every row). */
  k: number;
  /** Index rows read and scored at once (default: 16 MiB of them). */
  pieceRows?: number;
  /** Score elements one block of the native top-k may hold (default 2^23: 32 MiB of float32 scores). */
  block?: number;
}

export interface SearchHit {
  /** Row of the index. */
  row: number;
  /** Its id (the row number as text when the index has no ids file). */
  id: string;
  /** Cosine similarity. */
  score: number;
}

export interface SearchResult {
  /** Per query, its hits, best first. */
  hits: SearchHit[][];
  /** Hits per query: min(k, rows). */
  k: number;
}

/**
 * Index rows in pieces of `pieceRows`, L2-normalised in place (the piece is a fresh buffer read from
 * disk: one copy of it is alive at a time, not two), as the native top-k takes them.
 */
async function* pieces(index: GalleryIndex, pieceRows: number): AsyncGenerator<FeatureMatrix> {
  for (let start = 0; start < index.rows; start += pieceRows) {
    const end = Math.min(index.rows, start + pieceRows);
    const a = await readNpyRows(index.file, index.header, start, end);
    const x = a.data instanceof Float32Array ? a.data : Float32Array.from(a.data as Float64Array);
    yield { data: normalizeRowsInPlace(x, end - start, index.dim), shape: [end - start, index.dim] };
  }
}

/**
 * The k most similar index rows (cosine) of each query row (`queries`: [n, d] float32, any scale).
 * A query dimension that differs from the index's is an error naming the index file.
 */
export async function searchIndex(
  index: string | GalleryIndex,
  queries: { data: Float32Array; shape: readonly number[] },
  options: SearchOptions,
): Promise<SearchResult> {
  const ix = typeof index === "string" ? await openIndex(index) : index;
  const [n, d] = queries.shape as [number, number];
  if (queries.shape.length !== 2 || queries.data.length !== n * d)
    throw new RangeError(`queries: expected [n, d] features, got shape [${queries.shape.join(", ")}]`);
  if (d !== ix.dim)
    throw new RangeError(
      `${ix.file}: rows of ${ix.dim} features, but the queries have ${d}: ` +
        "the index was embedded with another model or feature kind (--features)",
    );
  if (!(Number.isInteger(options.k) && options.k >= 1))
    throw new RangeError(`k: expected an integer ≥ 1, got ${options.k}`);
  // a piece and a block of scores are the whole working set (~48 MiB by default), whatever the index's size
  const pieceRows = options.pieceRows ?? Math.max(1, Math.floor((16 << 20) / (4 * Math.max(1, d))));
  const q: FeatureMatrix = { data: normalizeRows(queries.data, n, d), shape: [n, d] };
  const r = await topKStream(q, pieces(ix, pieceRows), options.k, { block: options.block ?? 2 ** 23 });
  const k = r.indices.shape[1] ?? 0;
  const hits = Array.from({ length: n }, (_, i) =>
    Array.from({ length: k }, (_, j) => {
      const row = r.indices.data[i * k + j]!;
      return { row, id: ix.ids ? ix.ids[row]! : String(row), score: Number(r.scores.data[i * k + j]) };
    }),
  );
  return { hits, k };
}
