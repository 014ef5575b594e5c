/**
 * WebDataset shards as a data source: tar files in which the members of one sample share a key
 * (`KEY.jpg`, `KEY.txt`, `KEY.json`, `KEY.cls`), as the packer (`vilref data pack`), img2dataset
 * and other WebDataset tools write them.
 *
 * - Shard specs: a list of paths, a glob (`shards/*.tar`), brace notation (`shards/{000000..000099}.tar`,
 *   `{a,b}`), a folder of .tar files, or a packed set's index.json (its shards, counts and sizes).
 * - Members group into samples by key, in archive order (a key's members are consecutive); the key is
 *   the member path up to the first dot of its file name, the rest is the extension (lowercased).
 *   The image is the first of jpg, jpeg, png, webp present; txt is the report, json the metadata
 *   (id, labels, eye, patient, split, target), cls a class index.
 * - Problems never stop a scan: a shard that does not exist or cannot be read, a truncated or
 *   corrupt tar (the samples before the damage are kept), a sample without an image, a duplicate
 *   id — each is reported with shard and key, or (strict) thrown as an error naming them.
 *
 * `scanShards` lists the samples of shards as a manifest would (images stay in the tar, read by
 * offset when decoded): for `embed`, `eval`, `data check` and held-out sets. Training streams
 * shards with bounded memory instead (lib/data/shard-loader.ts).
 */
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Eye, LabelMap } from "../labels/index.js";
import { globSync, isDynamicPattern } from "tinyglobby";
import { parseEye, parseLabelsCell, type Sample, type ShardMember } from "./manifest.js";
import { readExactlySync, TarError, TarReader, walkTarSync, type TarMember } from "./tar.js";

/** Image extensions a sample can carry, in the order one is picked when there are several. */
export const SHARD_IMAGE_EXTS: readonly string[] = ["jpg", "jpeg", "png", "webp"];

export const SHARD_INDEX_FORMAT = "vilref-webdataset";

/** The index JSON `vilref data pack` writes beside its shards. */
export interface ShardIndex {
  format: typeof SHARD_INDEX_FORMAT;
  version: 1;
  /** Samples per shard (the last shard may hold fewer). */
  samplesPerShard: number;
  /** Total samples in the shards. */
  samples: number;
  shards: { name: string; samples: number; bytes: number; sha256: string }[];
  /** How the images were stored, and what was left out. */
  image: Record<string, unknown>;
  skipped: { id: string; reason: string }[];
  source: Record<string, unknown>;
}

export interface ShardProblem {
  shard: string;
  /** The sample's key, when the problem is one sample's. */
  key: string | null;
  /** Kind (missing, unreadable, truncated, corrupt, duplicate) and message. */
  reason: string;
}

/** Members of one sample, by extension. */
export interface ShardGroup {
  shard: string;
  key: string;
  parts: Map<string, { member: TarMember; data: Buffer | null }>;
  /** Header offset of the first member after this sample (where to continue), null at the shard's end. */
  end: number | null;
}

/** Splits a member name into WebDataset key and extension; null for names that are not sample parts. */
export function splitKey(name: string): { key: string; ext: string } | null {
  const slash = name.lastIndexOf("/");
  const base = name.slice(slash + 1);
  const dot = base.indexOf(".");
  if (dot <= 0 || base.startsWith("__")) return null;
  return { key: name.slice(0, slash + 1 + dot), ext: base.slice(dot + 1).toLowerCase() };
}

/** Expands brace groups: `{000..012}` (zero-padded when an end is) and `{a,b,c}`; several groups multiply. */
export function braceExpand(pattern: string): string[] {
  const m = /\{([^{}]*)\}/.exec(pattern);
  if (!m) return [pattern];
  const head = pattern.slice(0, m.index);
  const tail = pattern.slice(m.index + m[0].length);
  const body = m[1]!;
  let items: string[];
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range) {
    const [a, b] = [range[1]!, range[2]!];
    const lo = Number(a);
    const hi = Number(b);
    const width = /^-?0\d/.test(a) || /^-?0\d/.test(b) ? Math.max(a.length, b.length) : 0;
    const step = lo <= hi ? 1 : -1;
    if (Math.abs(hi - lo) > 10_000_000) throw new RangeError(`${pattern}: the range {${body}} is too long`);
    items = [];
    for (let v = lo; step > 0 ? v <= hi : v >= hi; v += step) items.push(String(v).padStart(width, "0"));
  } else if (body.includes(",")) items = body.split(",");
  else
    return braceExpand(head + "\u0000" + body + "\u0001" + tail).map((s) =>
      s.replace("\u0000", "{").replace("\u0001", "}"),
    );
  return items.flatMap((it) => braceExpand(head + it + tail));
}

