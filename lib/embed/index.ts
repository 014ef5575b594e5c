/**
 * Streaming batch embedding: images (or report texts) → `<out>.npy` (float32, N×D, rows in input
 * order) and `<out minus .npy>.ids.txt` (one id a line, the same order).
 *
 * - Decoding overlaps the forward pass: the loader prepares the next batches on sharp's threads
 *   while the encoder runs (off the event loop, in LibTorch).
 * - Work is cut into chunks of `chunkSize` inputs; each finished chunk is written atomically to
 *   `<out>.parts/`, so a rerun skips finished chunks. When all are done they are joined into the
 *   output (atomically) and the parts removed.
 * - Images that cannot be decoded are skipped, logged with path and reason, and listed in
 *   `<out base>.skipped.tsv`; `strict` makes them fatal. When no input at all could be embedded the
 *   call fails (an EmbedError; `vilref embed` exits 1) and writes no output.
 * - One run per output: `<out>.lock` names the process that writes it (lib/io/lock.ts); a second
 *   run on the same output is refused, a lock left by a killed run is taken over, and the
 *   temporaries a killed run left are removed.
 * - Provenance: `<out base>.meta.json` (lib/embed/meta.ts) records the model (file sha256 or
 *   preset), feature kind, preprocessing, normalisation, input ids hash and vilref version. An
 *   output is "up to date" only when its record matches this run's, and finished chunks are resumed
 *   only when theirs does: otherwise the run recomputes and says why, so rows from two models or
 *   two input lists are never mixed.
 * - `normalize`: rows are L2-normalised before they are written (cosine search reads them as is).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { atomicWriteFile, atomicWriteFileSync, cleanTempFiles } from "../io/atomic.js";
import { parseJson } from "../io/json.js";
import { acquireLock } from "../io/lock.js";
import { readNpy, writeNpy } from "../io/npy.js";
import type { TensorData } from "../native.js";
import { Loader } from "../data/loader.js";
import type { Sample } from "../data/manifest.js";
import type { TransformOptions } from "../data/transforms.js";
import type { ImageEncoder, TextEncoder } from "./encoders.js";
import { canonical, makeKey, metaPathFor, mismatchReason, readMetaKey, writeMeta } from "./meta.js";
import type { EmbedKey } from "./meta.js";
import { progress, type Progress, type ProgressSpec } from "../progress.js";

export type { ImageEncoder, TextEncoder } from "./encoders.js";
export { PooledHeadEncoder, pooledFeatures, POOLED_FEATURES } from "./encoders.js";
export { metaPathFor, keyDifferences, canonical, makeKey, writeMeta, readMetaKey, mismatchReason } from "./meta.js";
export type { EmbedKey, EmbedMeta } from "./meta.js";
export { progress, formatDuration } from "../progress.js";
export type { Progress, ProgressOptions, ProgressSpec, ProgressStream } from "../progress.js";

export interface EmbedOptions {
  /** Output `.npy` path; ids go to the same path with `.ids.txt` instead of `.npy`. */
  out: string;
  batchSize?: number;
  /** Inputs per resumable chunk (rounded up to a multiple of batchSize; default 64 batches). */
  chunkSize?: number;
  /** Recompute even when the output exists. */
  force?: boolean;
  /** false: no progress bar; or options for it (lib/progress.ts; default: a bar on stderr). */
  progress?: ProgressSpec;
  /** Extra messages (resume, restart, why a run recomputes). */
  info?: (line: string) => void;
  /** Write L2-normalised rows (norm 1; an all-zero row stays zero). */
  normalize?: boolean;
}

export interface ImageEmbedOptions extends EmbedOptions {
  /** Transform options beyond size (default: evaluation transform at the encoder's size). */
  transform?: Omit<TransformOptions, "size" | "train">;
  concurrency?: number;
  prefetch?: number;
  strict?: boolean;
  /** Run log for skipped images: a file, or a function. */
  log?: string | ((line: string) => void);
}

