/**
 * The loader: samples → batches of one contiguous Float32Array [B, 3, S, S].
 *
 * - Decoding runs in parallel on libuv's thread pool through sharp (`concurrency` images in
 *   flight across batches, in order), while the consumer works on earlier batches (`prefetch`).
 * - Each epoch's order is a permutation from (seed, epoch), the same on every rank; rank r of
 *   world w takes every w-th element, so every sample appears once per epoch across ranks.
 * - A position {epoch, index} (index: samples of this rank's order already handed out) resumes
 *   exactly: batches and augmentations after it are the ones an uninterrupted run would give.
 * - A missing, unreadable, corrupt or truncated image is skipped, counted and logged with its path
 *   and reason (the batch is smaller by one); with `strict` it is fatal.
 */
import { appendFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import { LABEL_IDS, toLabelVector } from "../labels/index.js";
import type { TensorData } from "../native.js";
import { BatchMemory, newBatchArray } from "./batch-memory.js";
import type { Sample } from "./manifest.js";
import { readMember } from "./shards.js";
import { hashSeed, permutation } from "./rng.js";
import {
  parseTransform,
  preprocessInto,
  sampleSeed,
  transformSchema,
  type Transform,
  type TransformOptions,
} from "./transforms.js";

/** The option fields the file loader and the shard loader (shard-loader.ts) share: batching and ranks. */
export const batchFields = {
  batchSize: z
    .number()
    .int()
    .min(1)
    .max(1 << 16),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
};
/** Shared fields: this process's share of the data. */
export const rankFields = {
  rank: z.number().int().min(0).default(0),
  worldSize: z.number().int().min(1).default(1),
  dropLast: z.boolean().default(false),
};
/** Shared fields: decoding. */
export const decodeFields = {
  /** Batches prepared ahead of the one being consumed. */
  prefetch: z.number().int().min(0).max(64).default(2),
  /** Images decoding at once (default: defaultConcurrency(), 2 × the cores this process may use). */
  concurrency: z.number().int().min(1).max(1024).optional(),
  transform: transformSchema.default(transformSchema.parse({})),
  /** A bad image throws instead of being skipped. */
  strict: z.boolean().default(false),
  /**
   * Reuse the images array of a batch for a later batch once the loop asks for the next one (a
   * batch's `images` stay valid while the loop body runs, not after). For loops that finish with
   * each batch before the next and keep none of its images (copy what you keep): they spare V8 a
   * full garbage collection every few batches. vilref's evaluation, embedding and pre-training
   * loops use it.
   */
  recycleImages: z.boolean().default(false),
};
/** Images decoding at once by default: 2 × the cores this process may run on (its CPU affinity), at least 2. */
export const defaultConcurrency = (): number => Math.max(2, 2 * availableParallelism());

/** The shared check of `rank` against `worldSize`, and its error. */
export const rankBelowWorld = (o: { rank: number; worldSize: number }): boolean => o.rank < o.worldSize;
export const rankBelowWorldError = { message: "rank must be below worldSize", path: ["rank"] };

export const loaderSchema = z
  .object({
    ...batchFields,
    shuffle: z.boolean().default(true),
    ...rankFields,
    /**
     * Equal shard lengths across ranks (needed when every rank must take the same number of steps):
     * "pad" repeats samples from the start of the order, "drop" leaves the remainder out; false:
     * shards differ by at most one sample and every sample is used exactly once.
     */
    evenShards: z.union([z.literal(false), z.literal("pad"), z.literal("drop")]).default(false),
    ...decodeFields,
  })
  .strict()
  .refine(rankBelowWorld, rankBelowWorldError);

/** What both loaders take beside their schema's fields: a typed transform and where problems go. */
export interface DecodeExtras {
  transform?: TransformOptions;
  /** Where skipped images (and shard problems) are reported: a file to append lines to, or a function. */
  log?: string | ((line: string) => void);
}

export type LoaderOptions = Omit<z.input<typeof loaderSchema>, "transform"> & DecodeExtras;

export interface Position {
  epoch: number;
  /** Samples of this rank's epoch order already handed out. */
  index: number;
}

export interface Skipped {
  id: string;
  path: string;
  reason: string;
  epoch: number;
}

export interface Batch {
  /** [B, 3, S, S], normalised, one contiguous array (recycleImages: valid until the next batch is asked for). */
  images: TensorData<Float32Array>;
  ids: string[];
  /** Indices into the loader's samples. */
  indices: number[];
  samples: Sample[];
  texts: (string | null)[];
  /** [B, labels] in taxonomy order (absent labels 0), when every sample has labels; else null. */
  labels: TensorData<Float32Array> | null;
  /** Class indices, when every sample has one; else null. */
  targets: Int32Array | null;
  /** Images of this batch that were skipped. */
  skipped: Skipped[];
  epoch: number;
  /** Position of this batch's first sample, and the position after it (resume from `next`). */
  start: Position;
  next: Position;
}

export interface LoaderStats {
  decoded: number;
  skipped: number;
  /** Skips by kind of reason (missing, unreadable, truncated, corrupt, unsupported, error). */
  byReason: Record<string, number>;
}

/** A short classification of a decode failure. */
export function classifyError(e: unknown): { kind: string; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string } | null)?.code;
  if (code === "ENOENT" || /input file is missing|no such file/i.test(message)) return { kind: "missing", message };
  if (code === "EACCES" || code === "EISDIR" || /permission denied|is a directory/i.test(message))
    return { kind: "unreadable", message };
  // libjpeg's "Corrupt JPEG data: premature end of data segment" is damage inside the file, not a short file
  if (/Corrupt JPEG data/.test(message)) return { kind: "corrupt", message };
  if (/premature end|truncat|unexpected end|end of (file|stream|data)|read error|not enough data/i.test(message))
    return { kind: "truncated", message };
  if (/unsupported image format/i.test(message)) return { kind: "unsupported", message };
  if (/corrupt|empty|invalid|bad |vipsjpeg|vipspng|tiff|gif|webp|huffman|marker|crc|decode|zlib/i.test(message))
    return { kind: "corrupt", message };
  return { kind: "error", message };
}

