/**
 * `vilref data pack`: samples (any manifest, folder, glob or shards the loader reads) → WebDataset
 * tar shards, so that training reads small resized JPEGs sequentially instead of decoding the
 * full-size originals every epoch.
 *
 * Per sample (key: its position in the packed order, 9 digits):
 *   KEY.jpg   the image resized once: the short side to `size` (default 1.15 × the model's
 *             resolution; never enlarged), after an optional crop to the circular field of view;
 *             JPEG sources decode at a DCT scale and resize with LibTorch's antialiased bicubic
 *             (native/jpeg.cc), other formats through sharp (bicubic); JPEG 4:2:0 at `quality`
 *   KEY.txt   the report, when the sample has one
 *   KEY.json  {"id", "labels", "eye", "patient", "split"} (+ "target" when the sample has a class):
 *             labels from the manifest, or the expert rules on the report (`labels`)
 *
 * Shard k holds the samples k·N … (k+1)·N − 1 of the packed order (the source order, or a
 * permutation of it from `seed`), less the images that could not be read, which are skipped and
 * reported (`strict`: fatal). Shards are written whole and atomically; a rerun keeps the shards a
 * previous run of the same inputs and settings finished (`.pack/` holds their records) and makes
 * the rest; index.json (shard names, sample counts, byte sizes, sha256, what was skipped) is written
 * last. Tar headers carry no time, owner or order that depends on the run: two runs give the same
 * bytes.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import tar from "tar-stream";
import { atomicWriteFile, cleanTempFiles } from "../io/atomic.js";
import { acquireLock } from "../io/lock.js";
import { Labeler, loadRules, type LabelMap } from "../labels/index.js";
import type { JpegDecodeResult } from "../native.js";
import { inspectJpeg, jpegFastPath, WHOLE_IMAGE } from "./jpeg.js";
import { classifyError, Slots } from "./loader.js";
import type { Sample } from "./manifest.js";
import { permutation } from "./rng.js";
import { readMember, SHARD_INDEX_FORMAT, type ShardIndex } from "./shards.js";
import {
  clipRect,
  detectFov,
  openImage,
  readError,
  resizePadded,
  validateJpeg,
  withSharp,
  type FovOptions,
  type Rect,
} from "./transforms.js";

export interface PackOptions {
  /** Output folder: NNNNNN.tar shards and index.json. */
  out: string;
  samplesPerShard?: number;
  /** The model's input resolution (the stored size defaults to 1.15 × it). */
  resolution?: number;
  /** Short side of the stored images, in pixels. */
  size?: number;
  /** Crop to the circular field of view first. */
  fov?: boolean | Partial<FovOptions>;
  quality?: number;
  /** Permute the samples (from `seed`) before cutting them into shards (default true). */
  shuffle?: boolean;
  seed?: number;
  /** Images processed at once (default 2 × cores). */
  concurrency?: number;
  /** "auto": the sample's labels, else the rules on its report; "rules"; "manifest"; "none". */
  labels?: "auto" | "rules" | "manifest" | "none";
  /** A rules file for "rules"/"auto" (default: the packaged rules). */
  rules?: string;
  strict?: boolean;
  /** Start over even when finished shards of the same inputs exist. */
  force?: boolean;
  /** Skipped images and other messages. */
  log?: (line: string) => void;
  onProgress?: (p: PackProgress) => void;
}

export interface PackProgress {
  /** Samples done (written or skipped), of the total; shards finished; ETA from this run's rate. */
  done: number;
  total: number;
  shards: number;
  shardsTotal: number;
  imagesPerSecond: number;
  etaSeconds: number;
}

export interface PackResult {
  index: ShardIndex;
  indexFile: string;
  /** Shards made by this run, and shards kept from an earlier one. */
  written: number;
  kept: number;
  upToDate: boolean;
  seconds: number;
}

interface Settings {
  samplesPerShard: number;
  size: number;
  fov: boolean | Partial<FovOptions>;
  quality: number;
  shuffle: boolean;
  seed: number;
  labels: NonNullable<PackOptions["labels"]>;
}