export interface EmbedResult {
  out: string;
  idsFile: string;
  rows: number;
  dim: number;
  /** Inputs that were skipped (bad images). */
  skipped: { id: string; reason: string }[];
  /** Chunks found finished from an earlier run, and chunks computed now. */
  resumedChunks: number;
  computedChunks: number;
  /** The output existed, its provenance record matched, and it was kept. */
  upToDate: boolean;
  /** Why an existing output or unfinished run was not reused (null when nothing was there or it was reused). */
  recomputed: string | null;
  /** `<out base>.meta.json`. */
  metaFile: string;
  seconds: number;
}

/** `<out>.npy` → `<out>.ids.txt`. */
export function idsPathFor(out: string): string {
  return (out.endsWith(".npy") ? out.slice(0, -4) : out) + ".ids.txt";
}

function skippedPathFor(out: string): string {
  return (out.endsWith(".npy") ? out.slice(0, -4) : out) + ".skipped.tsv";
}

/** Nothing could be embedded: every input was skipped (the reasons are in `skipped`). */
export class EmbedError extends Error {
  override name = "EmbedError";
  constructor(
    message: string,
    readonly skipped: { id: string; reason: string }[],
  ) {
    super(message);
  }
}

/** Runs `body` holding `<out>.lock`, with the temporaries of killed runs on this output removed first. */
async function owningOutput<T>(o: EmbedOptions, body: () => Promise<T>): Promise<T> {
  const lock = acquireLock(o.out + ".lock", { what: `output ${o.out}`, command: "vilref embed" });
  try {
    if (lock.stale) o.info?.(`took over ${lock.file} from a run that is gone`);
    const removed = [
      ...cleanTempFiles(path.dirname(path.resolve(o.out))),
      ...cleanTempFiles(o.out + ".parts", { all: true }),
    ];
    if (removed.length) o.info?.(`removed ${removed.length} unfinished file(s) of an interrupted run`);
    return await body();
  } finally {
    lock.release();
  }
}

interface ChunkMeta {
  ids: string[];
  skipped: { id: string; reason: string }[];
}

interface Fingerprint {
  key: EmbedKey;
  chunkSize: number;
}

function checkIds(ids: readonly string[]): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (/[\n\r]/.test(id))
      throw new RangeError(`id ${JSON.stringify(id)}: ids cannot contain line breaks (the ids file has one a line)`);
    if (seen.has(id)) throw new RangeError(`duplicate id ${JSON.stringify(id)}`);
    seen.add(id);
  }
}

/** The chunked, resumable runner shared by images and texts. */
class Chunked {
  readonly parts: string;
  readonly n: number;
  readonly C: number;
  readonly done: Set<number> = new Set();
  dim = -1;

  /** Why unfinished chunks of an earlier run were thrown away (null when none were). */
  restarted: string | null = null;

  constructor(
    readonly o: EmbedOptions,
    readonly ids: readonly string[],
    readonly key: EmbedKey,
    batchSize: number,
  ) {
    checkIds(ids);
    this.n = ids.length;
    const c = o.chunkSize ?? 64 * batchSize;
    this.C = Math.max(batchSize, Math.ceil(c / batchSize) * batchSize);
    this.parts = o.out + ".parts";
    const fingerprint: Fingerprint = { key, chunkSize: this.C };
    const fpFile = path.join(this.parts, "fingerprint.json");
    const want = canonical(fingerprint);
    if (existsSync(this.parts)) {
      let have: Partial<Fingerprint> | null = null;
      try {
        have = parseJson(readFileSync(fpFile, "utf8"), fpFile) as Partial<Fingerprint>;
      } catch {
        /* none */
      }
      if (canonical(have) !== want) {
        const why =
          have?.key && have.chunkSize !== this.C && canonical(have.key) === canonical(key)
            ? `${this.parts}: chunks of ${have.chunkSize} inputs, this run uses ${this.C}`
            : mismatchReason(have?.key ?? null, key, `${this.parts} (an unfinished run)`);
        this.restarted = why;
        o.info?.(`${why}; starting over`);
        rmSync(this.parts, { recursive: true, force: true });
      }
    }
    mkdirSync(this.parts, { recursive: true });
    atomicWriteFileSync(fpFile, want);
    for (const f of readdirSync(this.parts)) {
      const m = /^chunk-(\d+)\.json$/.exec(f);
      if (m && existsSync(path.join(this.parts, `chunk-${m[1]}.npy`))) this.done.add(Number(m[1]));
    }
  }