/** True when a path names a packed set's index (JSON with the packer's format tag). */
export function readShardIndex(file: string): ShardIndex | null {
  if (!file.endsWith(".json") || !existsSync(file) || !statSync(file).isFile()) return null;
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return null;
  }
  if (!v || typeof v !== "object" || (v as { format?: unknown }).format !== SHARD_INDEX_FORMAT) return null;
  const idx = v as ShardIndex;
  if (!Array.isArray(idx.shards)) throw new Error(`${file}: a shard index without a "shards" list`);
  return idx;
}

/** True when an input names shards rather than a manifest, folder of images or image. */
export function isShardSpec(spec: string | readonly string[]): boolean {
  if (typeof spec !== "string") return spec.length > 0 && spec.every((s) => isShardSpec(s));
  if (/\.tar(\}|$)/.test(spec) || /\.tar\b/.test(spec.replace(/\{[^}]*\}/g, ""))) return true;
  if (readShardIndex(spec)) return true;
  if (existsSync(spec) && statSync(spec).isDirectory())
    return (
      readdirSync(spec).some((f) => f.endsWith(".tar")) &&
      !readdirSync(spec).some((f) => /\.(jpe?g|png|tiff?|webp|gif)$/i.test(f))
    );
  return false;
}

/**
 * The shard files a spec names, in order (paths that do not exist are kept: the readers report
 * them), and the packed set's index when the spec is one.
 */
export function expandShards(
  spec: string | readonly string[],
  cwd = process.cwd(),
): { shards: string[]; index: ShardIndex | null } {
  if (typeof spec !== "string") {
    const all = spec.map((s) => expandShards(s, cwd));
    return { shards: all.flatMap((a) => a.shards), index: all.length === 1 ? all[0]!.index : null };
  }
  const abs = path.resolve(cwd, spec);
  const index = readShardIndex(abs);
  if (index) return { shards: index.shards.map((s) => path.resolve(path.dirname(abs), s.name)), index };
  if (existsSync(abs) && statSync(abs).isDirectory())
    return {
      shards: readdirSync(abs)
        .filter((f) => f.endsWith(".tar"))
        .sort()
        .map((f) => path.join(abs, f)),
      index: null,
    };
  const out: string[] = [];
  for (const p of braceExpand(spec)) {
    if (isDynamicPattern(p) && !existsSync(path.resolve(cwd, p))) {
      const files = globSync(p.split(path.sep).join("/"), {
        cwd,
        absolute: true,
        onlyFiles: true,
        expandDirectories: false,
      })
        .map((f) => path.normalize(f))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (files.length === 0) out.push(path.resolve(cwd, p)); // reported as missing
      out.push(...files);
    } else out.push(path.resolve(cwd, p));
  }
  return { shards: out, index: null };
}

/** A short kind for a shard-level failure. */
export function problemKind(e: unknown): string {
  const code = (e as { code?: string } | null)?.code;
  if (code === "ENOENT") return "missing";
  if (code === "EACCES" || code === "EISDIR") return "unreadable";
  const m = e instanceof Error ? e.message : String(e);
  if (/truncated/.test(m)) return "truncated";
  return "corrupt";
}

/**
 * Groups a shard's members into samples (consecutive members with one key). Groups without an
 * image are reported, not returned.
 */
export class Grouper {
  #cur: ShardGroup | null = null;
  constructor(
    readonly shard: string,
    readonly report: (p: ShardProblem) => void,
  ) {}

  /** The key of the sample being collected (for messages). */
  get pending(): string | null {
    return this.#cur?.key ?? null;
  }