/** A clearer error for a failed decode: a file that stops short of its format's end marker is truncated. */
async function explain(file: string, err: unknown): Promise<unknown> {
  const message = err instanceof Error ? err.message : String(err);
  if (!/unknown error|^$/i.test(message)) return err;
  try {
    const buf = await readFile(file);
    if (buf.length === 0) return new Error("empty file");
    const jpeg = buf[0] === 0xff && buf[1] === 0xd8;
    const png = buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    if (jpeg && !(buf[buf.length - 2] === 0xff && buf[buf.length - 1] === 0xd9))
      return new Error(`truncated JPEG (no end-of-image marker): ${message}`);
    if (png && buf.subarray(-12).indexOf("IEND") < 0) return new Error(`truncated PNG (no IEND chunk): ${message}`);
  } catch (e) {
    return e;
  }
  return err;
}

/** FIFO semaphore: images are decoded in the order they were requested. */
export class Slots {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

export class Loader {
  readonly samples: readonly Sample[];
  readonly options: z.output<typeof loaderSchema>;
  readonly transform: Transform;
  readonly stats: LoaderStats = { decoded: 0, skipped: 0, byReason: {} };
  readonly #log: ((line: string) => void) | null;
  readonly #slots: Slots;
  readonly #memory: BatchMemory | null;
  #position: Position = { epoch: 0, index: 0 };

  constructor(samples: readonly Sample[], options: LoaderOptions) {
    const { log, transform, ...rest } = options;
    const parsed = loaderSchema.safeParse({
      ...rest,
      transform: transform === undefined ? undefined : parseTransform(transform),
    });
    if (!parsed.success) throw new TypeError(`loader: ${formatIssues(parsed.error)}`);
    this.options = parsed.data;
    this.transform = parsed.data.transform;
    this.samples = samples;
    this.#slots = new Slots(parsed.data.concurrency ?? defaultConcurrency());
    this.#log = typeof log === "string" ? (line) => appendFileSync(log, line + "\n") : (log ?? null);
    this.#memory = batchMemory(parsed.data);
  }