  get chunks(): number {
    return Math.ceil(this.n / this.C);
  }

  missing(): number[] {
    return Array.from({ length: this.chunks }, (_, k) => k).filter((k) => !this.done.has(k));
  }

  #name(k: number): string {
    return path.join(this.parts, `chunk-${String(k).padStart(6, "0")}`);
  }

  async writeChunk(
    k: number,
    rows: Float32Array[],
    ids: string[],
    skipped: ChunkMeta["skipped"],
    dim: number,
  ): Promise<void> {
    const data = new Float32Array(ids.length * dim);
    let off = 0;
    for (const r of rows) {
      data.set(r, off);
      off += r.length;
    }
    await writeNpy(this.#name(k) + ".npy", { dtype: "float32", shape: [ids.length, dim], data });
    // The json is the completion marker: written after the rows.
    await atomicWriteFile(
      this.#name(k) + ".json",
      new TextEncoder().encode(JSON.stringify({ ids, skipped } satisfies ChunkMeta)),
    );
    this.done.add(k);
  }

  /** Joins the chunks into the output, writes ids (and skips), removes the parts. */
  async finish(): Promise<{ rows: number; dim: number; skipped: ChunkMeta["skipped"] }> {
    const arrays: Float32Array[] = [];
    const ids: string[] = [];
    const skipped: ChunkMeta["skipped"] = [];
    let dim = this.dim;
    for (let k = 0; k < this.chunks; k++) {
      const meta = parseJson(readFileSync(this.#name(k) + ".json", "utf8"), this.#name(k) + ".json") as ChunkMeta;
      const arr = await readNpy(this.#name(k) + ".npy");
      const d = arr.shape[1] ?? 0;
      if (arr.shape[0]! > 0) {
        if (dim >= 0 && d !== dim && dim !== 0)
          throw new Error(`${this.#name(k)}.npy: ${d} columns, earlier chunks have ${dim}`);
        dim = d;
      }
      arrays.push(arr.data as Float32Array);
      ids.push(...meta.ids);
      skipped.push(...meta.skipped);
    }
    if (dim < 0) dim = 0;
    const sk = skippedPathFor(this.o.out);
    if (ids.length === 0) {
      // nothing to write: say why, keep the reasons beside the output, leave no parts
      if (skipped.length > 0)
        await atomicWriteFile(sk, skipped.map((s) => `${s.id}\t${s.reason.replace(/[\t\n]/g, " ")}\n`).join(""));
      rmSync(this.parts, { recursive: true, force: true });
      const reasons = [...new Set(skipped.map((s) => s.reason))].slice(0, 3).join("; ");
      throw new EmbedError(
        this.n === 0
          ? `${this.o.out}: no inputs to embed`
          : `${this.o.out}: none of the ${this.n} inputs could be embedded, ` +
              `nothing written (${reasons}${skipped.length ? `; all listed in ${sk}` : ""})`,
        skipped,
      );
    }
    const data = new Float32Array(ids.length * dim);
    let off = 0;
    for (const a of arrays) {
      data.set(a, off);
      off += a.length;
    }
    // the record goes first: a crash between the writes leaves a record without rows (recomputed), never
    // rows under another run's record
    rmSync(metaPathFor(this.o.out), { force: true });
    await writeNpy(this.o.out, { dtype: "float32", shape: [ids.length, dim], data });
    await atomicWriteFile(idsPathFor(this.o.out), new TextEncoder().encode(ids.map((x) => x + "\n").join("")));
    if (skipped.length > 0)
      await atomicWriteFile(
        sk,
        new TextEncoder().encode(skipped.map((s) => `${s.id}\t${s.reason.replace(/[\t\n]/g, " ")}\n`).join("")),
      );
    else rmSync(sk, { force: true });
    await writeMeta(this.o.out, this.key, { rows: ids.length, dim, skipped: skipped.length });
    rmSync(this.parts, { recursive: true, force: true });
    return { rows: ids.length, dim, skipped };
  }
}

/**
 * The existing output when its provenance record equals `key` (null otherwise). An output made by
 * something else is removed first, with the reason reported, so it is never taken for this run's.
 */
function upToDate(o: EmbedOptions, key: EmbedKey, started: number): EmbedResult | { recomputed: string | null } {
  const files = [o.out, idsPathFor(o.out), metaPathFor(o.out)];
  if (!files.some((f) => existsSync(f))) return { recomputed: null };
  const was = readMetaKey(o.out);
  const why = o.force
    ? `${o.out}: --force`
    : !existsSync(o.out) || !existsSync(idsPathFor(o.out))
      ? `${o.out}: incomplete output`
      : mismatchReason(was, key, o.out);
  if (why === null && !existsSync(o.out + ".parts")) {
    const ids = readFileSync(idsPathFor(o.out), "utf8")
      .split("\n")
      .filter((l) => l !== "");
    o.info?.(`${o.out} exists (${ids.length} rows) and was made from the same model, inputs and options`);
    return {
      out: o.out,
      idsFile: idsPathFor(o.out),
      metaFile: metaPathFor(o.out),
      rows: ids.length,
      dim: -1,
      skipped: [],
      resumedChunks: 0,
      computedChunks: 0,
      upToDate: true,
      recomputed: null,
      seconds: (performance.now() - started) / 1000,
    };
  }
  if (why !== null) o.info?.(`${why}; recomputing`);
  for (const f of [...files, skippedPathFor(o.out)]) rmSync(f, { force: true });
  return { recomputed: why };
}

/** L2-normalises the rows of [n, d] in place (a zero row stays zero). */
export function normalizeRowsInPlace(x: Float32Array, n: number, d: number): Float32Array {
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = i * d; k < (i + 1) * d; k++) s += x[k]! * x[k]!;
    if (s === 0) continue;
    const inv = 1 / Math.sqrt(s);
    for (let k = i * d; k < (i + 1) * d; k++) x[k]! *= inv;
  }
  return x;
}

/** The provenance key of a run: the encoder's record (default its name), preprocessing, normalisation, ids. */
function runKey(
  kind: "image" | "text",
  encoder: ImageEncoder | TextEncoder,
  preprocessing: unknown,
  options: EmbedOptions,
  ids: readonly string[],
): EmbedKey {
  const encoderRecord = encoder.provenance ?? { name: encoder.name ?? `${kind}-encoder` };
  return makeKey({ kind, encoder: encoderRecord, preprocessing, normalize: !!options.normalize, ids });
}

/** The encoder's output, copied when it shares memory with the batch (which the loader reuses). */
function ownRows(emb: TensorData<Float32Array>, input: Float32Array): TensorData<Float32Array> {
  return emb.data.buffer === input.buffer ? { ...emb, data: emb.data.slice() } : emb;
}

/** Embeds images (samples in order) with an image encoder. */
export function embedImages(
  samples: readonly Sample[],
  encoder: ImageEncoder,
  options: ImageEmbedOptions,
): Promise<EmbedResult> {
  return owningOutput(options, () => embedImagesOwned(samples, encoder, options));
}

/** A run that is not up to date: its chunks, those still to embed, and how many an earlier run did. */
interface OpenRun {
  run: Chunked;
  missing: number[];
  resumed: number;
  /** Why the earlier output was recomputed (null: there was none). */
  recomputed: string | null;
}

/** The output as it stands when it is up to date, else the run's chunks (a resumed run says how many are done). */
function openRun(
  kind: "image" | "text",
  encoder: ImageEncoder | TextEncoder,
  preprocessing: unknown,
  options: EmbedOptions,
  ids: readonly string[],
  batchSize: number,
  started: number,
): EmbedResult | OpenRun {
  const key = runKey(kind, encoder, preprocessing, options, ids);
  const kept = upToDate(options, key, started);
  if ("upToDate" in kept) return kept;
  const run = new Chunked(options, ids, key, batchSize);
  const missing = run.missing();
  const resumed = run.chunks - missing.length;
  if (resumed > 0) options.info?.(`resuming: ${resumed} of ${run.chunks} chunks already done`);
  return { run, missing, resumed, recomputed: kept.recomputed };
}

/**
 * Joins the chunks into the output files; `skipped`: "listed" reports the inputs the chunks skipped,
 * "none" reports none.
 */
async function finishRun(
  { run, missing, resumed, recomputed }: OpenRun,
  options: EmbedOptions,
  started: number,
  skipped: "listed" | "none",
): Promise<EmbedResult> {
  const fin = await run.finish();
  return {
    out: options.out,
    idsFile: idsPathFor(options.out),
    rows: fin.rows,
    dim: fin.dim,
    skipped: skipped === "listed" ? fin.skipped : [],
    resumedChunks: resumed,
    computedChunks: missing.length,
    upToDate: false,
    recomputed: run.restarted ?? recomputed,
    metaFile: metaPathFor(options.out),
    seconds: (performance.now() - started) / 1000,
  };
}

async function embedImagesOwned(
  samples: readonly Sample[],
  encoder: ImageEncoder,
  options: ImageEmbedOptions,
): Promise<EmbedResult> {
  const started = performance.now();
  const B = options.batchSize ?? 32;
  const transform: TransformOptions = { ...(options.transform ?? {}), size: encoder.imageSize, train: false };
  const opened = openRun(
    "image",
    encoder,
    transform,
    options,
    samples.map((s) => s.id),
    B,
    started,
  );
  if ("upToDate" in opened) return opened;
  const { run, missing, resumed } = opened;
  // One loader over the missing chunks, in order: chunk size is a multiple of the batch size, so
  // no batch straddles two chunks and prefetching continues across chunk boundaries.
  const todo: Sample[] = [];
  for (const k of missing) todo.push(...samples.slice(k * run.C, Math.min(run.n, (k + 1) * run.C)));
  const loader = new Loader(todo, {
    batchSize: B,
    shuffle: false,
    transform,
    strict: options.strict ?? false,
    prefetch: options.prefetch ?? 3,
    // each batch is encoded (awaited) before the next is asked for; only the embeddings are kept
    recycleImages: true,
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.log !== undefined ? { log: options.log } : {}),
  });
  const bar = embedBar(options, run, resumed, "img");
  let cur = -1;
  let rows: Float32Array[] = [];
  let ids: string[] = [];
  let skipped: ChunkMeta["skipped"] = [];
  let consumed = 0;
  const flush = async () => {
    if (cur < 0) return;
    await run.writeChunk(missing[cur]!, rows, ids, skipped, Math.max(0, run.dim));
    rows = [];
    ids = [];
    skipped = [];
  };
  for await (const batch of loader.epoch(0)) {
    const chunkOf = Math.floor(batch.start.index / run.C);
    if (chunkOf !== cur) {
      await flush();
      cur = chunkOf;
    }
    for (const s of batch.skipped) skipped.push({ id: s.id, reason: s.reason });
    if (batch.ids.length > 0) {
      const emb = ownRows(await encoder.encodeImages(batch.images), batch.images.data);
      checkEmbedding(emb, batch.ids.length, run);
      rows.push(options.normalize ? normalizeRowsInPlace(emb.data, batch.ids.length, run.dim) : emb.data);
      ids.push(...batch.ids);
    }
    const size = batch.next.index - batch.start.index;
    consumed += size;
    bar.tick(size);
  }
  await flush();
  if (consumed !== todo.length) throw new Error(`internal: ${consumed} of ${todo.length} inputs consumed`);
  bar.done();
  return finishRun(opened, options, started, "listed");
}