interface ShardRecord {
  name: string;
  samples: number;
  bytes: number;
  sha256: string;
  skipped: { id: string; reason: string }[];
}

const shardName = (k: number) => `${String(k).padStart(6, "0")}.tar`;

function settingsOf(o: PackOptions): Settings {
  const resolution = o.resolution ?? 224;
  const s: Settings = {
    samplesPerShard: o.samplesPerShard ?? 1000,
    size: o.size ?? Math.round(1.15 * resolution),
    fov: o.fov ?? false,
    quality: o.quality ?? 90,
    shuffle: o.shuffle ?? true,
    seed: o.seed ?? 0,
    labels: o.labels ?? "auto",
  };
  if (!Number.isInteger(s.samplesPerShard) || s.samplesPerShard < 1)
    throw new RangeError(`samplesPerShard: expected a whole number ≥ 1, got ${s.samplesPerShard}`);
  if (!Number.isInteger(s.size) || s.size < 8 || s.size > 8192)
    throw new RangeError(`size: expected a whole number of pixels in 8..8192, got ${s.size}`);
  if (!Number.isInteger(s.quality) || s.quality < 1 || s.quality > 100)
    throw new RangeError(`quality: expected 1..100, got ${s.quality}`);
  return s;
}

/** The metadata each sample is stored with (labels per the settings). */
function metadataOf(samples: readonly Sample[], s: Settings, rulesFile?: string): object[] {
  // The rules are loaded and compiled only when a sample has a report to label.
  let labeler: Labeler | null = null;
  const rules = s.labels === "rules" || s.labels === "auto";
  return samples.map((x) => {
    let labels: LabelMap | null = null;
    if (s.labels === "manifest" || (s.labels === "auto" && x.labels !== null)) labels = x.labels;
    else if (rules && x.text !== null) {
      labeler ??= new Labeler(loadRules(rulesFile));
      labels = labeler.label(x.text, { uncertainty: "keep", evidence: false }).labels;
    }
    return {
      id: x.id,
      labels,
      eye: x.eye,
      patient: x.patientId,
      split: x.split,
      ...(x.target !== null ? { target: x.target } : {}),
    };
  });
}

/** A digest of everything a shard's bytes depend on: the samples, their metadata and the settings. */
function fingerprint(samples: readonly Sample[], meta: readonly object[], s: Settings): string {
  const h = createHash("sha256");
  h.update(JSON.stringify(s));
  samples.forEach((x, i) => h.update(JSON.stringify([x.image, x.member ?? null, x.text, meta[i]])));
  return h.digest("hex");
}

/** Packs samples into shards; see the module comment. */
export async function packShards(samples: readonly Sample[], options: PackOptions): Promise<PackResult> {
  const t0 = performance.now();
  const s = settingsOf(options);
  const order = s.shuffle ? Array.from(permutation(samples.length, s.seed)) : samples.map((_, i) => i);
  const ordered = order.map((i) => samples[i]!);
  const meta = metadataOf(ordered, s, options.rules);
  const fp = fingerprint(ordered, meta, s);
  const out = path.resolve(options.out);
  mkdirSync(out, { recursive: true });
  // One pack per folder: a second one is refused (LockError naming the holder), a killed one's lock taken over.
  const lock = acquireLock(path.join(out, "pack.lock"), { what: `shards ${out}`, command: "vilref data pack" });
  try {
    if (lock.stale) options.log?.(`took over ${lock.file} from a pack that is gone`);
    // Under the lock nobody else writes here: temporary files left by a killed pack go.
    const removed = [...cleanTempFiles(out, { all: true }), ...cleanTempFiles(path.join(out, ".pack"), { all: true })];
    if (removed.length > 0) options.log?.(`removed ${removed.length} temporary file(s) of an interrupted pack`);
    return await packLocked(ordered, meta, s, fp, out, options, t0);
  } finally {
    lock.release();
  }
}