  /** Where the next batch starts (after the last batch handed out). */
  get position(): Position {
    return { ...this.#position };
  }

  /** Indices of this rank's samples for an epoch, in order. */
  order(epoch: number): number[] {
    const n = this.samples.length;
    const { shuffle, seed, rank, worldSize, evenShards } = this.options;
    let perm: ArrayLike<number>;
    if (shuffle) perm = permutation(n, hashSeed(seed, epoch, 0x5eed));
    else {
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) a[i] = i;
      perm = a;
    }
    let total = n;
    if (evenShards === "pad") total = Math.ceil(n / worldSize) * worldSize;
    else if (evenShards === "drop") total = Math.floor(n / worldSize) * worldSize;
    const out: number[] = [];
    if (n === 0) return out;
    for (let k = rank; k < total; k += worldSize) out.push(perm[k % n]!);
    return out;
  }

  /** Batches in an epoch for this rank, counted from a start index. */
  batchCount(epoch = 0, from = 0): number {
    const len = Math.max(0, this.order(epoch).length - from);
    const B = this.options.batchSize;
    return this.options.dropLast ? Math.floor(len / B) : Math.ceil(len / B);
  }

  /**
   * The batches of one epoch, starting at sample `from` of this rank's order (0: the start).
   * Breaking out of the loop is fine: pending decodes finish and are discarded.
   */
  epoch(epoch: number, from = 0): AsyncGenerator<Batch> {
    return this.batches(epoch + 1, { epoch, index: from });
  }