/** The progress bar of an embedding run: resumed chunks count as done, not in the rate. */
function embedBar(options: EmbedOptions, run: Chunked, resumed: number, unit: string): Progress {
  if (options.progress === false) return progress(false);
  return progress({
    total: run.n,
    already: Math.min(run.n, resumed * run.C),
    label: "embed",
    unit,
    ...options.progress,
  });
}

function checkEmbedding(emb: TensorData<Float32Array>, n: number, run: Chunked): void {
  if (emb.shape.length !== 2 || emb.shape[0] !== n)
    throw new RangeError(`encoder returned shape [${emb.shape.join(", ")}] for ${n} inputs (expected [${n}, D])`);
  const d = emb.shape[1]!;
  if (run.dim >= 0 && d !== run.dim)
    throw new RangeError(`encoder returned ${d} columns, earlier batches had ${run.dim}`);
  if (emb.data.length !== n * d)
    throw new RangeError(`encoder returned ${emb.data.length} values for shape [${n}, ${d}]`);
  run.dim = d;
}

/** Embeds report texts (records in order) with a text encoder; same files and resumption as images. */
export function embedTexts(
  records: readonly { id: string; text: string }[],
  encoder: TextEncoder,
  options: EmbedOptions,
): Promise<EmbedResult> {
  return owningOutput(options, () => embedTextsOwned(records, encoder, options));
}