async function packLocked(
  ordered: readonly Sample[],
  meta: readonly object[],
  s: Settings,
  fp: string,
  out: string,
  options: PackOptions,
  t0: number,
): Promise<PackResult> {
  const state = path.join(out, ".pack");
  const indexFile = path.join(out, "index.json");
  const done = upToDate(indexFile, fp);
  if (done && !options.force)
    return { index: done, indexFile, written: 0, kept: done.shards.length, upToDate: true, seconds: 0 };
  const records = await resumeState(state, fp, !!options.force, options.log);
  const N = s.samplesPerShard;
  const shardsTotal = Math.max(1, Math.ceil(ordered.length / N));
  const progress = new Tracker(ordered.length, shardsTotal, options.onProgress);
  const slots = new Slots(options.concurrency ?? 8);
  const ctx: ShardContext = { slots, progress, strict: !!options.strict, log: options.log };
  const todo: number[] = [];
  let kept = 0;
  for (let k = 0; k < shardsTotal; k++) {
    const name = shardName(k);
    const have = records.get(name);
    if (have && existsSync(path.join(out, name)) && statSync(path.join(out, name)).size === have.bytes) {
      kept++;
      progress.skipAhead(Math.min(N, ordered.length - k * N));
    } else todo.push(k);
  }
  // The next shard's images are made while this one is written (tar, digest, fsync): the slots
  // bound the images in flight across both.
  const images = (k: number) => {
    const p = shardImages(ordered.slice(k * N, (k + 1) * N), s, ctx);
    p.catch(() => {}); // surfaced when awaited
    return p;
  };
  let next = todo.length > 0 ? images(todo[0]!) : null;
  for (let i = 0; i < todo.length; i++) {
    const k = todo[i]!;
    const name = shardName(k);
    const results = await next!;
    next = i + 1 < todo.length ? images(todo[i + 1]!) : null;
    const rec = await writeShard(out, name, k * N, ordered.slice(k * N, (k + 1) * N), meta.slice(k * N), results);
    await atomicWriteFile(path.join(state, `${name}.json`), new TextEncoder().encode(JSON.stringify(rec)));
    records.set(name, rec);
    progress.shardDone();
  }
  const written = todo.length;
  const index = makeIndex(records, shardsTotal, s, fp, ordered.length);
  await atomicWriteFile(indexFile, new TextEncoder().encode(JSON.stringify(index, null, 1) + "\n"));
  rmSync(state, { recursive: true, force: true });
  return { index, indexFile, written, kept, upToDate: false, seconds: (performance.now() - t0) / 1000 };
}

function makeIndex(records: Map<string, ShardRecord>, total: number, s: Settings, fp: string, n: number): ShardIndex {
  const shards = Array.from({ length: total }, (_, k) => records.get(shardName(k))!);
  return {
    format: SHARD_INDEX_FORMAT,
    version: 1,
    samplesPerShard: s.samplesPerShard,
    samples: shards.reduce((a, r) => a + r.samples, 0),
    shards: shards.map(({ name, samples, bytes, sha256 }) => ({ name, samples, bytes, sha256 })),
    image: { shortSide: s.size, format: "jpeg", quality: s.quality, chroma: "4:2:0", fov: s.fov },
    skipped: shards.flatMap((r) => r.skipped),
    source: { samples: n, fingerprint: fp, shuffle: s.shuffle, seed: s.seed, labels: s.labels },
  };
}

/** The index when a finished run of the same inputs is there (its shards all present at their sizes). */
function upToDate(indexFile: string, fp: string): ShardIndex | null {
  if (!existsSync(indexFile)) return null;
  try {
    const idx = JSON.parse(readFileSync(indexFile, "utf8")) as ShardIndex;
    if (idx.source?.fingerprint !== fp) return null;
    const dir = path.dirname(indexFile);
    const ok = idx.shards.every((r) => {
      const f = path.join(dir, r.name);
      return existsSync(f) && statSync(f).size === r.bytes;
    });
    return ok ? idx : null;
  } catch {
    return null;
  }
}