  /** Adds a member; returns the previous sample when this member starts a new one. */
  push(member: TarMember, data: Buffer | null): ShardGroup | null {
    const k = splitKey(member.name);
    if (!k) return null;
    let done: ShardGroup | null = null;
    if (this.#cur && this.#cur.key !== k.key) {
      this.#cur.end = member.header;
      done = this.#check(this.#cur);
      this.#cur = null;
    }
    this.#cur ??= { shard: this.shard, key: k.key, parts: new Map(), end: null };
    if (!this.#cur.parts.has(k.ext)) this.#cur.parts.set(k.ext, { member, data });
    return done;
  }

  /** The last sample, at the end of the shard. */
  end(): ShardGroup | null {
    const g = this.#cur;
    this.#cur = null;
    return g ? this.#check(g) : null;
  }

  /**
   * The archive is damaged here. When the damaged member starts another sample (its name is
   * known and its key differs), the sample being collected was complete and is returned; else
   * that sample is reported as cut short and dropped.
   */
  fail(e: unknown): ShardGroup | null {
    const next = e instanceof TarError && e.member !== null ? splitKey(e.member) : null;
    const cur = this.#cur;
    this.#cur = null;
    const complete = cur !== null && next !== null && next.key !== cur.key;
    const lost = complete ? next.key : (cur?.key ?? next?.key ?? null);
    const cut = lost !== null ? `; sample ${lost} is incomplete and left out` : "";
    this.report({ shard: this.shard, key: lost, reason: `${problemKind(e)}: ${(e as Error).message}${cut}` });
    return complete ? this.#check(cur) : null;
  }

  #check(g: ShardGroup): ShardGroup | null {
    if (SHARD_IMAGE_EXTS.some((e) => g.parts.has(e))) return g;
    const have = [...g.parts.keys()].join(", ");
    this.report({
      shard: this.shard,
      key: g.key,
      reason: `missing: no image (jpg, jpeg, png or webp) in the sample (it has ${have})`,
    });
    return null;
  }
}

/**
 * The samples of one shard as member groups, in archive order, from a header offset. With
 * `data: false` only headers are read. A tar error ends the shard (reported, with the sample it
 * cut short).
 */
export async function* shardGroups(
  reader: TarReader,
  options: { data: boolean; from?: number; report: (p: ShardProblem) => void },
): AsyncGenerator<ShardGroup> {
  reader.seek(options.from ?? 0);
  const grouper = new Grouper(reader.file, options.report);
  for (;;) {
    let r: Awaited<ReturnType<TarReader["next"]>>;
    try {
      r = await reader.next({ data: options.data });
    } catch (e) {
      const complete = grouper.fail(e);
      if (complete) yield complete;
      return;
    }
    if (!r) break;
    const done = grouper.push(r.member, r.data);
    if (done) yield done;
  }
  const last = grouper.end();
  if (last) yield last;
}

/** The image part of a group (the first of SHARD_IMAGE_EXTS present). */
export function imagePart(g: ShardGroup): { ext: string; member: TarMember; data: Buffer | null } {
  const ext = SHARD_IMAGE_EXTS.find((e) => g.parts.has(e))!;
  return { ext, ...g.parts.get(ext)! };
}

/** A sample's metadata from its txt/json/cls parts (given their bytes); errors name the field. */
export function sampleFromParts(
  shard: string,
  key: string,
  image: ShardMember,
  small: { txt?: Buffer; json?: Buffer; cls?: Buffer },
  line: number,
): Sample {
  let meta: Record<string, unknown> = {};
  if (small.json) {
    const v = JSON.parse(small.json.toString("utf8")) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("json: expected an object");
    meta = v as Record<string, unknown>;
  }
  const str = (...ks: string[]) => {
    for (const k of ks) {
      const x = meta[k];
      if (typeof x === "string" && x !== "") return x;
      if (typeof x === "number") return String(x);
    }
    return null;
  };
  let target: number | null = null;
  const cls = small.cls ? small.cls.toString("utf8").trim() : (meta.target ?? meta.cls);
  if (cls !== undefined && cls !== null && cls !== "") {
    target = Number(cls);
    if (!Number.isInteger(target) || target < 0)
      throw new Error(`cls: expected a class index, got ${JSON.stringify(cls)}`);
  }
  const labels: LabelMap | null =
    meta.labels === undefined || meta.labels === null ? null : parseLabelsCell(meta.labels);
  const eye: Eye | null = parseEye(str("eye"));
  return {
    id: str("id") ?? key,
    image: `${shard}#${image.name}`,
    member: image,
    text: small.txt ? small.txt.toString("utf8") : null,
    labels,
    split: str("split"),
    patientId: str("patient", "patient_id", "patientId"),
    eye,
    target,
    source: { file: shard, line },
  };
}

/** The member descriptor of a group's image. */
export function memberRef(shard: string, m: TarMember): ShardMember {
  return { shard, name: m.name, offset: m.offset, size: m.size };
}

export interface ScanOptions {
  /** Throw at the first problem (naming shard and key) instead of reporting it. */
  strict?: boolean;
  /** Called once per problem. */
  report?: (p: ShardProblem) => void;
}