async function embedTextsOwned(
  records: readonly { id: string; text: string }[],
  encoder: TextEncoder,
  options: EmbedOptions,
): Promise<EmbedResult> {
  const started = performance.now();
  const B = options.batchSize ?? 64;
  const opened = openRun(
    "text",
    encoder,
    null,
    options,
    records.map((r) => r.id),
    B,
    started,
  );
  if ("upToDate" in opened) return opened;
  const { run, missing, resumed } = opened;
  const bar = embedBar(options, run, resumed, "text");
  for (const k of missing) {
    const part = records.slice(k * run.C, Math.min(run.n, (k + 1) * run.C));
    const rows: Float32Array[] = [];
    // Keep one batch in flight while the previous result is stored.
    let next: Promise<TensorData<Float32Array>> | null = null;
    for (let s = 0; s < part.length || next; s += B) {
      const cur: Promise<TensorData<Float32Array>> | null = next;
      const slice = part.slice(s, s + B);
      next = slice.length > 0 ? encoder.encodeTexts(slice.map((r) => r.text)) : null;
      next?.catch(() => {});
      if (cur) {
        const emb = await cur;
        const n = emb.shape[0] ?? 0;
        checkEmbedding(emb, n, run);
        rows.push(options.normalize ? normalizeRowsInPlace(emb.data, n, run.dim) : emb.data);
        bar.tick(n);
      }
    }
    const got = rows.reduce((a, r) => a + r.length, 0) / Math.max(1, run.dim);
    if (run.dim >= 0 && got !== part.length)
      throw new RangeError(`encoder returned ${got} rows for ${part.length} texts`);
    await run.writeChunk(
      k,
      rows,
      part.map((r) => r.id),
      [],
      Math.max(0, run.dim),
    );
  }
  bar.done();
  return finishRun(opened, options, started, "none");
}