/** Finished-shard records of an earlier run of the same inputs (another run's: discarded). */
async function resumeState(
  state: string,
  fp: string,
  force: boolean,
  log?: (l: string) => void,
): Promise<Map<string, ShardRecord>> {
  const records = new Map<string, ShardRecord>();
  const fpFile = path.join(state, "fingerprint");
  if (existsSync(state) && (force || !existsSync(fpFile) || readFileSync(fpFile, "utf8") !== fp)) {
    if (!force) log?.(`${state}: left by a run with other inputs or settings; starting over`);
    rmSync(state, { recursive: true, force: true });
  }
  mkdirSync(state, { recursive: true });
  if (!existsSync(fpFile)) await atomicWriteFile(fpFile, new TextEncoder().encode(fp));
  for (const f of readdirSync(state)) {
    const m = /^(\d{6}\.tar)\.json$/.exec(f);
    if (m) records.set(m[1]!, JSON.parse(readFileSync(path.join(state, f), "utf8")) as ShardRecord);
  }
  return records;
}

class Tracker {
  #done = 0;
  #base = 0;
  #shards = 0;
  readonly #t0 = performance.now();
  constructor(
    readonly total: number,
    readonly shardsTotal: number,
    readonly emit?: (p: PackProgress) => void,
  ) {}
  skipAhead(n: number): void {
    this.#done += n;
    this.#base += n;
    this.#shards++;
    this.#emit();
  }
  tick(): void {
    this.#done++;
    this.#emit();
  }
  shardDone(): void {
    this.#shards++;
    this.#emit();
  }
  #emit(): void {
    const s = (performance.now() - this.#t0) / 1000;
    const rate = s > 0 ? (this.#done - this.#base) / s : 0;
    this.emit?.({
      done: this.#done,
      total: this.total,
      shards: this.#shards,
      shardsTotal: this.shardsTotal,
      imagesPerSecond: rate,
      etaSeconds: rate > 0 ? (this.total - this.#done) / rate : Number.NaN,
    });
  }
}

interface ShardContext {
  slots: Slots;
  progress: Tracker;
  strict: boolean;
  log?: ((line: string) => void) | undefined;
}

type ShardImage = { jpeg: Buffer } | { reason: string };

/** One shard's stored images, made concurrently (a bad one skipped with its reason, or fatal when strict). */
async function shardImages(samples: readonly Sample[], s: Settings, ctx: ShardContext): Promise<ShardImage[]> {
  return Promise.all(
    samples.map(async (x): Promise<ShardImage> => {
      await ctx.slots.acquire();
      try {
        return { jpeg: await storedImage(x, s) };
      } catch (e) {
        const { kind, message } = classifyError(e);
        const reason = `${kind}: ${message}`;
        if (ctx.strict) throw new Error(`${x.image}: ${reason}`, { cause: e });
        ctx.log?.(`${new Date().toISOString()} skip ${x.image} (id ${x.id}): ${reason}`);
        return { reason };
      } finally {
        ctx.slots.release();
        ctx.progress.tick();
      }
    }),
  );
}

/** Writes one shard: entries in order, the file atomically. */
async function writeShard(
  out: string,
  name: string,
  first: number,
  samples: readonly Sample[],
  meta: readonly object[],
  results: readonly ShardImage[],
): Promise<ShardRecord> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => (pack.on("end", resolve), pack.on("error", reject)));
  const skipped: ShardRecord["skipped"] = [];
  let count = 0;
  const entry = (file: string, data: Buffer) =>
    new Promise<void>((resolve, reject) =>
      pack.entry(
        { name: file, size: data.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: "", gname: "" },
        data,
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  for (let i = 0; i < samples.length; i++) {
    const r = results[i]!;
    if ("reason" in r) {
      skipped.push({ id: samples[i]!.id, reason: r.reason });
      continue;
    }
    const key = String(first + i).padStart(9, "0");
    await entry(`${key}.jpg`, r.jpeg);
    if (samples[i]!.text !== null) await entry(`${key}.txt`, Buffer.from(samples[i]!.text!, "utf8"));
    await entry(`${key}.json`, Buffer.from(JSON.stringify(meta[i]), "utf8"));
    count++;
  }
  pack.finalize();
  await ended;
  const bytes = Buffer.concat(chunks);
  await atomicWriteFile(path.join(out, name), bytes);
  return {
    name,
    samples: count,
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    skipped,
  };
}

/** The stored JPEG of one sample: resized (and cropped) once; see the module comment. */
async function storedImage(x: Sample, s: Settings): Promise<Buffer> {
  const fast = jpegFastPath().jpeg;
  let undecodable = false; // TurboJPEG could not decode it: sharp's turn, without a second try
  if (fast && !x.member && !s.fov) {
    // a whole JPEG file: read, decoded, resized and encoded on the worker thread, no copy in JS
    const r = await fast.resize(x.image, {
      ...WHOLE_IMAGE,
      outWidth: 0,
      outHeight: 0,
      shortSide: s.size,
      quality: s.quality,
    });
    const jpeg = resizedJpeg(r);
    if (jpeg) return jpeg;
    undecodable = r.status === "error";
    // not a JPEG, one the fast path leaves to sharp, or one TurboJPEG cannot decode: as below
  }
  const bytes = x.member ? await readMember(x.member) : await readFile(x.image);
  const info = inspectJpeg(bytes);
  let W = info?.width ?? 0;
  let H = info?.height ?? 0;
  if (!info) {
    const m = await withSharp(bytes, (b) => openImage(b).metadata());
    W = m.width ?? 0;
    H = m.height ?? 0;
    if (!W || !H) throw new Error("image has no dimensions");
  }
  const region: Rect = s.fov
    ? await withSharp(bytes, (b) => detectFov(b, W, H, s.fov === true ? {} : (s.fov as Partial<FovOptions>)))
    : { left: 0, top: 0, width: W, height: H };
  const scale = Math.min(1, s.size / Math.min(region.width, region.height));
  const outW = Math.max(1, Math.round(region.width * scale));
  const outH = Math.max(1, Math.round(region.height * scale));
  const inside =
    region.left >= 0 && region.top >= 0 && region.left + region.width <= W && region.top + region.height <= H;
  if (info && fast && !undecodable) {
    if (!info.fallback && inside) {
      const r = await fast.resize(bytes, {
        ...WHOLE_IMAGE,
        ...region,
        outWidth: outW,
        outHeight: outH,
        shortSide: 0,
        quality: s.quality,
      });
      const jpeg = resizedJpeg(r);
      if (jpeg) return jpeg;
    } else await validateJpeg(fast, bytes);
  }
  return withSharp(bytes, (b) => sharpStored(b as Buffer, region, W, H, outW, outH, s.quality));
}

/** The JPEG a native resize wrote; corrupt data and a file that cannot be read throw; null: sharp's turn. */
function resizedJpeg(r: JpegDecodeResult): Buffer | null {
  if (r.status === "ok") return Buffer.from(r.data!.buffer, r.data!.byteOffset, r.data!.length);
  if (r.status === "corrupt") throw new Error(`corrupt JPEG: ${r.message ?? "libjpeg warning"}`);
  if (r.code) throw readError(r);
  return null;
}

async function sharpStored(
  bytes: Buffer,
  r: Rect,
  W: number,
  H: number,
  outW: number,
  outH: number,
  quality: number,
): Promise<Buffer> {
  let img = openImage(bytes).flatten({ background: "#000000" }).toColourspace("srgb");
  const c = clipRect(r, W, H);
  if (c.x0 !== 0 || c.y0 !== 0 || c.x1 !== W || c.y1 !== H)
    img = img.extract({ left: c.x0, top: c.y0, width: c.x1 - c.x0, height: c.y1 - c.y0 });
  img = resizePadded(img, r, c, outW, outH);
  return img.jpeg({ quality, chromaSubsampling: "4:2:0" }).toBuffer();
}