  /**
   * Batches across epochs from a position (default: the loader's), until `epochs` epochs are done:
   * one pipeline, so the next epoch's first batches decode while this one's last are used, and
   * (recycleImages) one set of batch arrays for the whole run, let go when the loop ends.
   */
  batches(epochs: number, start: Position = this.position): AsyncGenerator<Batch> {
    const open = (epoch: number, from: number) => this.#source(epoch, from);
    return runEpochs(open, start, epochs, this.options.prefetch, this.#memory, (p) => (this.#position = p));
  }

  /** One epoch's batches, made one at a time for the epoch loop. */
  #source(epoch: number, from: number): EpochSource {
    const order = this.order(epoch);
    const B = this.options.batchSize;
    const starts: number[] = [];
    for (let s = from; s < order.length; s += B) {
      if (this.options.dropLast && s + B > order.length) break;
      starts.push(s);
    }
    let next = 0;
    return {
      next: () => {
        if (next >= starts.length) return null;
        const s = starts[next++]!;
        return { batch: this.#makeBatch(epoch, order, s, Math.min(s + B, order.length)) };
      },
      close: () => {},
    };
  }

  async #makeBatch(epoch: number, order: number[], s: number, e: number): Promise<Batch> {
    const items: BatchItem[] = [];
    for (let k = s; k < e; k++) {
      const idx = order[k]!;
      items.push({ sample: this.samples[idx]!, index: idx, seed: sampleSeed(this.options.seed, epoch, idx) });
    }
    return decodeBatch(items, this.#context(epoch), { epoch, index: s }, { epoch, index: e });
  }

  #context(epoch: number): BatchContext {
    return {
      transform: this.transform,
      slots: this.#slots,
      strict: this.options.strict,
      stats: this.stats,
      log: this.#log,
      epoch,
      memory: this.#memory,
    };
  }
}

/** One epoch's batches as the epoch loop (runEpochs) draws them. */
export interface EpochSource {
  /** The epoch's next batch, its decoding started; null when the epoch has no more. */
  next(): { batch: Promise<Batch> } | null | Promise<{ batch: Promise<Batch> } | null>;
  /** Called once the epoch has no more batches, or when the loop stops early. */
  close(): void | Promise<void>;
}

/**
 * Both loaders' loop over a run of epochs (from `start` until `epochs`): one queue of at most
 * prefetch + 1 batches being made, filled from each epoch's source in turn (`open`), so the next
 * epoch's batches start decoding while the last ones of this epoch are handed out. Batches come
 * out in order; the position (`at`) follows each batch handed out, and moves to the next epoch's
 * start once the loop is asked for more after an epoch's last batch. A batch's array goes back to
 * the batch memory when the loop is asked for the next batch, and the memory is let go when the
 * loop ends or stops (an idle loader holds none). An error while filling (opening an epoch,
 * reading its samples) is thrown where it happened in the order, after the batches before it.
 */
export async function* runEpochs(
  open: (epoch: number, from: number) => EpochSource | Promise<EpochSource>,
  start: Position,
  epochs: number,
  prefetch: number,
  memory: BatchMemory | null,
  at: (position: Position) => void,
): AsyncGenerator<Batch> {
  type Entry = { batch: Promise<Batch> } | { endOf: number } | { error: unknown };
  const queue: Entry[] = [];
  let making = 0; // entries in the queue (an epoch of no batches is one too: a run of them stays bounded)
  let epoch = start.epoch;
  let from = start.index;
  let source: EpochSource | null = null;
  let stopped = false;
  const fill = async () => {
    try {
      while (!stopped && making <= prefetch) {
        if (!source) {
          if (epoch >= epochs) {
            stopped = true;
            break;
          }
          source = await open(epoch, from);
          from = 0;
        }
        const next = await source.next();
        if (next) {
          next.batch.catch(() => {}); // surfaced when awaited; never unhandled if the consumer stops early
          queue.push(next);
          making++;
          continue;
        }
        const done = source;
        source = null;
        await done.close();
        queue.push({ endOf: epoch++ });
        making++;
      }
    } catch (error) {
      stopped = true;
      queue.push({ error });
    }
  };
  at({ ...start });
  try {
    await fill();
    for (let entry = queue.shift(); entry; entry = queue.shift()) {
      if ("endOf" in entry) {
        making--;
        at({ epoch: entry.endOf + 1, index: 0 });
        await fill();
      } else if ("error" in entry) throw entry.error;
      else {
        making--;
        await fill();
        const batch = await entry.batch;
        at({ ...batch.next });
        yield batch;
        memory?.give(batch.images.data); // the loop asked for the next batch: done with this one
      }
    }
  } finally {
    stopped = true;
    if (source) await (source as EpochSource).close();
    memory?.clear();
  }
}

/** The recycled batch memory of a loader with `recycleImages` (full batches; see BatchMemory), else null. */
export function batchMemory(o: {
  recycleImages: boolean;
  batchSize: number;
  prefetch: number;
  transform: Transform;
}): BatchMemory | null {
  if (!o.recycleImages) return null;
  return new BatchMemory(o.batchSize * 3 * o.transform.size * o.transform.size, o.prefetch + 2);
}

/** One sample to decode into a batch: its seed, where it sits (`index`), and its bytes if in memory. */
export interface BatchItem {
  sample: Sample;
  index: number;
  seed: number;
  bytes?: Buffer;
  /** Known bad before decoding (e.g. its metadata did not parse): skipped with this reason. */
  error?: Error;
}

/** What decodeBatch shares with the loader that calls it. */
export interface BatchContext {
  transform: Transform;
  slots: Slots;
  strict: boolean;
  stats: LoaderStats;
  log: ((line: string) => void) | null;
  epoch: number;
  /** Where batch arrays come from and go back to (recycleImages); null: a new array per batch. */
  memory: BatchMemory | null;
}

/** The image source of an item: its bytes in memory, a member read from its shard, or its path. */
async function sourceOf(item: BatchItem): Promise<Buffer | string> {
  if (item.bytes) return item.bytes;
  if (item.sample.member) return readMember(item.sample.member);
  return item.sample.image;
}

/**
 * Decodes items concurrently (at most `slots` at a time, in order) into one [B, 3, S, S] array
 * and assembles the batch; bad images are skipped and reported, or (strict) fatal after the batch
 * settles, naming the first bad image in order.
 */
export async function decodeBatch(
  items: readonly BatchItem[],
  ctx: BatchContext,
  start: Position,
  next: Position,
): Promise<Batch> {
  const t = ctx.transform;
  const per = 3 * t.size * t.size;
  const count = items.length;
  // Not zero-filled: every image either writes its whole slot or is compacted away below.
  const data = ctx.memory ? ctx.memory.take(count * per) : newBatchArray(count * per);
  const ok = new Uint8Array(count);
  // By position in the batch, so that the batch lists its skipped images in input order whatever
  // order their decodes finish in.
  const skippedAt: (Skipped | undefined)[] = new Array(count);
  const fatal: (Error | undefined)[] = [];
  await Promise.all(
    items.map(async (item, j) => {
      const sample = item.sample;
      await ctx.slots.acquire();
      try {
        if (item.error) throw item.error;
        // Errors are this image's own (preprocessInto retries a failed sharp decode alone).
        await preprocessInto(await sourceOf(item), t, item.seed, data, j * per);
        ok[j] = 1;
        ctx.stats.decoded++;
      } catch (err) {
        const { kind, message } = classifyError(item.bytes || sample.member ? err : await explain(sample.image, err));
        const reason = `${kind}: ${message}`;
        if (ctx.strict) {
          fatal[j] = new Error(`${sample.image}: ${reason}`, { cause: err });
          return;
        }
        ctx.stats.skipped++;
        ctx.stats.byReason[kind] = (ctx.stats.byReason[kind] ?? 0) + 1;
        skippedAt[j] = { id: sample.id, path: sample.image, reason, epoch: ctx.epoch };
        ctx.log?.(`${new Date().toISOString()} skip ${sample.image} (id ${sample.id}, epoch ${ctx.epoch}): ${reason}`);
      } finally {
        item.bytes = undefined; // the encoded image is not needed any more
        ctx.slots.release();
      }
    }),
  );
  const firstFatal = fatal.find((e) => e !== undefined);
  if (firstFatal) throw firstFatal;
  const skipped = skippedAt.filter((s): s is Skipped => s !== undefined);
  const batch = assemble(items, data, ok, per, t.size, skipped, start, next);
  if (batch.images.data !== data) ctx.memory?.give(data); // compacted into a new array: this one is free
  return batch;
}

function assemble(
  items: readonly BatchItem[],
  data: Float32Array,
  ok: Uint8Array,
  per: number,
  size: number,
  skipped: Skipped[],
  start: Position,
  next: Position,
): Batch {
  const keep: number[] = [];
  for (let j = 0; j < items.length; j++) if (ok[j]) keep.push(j);
  let images = data;
  if (keep.length < items.length) {
    images = new Float32Array(keep.length * per);
    keep.forEach((j, k) => images.set(data.subarray(j * per, (j + 1) * per), k * per));
  }
  const indices = keep.map((j) => items[j]!.index);
  const samples = keep.map((j) => items[j]!.sample);
  let labels: TensorData<Float32Array> | null = null;
  if (samples.length > 0 && samples.every((x) => x.labels !== null)) {
    const L = LABEL_IDS.length;
    const ld = new Float32Array(samples.length * L);
    samples.forEach((x, k) => ld.set(toLabelVector(x.labels!), k * L));
    labels = { data: ld, shape: [samples.length, L] };
  }
  const targets =
    samples.length > 0 && samples.every((x) => x.target !== null) ? Int32Array.from(samples, (x) => x.target!) : null;
  return {
    images: { data: images, shape: [keep.length, 3, size, size] },
    ids: samples.map((x) => x.id),
    indices,
    samples,
    texts: samples.map((x) => x.text),
    labels,
    targets,
    skipped,
    epoch: start.epoch,
    start,
    next,
  };
}