export interface ScanResult {
  samples: Sample[];
  /** Per shard: samples found (complete, with an image). */
  shards: { path: string; samples: number }[];
  problems: ShardProblem[];
}

/** Fails on a problem in strict mode; else records and reports it. */
function problemSink(o: ScanOptions, problems: ShardProblem[]): (p: ShardProblem) => void {
  return (p) => {
    if (o.strict) throw new Error(`${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`);
    problems.push(p);
    o.report?.(p);
  };
}

/**
 * Lists the samples of shards, synchronously (headers and the small txt/json/cls members are
 * read; images are referenced by offset). Ids must be unique across the shards: a repeated one is
 * a problem.
 */
export function scanShards(spec: string | readonly string[], options: ScanOptions = {}): ScanResult {
  const { shards } = expandShards(spec);
  const problems: ShardProblem[] = [];
  const report = problemSink(options, problems);
  const samples: Sample[] = [];
  const perShard: ScanResult["shards"] = [];
  const seen = new Map<string, string>();
  for (const shard of shards) {
    const groups: ShardGroup[] = [];
    const grouper = new Grouper(shard, report);
    try {
      walkTarSync(shard, (m) => {
        const g = grouper.push(m, null);
        if (g) groups.push(g);
      });
      const last = grouper.end();
      if (last) groups.push(last);
    } catch (e) {
      if (!(e instanceof TarError || (e as { code?: string }).code)) throw e;
      const complete = grouper.fail(e);
      if (complete) groups.push(complete);
    }
    let n = 0;
    const read = rangeReader(shard);
    for (const g of groups) {
      const x = groupSample(shard, g, n, report, read);
      if (!x) continue;
      const first = seen.get(x.id);
      if (first !== undefined) {
        report({ shard, key: g.key, reason: `duplicate: id ${JSON.stringify(x.id)} was already in ${first}` });
        continue;
      }
      seen.set(x.id, shard);
      samples.push(x);
      n++;
    }
    read.close();
    perShard.push({ path: shard, samples: n });
  }
  return { samples, shards: perShard, problems };
}

/** One group's sample with its small parts read; a part that does not parse is a problem. */
function groupSample(
  shard: string,
  g: ShardGroup,
  ordinal: number,
  report: (p: ShardProblem) => void,
  read: RangeReader,
): Sample | null {
  const small: { txt?: Buffer; json?: Buffer; cls?: Buffer } = {};
  try {
    for (const ext of ["txt", "json", "cls"] as const) {
      const p = g.parts.get(ext);
      if (p) small[ext] = p.data ?? read.at(p.member.offset, p.member.size);
    }
    return sampleFromParts(shard, g.key, memberRef(shard, imagePart(g).member), small, ordinal + 1);
  } catch (e) {
    report({ shard, key: g.key, reason: `corrupt: ${(e as Error).message}` });
    return null;
  }
}

interface RangeReader {
  at(offset: number, size: number): Buffer;
  close(): void;
}

/** Synchronous reads of byte ranges of one file (opened on first use). */
function rangeReader(file: string): RangeReader {
  let fd: number | null = null;
  return {
    at(offset, size) {
      fd ??= openSync(file, "r");
      return readExactlySync(fd, file, offset, size);
    },
    close() {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/** Shard files open for reading members by offset: a few kept, closed only when no read is using them. */
const handles = new Map<string, { fh: Promise<FileHandle>; users: number }>();

function releaseIdle(keep: number): void {
  for (const [file, h] of handles) {
    if (handles.size <= keep) break;
    if (h.users > 0) continue;
    handles.delete(file);
    void h.fh.then((f) => f.close()).catch(() => {});
  }
}

/** The bytes of a sample's image inside its shard. */
export async function readMember(m: ShardMember): Promise<Buffer> {
  let h = handles.get(m.shard);
  if (!h) {
    releaseIdle(15);
    h = { fh: open(m.shard, "r"), users: 0 };
    handles.set(m.shard, h);
  }
  h.users++;
  try {
    const fh = await h.fh;
    const out = Buffer.allocUnsafe(m.size);
    let got = 0;
    while (got < m.size) {
      const { bytesRead } = await fh.read(out, got, m.size - got, m.offset + got);
      if (bytesRead === 0) throw new TarError(m.shard, m.offset + got, m.name, "truncated: unexpected end of file");
      got += bytesRead;
    }
    return out;
  } catch (e) {
    if (handles.get(m.shard) === h && h.users === 1) handles.delete(m.shard);
    throw e;
  } finally {
    h.users--;
  }
}
