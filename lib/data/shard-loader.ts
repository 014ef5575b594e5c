/**
 * The loader over WebDataset shards, for training at scale: shards are read sequentially, samples
 * pass through a bounded shuffle buffer, and batches come out as the manifest Loader gives them
 * (same Batch, same transforms, same decoding pool).
 *
 * - Order: each epoch permutes the shards from (seed, epoch); rank r of w takes every w-th shard of
 *   that order (ranks read disjoint shards and together cover the epoch), then shuffles its stream
 *   through a buffer of `bufferSize` samples with a generator seeded by (seed, epoch, rank): fill
 *   the buffer, then emit a random slot and put the next sample in its place; drain at the end.
 *   Same seed and epoch, same order. Augmentation seeds come from (seed, epoch, shard name, key).
 * - Memory: encoded samples held at once ≤ bufferSize + (prefetch + 2) × batchSize (`stats.peakHeld`):
 *   the buffer, the prefetch + 1 batches being made ahead and the one the loop waits for, whose
 *   samples go once it is decoded.
 * - Resume: a position {epoch, index} (samples of this rank's epoch already handed out) continues
 *   exactly. The stream up to it is replayed from tar headers alone (no data read), then only the
 *   samples left in the shuffle buffer are read, by offset.
 * - Epoch length: the samples of the rank's shards (counted once at open from tar headers, or taken
 *   from a packed set's index); `evenShards: "drop"` gives every rank the same number in every
 *   epoch (the sum of the ⌊shards / w⌋ smallest shard counts), as data-parallel training needs.
 * - Problems (a missing shard, a truncated tar, a sample without an image, a corrupt image) are
 *   skipped and reported once each, or with `strict` fatal, naming shard and key.
 */
import { appendFileSync, statSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import type { Position, Batch, LoaderStats, BatchItem, DecodeExtras, EpochSource } from "./loader.js";
import {
  batchFields,
  batchMemory,
  decodeBatch,
  defaultConcurrency,
  runEpochs,
  decodeFields,
  rankBelowWorld,
  rankBelowWorldError,
  rankFields,
  Slots,
} from "./loader.js";
import type { BatchMemory } from "./batch-memory.js";
import type { Sample } from "./manifest.js";
import { hashSeed, mulberry32, permutation, type Rng } from "./rng.js";
import {
  expandShards,
  imagePart,
  memberRef,
  problemKind,
  readMember,
  sampleFromParts,
  shardGroups,
  type ShardGroup,
  type ShardProblem,
} from "./shards.js";
import { TarReader } from "./tar.js";
import { parseTransform, sampleSeed, type Transform, type TransformOptions } from "./transforms.js";

export const shardLoaderSchema = z
  .object({
    ...batchFields,
    /** Shuffle shard order and samples (false: shards and samples in the order given). */
    shuffle: z.boolean().default(true),
    /** Samples in the shuffle buffer (encoded images held in memory). */
    bufferSize: z.number().int().min(1).max(1_000_000).default(2000),
    ...rankFields,
    /** "drop": every rank takes the same number of samples each epoch (see the module comment). */
    evenShards: z.union([z.literal(false), z.literal("drop")]).default(false),
    ...decodeFields,
  })
  .strict()
  .refine(rankBelowWorld, rankBelowWorldError);

export type ShardLoaderOptions = Omit<z.input<typeof shardLoaderSchema>, "transform"> &
  DecodeExtras & {
    /** Called on each sample before it is decoded (e.g. to label its report). */
    prepare?: (sample: Sample) => void;
  };

export interface ShardLoaderStats extends LoaderStats {
  /** Shard-level and sample-level problems reported (missing shards, truncated tars, samples without an image). */
  problems: number;
  /** Encoded samples held in memory now, and at most so far (count and bytes). */
  held: number;
  peakHeld: number;
  peakHeldBytes: number;
}

/** 32-bit FNV-1a of a string: the stable identity of a sample for its augmentation seed. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A sample as it comes out of the stream: its member group (with data once it is read). */
interface Raw {
  group: ShardGroup;
  bytes: number;
}

/** One rank's samples of one epoch: its shards in order, through the shuffle buffer. */
class EpochStream {
  #j = 0;
  #offset = 0;
  #reader: TarReader | null = null;
  #inner: AsyncGenerator<ShardGroup> | null = null;
  #data: boolean;
  readonly #buf: Raw[] = [];

  constructor(
    readonly shards: readonly string[],
    readonly K: number,
    readonly rng: Rng,
    readonly report: (p: ShardProblem) => void,
    readonly onHeld: (delta: number, bytes: number) => void,
    data: boolean,
  ) {
    this.#data = data;
  }

  /** The next sample of the shards in order (no shuffling), or null at the end. */
  async #pull(): Promise<Raw | null> {
    for (;;) {
      if (!this.#inner) {
        if (this.#j >= this.shards.length) return null;
        const shard = this.shards[this.#j]!;
        try {
          this.#reader = await TarReader.open(shard);
        } catch (e) {
          this.report({ shard, key: null, reason: `${problemKind(e)}: ${(e as Error).message}` });
          this.#j++;
          this.#offset = 0;
          continue;
        }
        this.#inner = shardGroups(this.#reader, { data: this.#data, from: this.#offset, report: this.report });
      }
      const r = await this.#inner.next();
      if (r.done) {
        await this.#closeShard();
        this.#j++;
        this.#offset = 0;
        continue;
      }
      const g = r.value;
      this.#offset = g.end ?? this.#reader!.size;
      let bytes = 0;
      for (const p of g.parts.values()) bytes += p.data?.length ?? 0;
      if (this.#data) this.onHeld(1, bytes);
      return { group: g, bytes };
    }
  }

  async #closeShard(): Promise<void> {
    await this.#inner?.return(undefined);
    this.#inner = null;
    await this.#reader?.close();
    this.#reader = null;
  }

  /** The next sample in shuffled order, or null at the end of the epoch. */
  async next(): Promise<Raw | null> {
    if (this.K <= 1) return this.#pull();
    while (this.#buf.length < this.K) {
      const g = await this.#pull();
      if (!g) break;
      this.#buf.push(g);
    }
    if (this.#buf.length === 0) return null;
    const j = this.rng.int(0, this.#buf.length - 1);
    const out = this.#buf[j]!;
    const g = await this.#pull();
    if (g) this.#buf[j] = g;
    else {
      this.#buf[j] = this.#buf[this.#buf.length - 1]!;
      this.#buf.pop();
    }
    return out;
  }

  /** Replays `n` samples from headers alone (the stream must be in header mode). */
  async skip(n: number): Promise<number> {
    let k = 0;
    while (k < n && (await this.next())) k++;
    return k;
  }

  /** Reads the data of the samples held in the buffer and continues with data from here on. */
  async materialize(): Promise<void> {
    if (this.#data) return;
    for (const raw of this.#buf) {
      for (const [ext, p] of raw.group.parts) {
        const data = await readMember(memberRef(raw.group.shard, p.member));
        raw.group.parts.set(ext, { ...p, data });
        raw.bytes += data.length;
      }
      this.onHeld(1, raw.bytes);
    }
    this.#data = true;
    if (this.#inner) {
      await this.#inner.return(undefined);
      this.#inner = shardGroups(this.#reader!, { data: true, from: this.#offset, report: this.report });
    }
  }

  async close(): Promise<void> {
    await this.#closeShard();
  }
}

export class ShardLoader {
  readonly options: z.output<typeof shardLoaderSchema>;
  readonly transform: Transform;
  readonly stats: ShardLoaderStats = {
    decoded: 0,
    skipped: 0,
    byReason: {},
    problems: 0,
    held: 0,
    peakHeld: 0,
    peakHeldBytes: 0,
  };
  readonly #log: ((line: string) => void) | null;
  readonly #prepare: ((s: Sample) => void) | null;
  readonly #slots: Slots;
  readonly #memory: BatchMemory | null;
  readonly #reported = new Set<string>();
  #heldBytes = 0;
  #position: Position = { epoch: 0, index: 0 };
  /** Samples per shard, the per-rank cap ("drop"), the problems found at open. */
  #limit = Infinity;

  private constructor(
    readonly shards: readonly string[],
    readonly counts: readonly number[],
    options: ShardLoaderOptions,
  ) {
    const { log, transform, prepare, ...rest } = options;
    const parsed = shardLoaderSchema.safeParse({
      ...rest,
      transform: transform === undefined ? undefined : parseTransform(transform),
    });
    if (!parsed.success) throw new TypeError(`shard loader: ${formatIssues(parsed.error)}`);
    this.options = parsed.data;
    this.transform = parsed.data.transform;
    this.#slots = new Slots(parsed.data.concurrency ?? defaultConcurrency());
    this.#memory = batchMemory(parsed.data);
    this.#log = typeof log === "string" ? (line) => appendFileSync(log, line + "\n") : (log ?? null);
    this.#prepare = prepare ?? null;
    const W = this.options.worldSize;
    if (shards.length < W)
      throw new RangeError(
        `${shards.length} shard(s) for ${W} ranks: every rank needs at least one (pack with fewer samples per shard)`,
      );
    if (this.options.evenShards === "drop") {
      const per = Math.floor(shards.length / W);
      this.#limit = [...counts]
        .sort((a, b) => a - b)
        .slice(0, per)
        .reduce((a, b) => a + b, 0);
    }
  }

  /**
   * Opens shards (a spec as lib/data/shards.ts expands it): counts each shard's samples from its
   * tar headers, or from the packed set's index when the file's size matches it.
   */
  static async open(spec: string | readonly string[], options: ShardLoaderOptions): Promise<ShardLoader> {
    const { shards, index } = expandShards(spec);
    if (shards.length === 0) throw new Error(`${String(spec)}: no shards`);
    const problems: ShardProblem[] = [];
    const counts: number[] = [];
    for (const shard of shards) counts.push(await countSamples(shard, index, problems, !!options.strict));
    const loader = new ShardLoader(shards, counts, options);
    for (const p of problems) loader.#report(p);
    return loader;
  }

  /** Where the next batch starts (after the last batch handed out). */
  get position(): Position {
    return { ...this.#position };
  }

  /** Total samples in the shards (all ranks). */
  get size(): number {
    return this.counts.reduce((a, b) => a + b, 0);
  }

  /** This rank's shards (indices into `shards`) for an epoch, in reading order. */
  shardOrder(epoch: number): number[] {
    const n = this.shards.length;
    const { shuffle, seed, rank, worldSize } = this.options;
    const perm = shuffle ? permutation(n, hashSeed(seed, epoch, 0x5eed)) : Int32Array.from({ length: n }, (_, i) => i);
    const out: number[] = [];
    for (let k = rank; k < n; k += worldSize) out.push(perm[k]!);
    return out;
  }

  /** Samples this rank takes in an epoch. */
  sampleCount(epoch = 0): number {
    const n = this.shardOrder(epoch).reduce((a, i) => a + this.counts[i]!, 0);
    return Math.min(n, this.#limit);
  }

  /** Batches in an epoch for this rank, counted from a start index. */
  batchCount(epoch = 0, from = 0): number {
    const len = Math.max(0, this.sampleCount(epoch) - from);
    const B = this.options.batchSize;
    return this.options.dropLast ? Math.floor(len / B) : Math.ceil(len / B);
  }

  #report(p: ShardProblem): void {
    const line = `${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`;
    if (this.options.strict) throw new Error(line);
    if (this.#reported.has(line)) return;
    this.#reported.add(line);
    this.stats.problems++;
    this.#log?.(`${new Date().toISOString()} skip ${line}`);
  }

  #held(delta: number, bytes: number): void {
    this.stats.held += delta;
    this.#heldBytes += bytes;
    this.stats.peakHeld = Math.max(this.stats.peakHeld, this.stats.held);
    this.stats.peakHeldBytes = Math.max(this.stats.peakHeldBytes, this.#heldBytes);
  }

  async #stream(epoch: number, from: number): Promise<EpochStream> {
    const { shuffle, bufferSize, seed, rank } = this.options;
    const stream = new EpochStream(
      this.shardOrder(epoch).map((i) => this.shards[i]!),
      shuffle ? bufferSize : 0,
      mulberry32(hashSeed(seed, epoch, rank, 0xb0f)),
      (p) => this.#report(p),
      (d, b) => this.#held(d, b),
      from === 0,
    );
    if (from > 0) {
      const got = await stream.skip(from);
      if (got < from) throw new RangeError(`resume: epoch ${epoch} of this rank has ${got} samples, not ${from}`);
      await stream.materialize();
    }
    return stream;
  }

  /**
   * The batches of one epoch, starting at sample `from` of this rank's stream (0: the start).
   * Breaking out of the loop is fine: pending decodes finish and are discarded.
   */
  epoch(epoch: number, from = 0): AsyncGenerator<Batch> {
    return this.batches(epoch + 1, { epoch, index: from });
  }

  /**
   * Batches across epochs from a position (default: the loader's), until `epochs` epochs are done:
   * one pipeline, so the next epoch's first shards are read and decoded while this one's last
   * batches are used, and (recycleImages) one set of batch arrays for the whole run, let go when the
   * loop ends.
   */
  batches(epochs: number, start: Position = this.position): AsyncGenerator<Batch> {
    const open = (epoch: number, from: number) => this.#source(epoch, from);
    return runEpochs(open, start, epochs, this.options.prefetch, this.#memory, (p) => (this.#position = p));
  }

  /** One epoch's batches, read from its shard stream one batch at a time for the epoch loop. */
  async #source(epoch: number, from: number): Promise<EpochSource> {
    const B = this.options.batchSize;
    const limit = this.#limit;
    const stream = await this.#stream(epoch, from);
    let index = from;
    let done = false;
    return {
      next: async () => {
        if (done) return null;
        const raws: Raw[] = [];
        while (raws.length < B && index + raws.length < limit) {
          const r = await stream.next();
          if (!r) break;
          raws.push(r);
        }
        if (raws.length < B) done = true;
        if (raws.length === 0 || (this.options.dropLast && raws.length < B)) {
          for (const r of raws) this.#held(-1, -r.bytes);
          return null;
        }
        const batch = this.#makeBatch(epoch, raws, index);
        index += raws.length;
        return { batch };
      },
      close: () => stream.close(),
    };
  }

  async #makeBatch(epoch: number, raws: Raw[], start: number): Promise<Batch> {
    const items: BatchItem[] = raws.map((raw, k) => this.#item(epoch, raw, start + k));
    try {
      return await decodeBatch(
        items,
        {
          transform: this.transform,
          slots: this.#slots,
          strict: this.options.strict,
          stats: this.stats,
          log: this.#log,
          epoch,
          memory: this.#memory,
        },
        { epoch, index: start },
        { epoch, index: start + raws.length },
      );
    } finally {
      for (const r of raws) this.#held(-1, -r.bytes);
    }
  }

  #item(epoch: number, raw: Raw, index: number): BatchItem {
    const g = raw.group;
    const img = imagePart(g);
    const small: { txt?: Buffer; json?: Buffer; cls?: Buffer } = {};
    for (const ext of ["txt", "json", "cls"] as const) {
      const d = g.parts.get(ext)?.data;
      if (d) small[ext] = d;
    }
    const seed = sampleSeed(this.options.seed, epoch, hashString(`${path.basename(g.shard)}/${g.key}`));
    let sample: Sample;
    let error: Error | undefined;
    try {
      sample = sampleFromParts(g.shard, g.key, memberRef(g.shard, img.member), small, index + 1);
      this.#prepare?.(sample);
    } catch (e) {
      error = new Error(`corrupt sample metadata: ${(e as Error).message}`);
      sample = sampleFromParts(g.shard, g.key, memberRef(g.shard, img.member), {}, index + 1);
    }
    return { sample, index, seed, ...(img.data ? { bytes: img.data } : {}), ...(error ? { error } : {}) };
  }
}

/** A shard's sample count: from the index when its size matches, else from its tar headers. */
async function countSamples(
  shard: string,
  index: ReturnType<typeof expandShards>["index"],
  problems: ShardProblem[],
  strict: boolean,
): Promise<number> {
  const report = (p: ShardProblem) => {
    if (strict) throw new Error(`${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`);
    problems.push(p);
  };
  const entry = index?.shards.find((s) => path.basename(s.name) === path.basename(shard));
  if (entry) {
    try {
      if (statSync(shard).size === entry.bytes) return entry.samples;
    } catch {
      // reported by the header walk below
    }
  }
  let reader: TarReader;
  try {
    reader = await TarReader.open(shard);
  } catch (e) {
    report({ shard, key: null, reason: `${problemKind(e)}: ${(e as Error).message}` });
    return 0;
  }
  let n = 0;
  try {
    for await (const _ of shardGroups(reader, { data: false, report })) n++;
  } finally {
    await reader.close();
  }
  return n;
}
