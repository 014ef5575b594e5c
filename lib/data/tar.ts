/**
 * A tar reader for WebDataset shards: ustar, pax (`x`: path and size; `g` ignored) and GNU long
 * names (`L`), regular files only, every header's checksum verified.
 *
 * Hand-written rather than tar-stream's extractor (which the packer uses to write): the shard
 * loader needs what a stream of entries does not give — each member's byte offset, and a
 * header-only walk that skips member data without reading it (pread of 512-byte headers). Those
 * are what make an exact mid-epoch resume cheap (replay the epoch's order from headers, then read
 * only the samples still in the shuffle buffer) and let `data check`/`embed`/`eval` list a shard's
 * samples without reading its images. Reading runs on one file handle with large sequential reads
 * and no stream object per member.
 *
 * A member that runs past the end of the file, a header cut short or a header whose checksum is
 * wrong is a TarError naming the file, the byte offset and (where known) the member.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";

export interface TarMember {
  /** Path inside the archive (pax or GNU long names applied). */
  name: string;
  size: number;
  /** Byte offset of the member's data in the file. */
  offset: number;
  /** Byte offset of its first header block (a pax or GNU long-name header when it has one): seek
   * here to read it again. */
  header: number;
}

export class TarError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly member: string | null,
    message: string,
  ) {
    super(`${file}: ${message}${member !== null ? ` (member ${member})` : ""} at byte ${offset}`);
    this.name = "TarError";
  }
}

const BLOCK = 512;
const CHUNK = 1 << 20;

function cString(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString("utf8", start, end < 0 || end > start + len ? start + len : end);
}

function octal(b: Buffer, start: number, len: number): number {
  if (b[start]! & 0x80) {
    // GNU base-256 (sizes of 8 GiB and more)
    let v = b[start]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i]!;
    return v;
  }
  const s = cString(b, start, len).trim();
  return s === "" ? 0 : parseInt(s, 8);
}

/** The checksum of a header block: its bytes with the checksum field read as spaces. */
function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const want = octal(h, 148, 8);
  return Number.isFinite(want) && want === sum;
}

/** Records of a pax extended header ("LEN key=value\n"). */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(data.toString("ascii", i, sp), 10);
    if (!(len > 0) || i + len > data.length) break;
    const rec = data.toString("utf8", sp + 1, i + len - 1);
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/**
 * Members of one tar file, in order. `next()` reads through a sequential buffer (member data
 * included); `next({ data: false })` reads headers only, by offset, without touching the data.
 */
export class TarReader {
  #buf: Buffer = Buffer.alloc(0);
  #bufStart = 0; // file offset of #buf[0]
  #pos = 0; // file offset of the next header
  #ended = false;

  private constructor(
    readonly file: string,
    readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(file: string): Promise<TarReader> {
    const fh = await open(file, "r");
    try {
      const { size } = await fh.stat();
      return new TarReader(file, fh, size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Where the next header is read from. */
  get position(): number {
    return this.#pos;
  }

  /** Continues from a header offset (one `next()` returned as `header`, or `position`). */
  seek(offset: number): void {
    this.#pos = offset;
    this.#ended = false;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /** `size` bytes at `offset`, read directly (a copy the caller owns). */
  async readAt(offset: number, size: number, member: string | null = null): Promise<Buffer> {
    if (offset + size > this.size)
      throw new TarError(this.file, offset, member, `truncated: ${size} bytes needed, the file ends at ${this.size}`);
    const out = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await this.fh.read(out, got, size - got, offset + got);
      if (bytesRead === 0) throw new TarError(this.file, offset + got, member, "truncated: unexpected end of file");
      got += bytesRead;
    }
    return out;
  }

  /** Bytes [offset, offset + n) through the sequential buffer (valid until the next read). */
  async #window(offset: number, n: number, member: string | null): Promise<Buffer> {
    if (offset + n > this.size)
      throw new TarError(this.file, offset, member, `truncated: ${n} bytes needed, the file ends at ${this.size}`);
    const end = this.#bufStart + this.#buf.length;
    if (offset < this.#bufStart || offset + n > end) {
      const len = Math.min(Math.max(n, CHUNK), this.size - offset);
      this.#buf = await this.readAt(offset, len, member);
      this.#bufStart = offset;
    }
    return this.#buf.subarray(offset - this.#bufStart, offset - this.#bufStart + n);
  }

  async #header(offset: number, buffered: boolean): Promise<Buffer | null> {
    if (offset + BLOCK > this.size)
      throw new TarError(this.file, offset, null, `truncated: a header cut short (the file ends at ${this.size})`);
    const h = buffered ? await this.#window(offset, BLOCK, null) : await this.readAt(offset, BLOCK);
    return checkedHeader(this.file, h, offset);
  }

  /**
   * The next regular file: its member entry and, unless `data: false`, a copy of its bytes. null
   * at the end of the archive. Directories, links and other entries are passed over.
   */
  async next(options: { data?: boolean } = {}): Promise<{ member: TarMember; data: Buffer | null } | null> {
    const withData = options.data !== false;
    const entry = new EntryParser(this.file, this.size, this.#pos);
    while (!this.#ended) {
      const at = this.#pos;
      const step = entry.header(at < this.size ? await this.#header(at, withData) : null, at);
      this.#pos = step.next;
      if (step.kind === "end") {
        this.#ended = true;
        return null;
      }
      if (step.kind === "meta") entry.meta(step.type, await this.readAt(step.dataAt, step.size, step.name));
      if (step.kind !== "member") continue;
      const m = step.member;
      return { member: m, data: withData ? Buffer.from(await this.#window(m.offset, m.size, m.name)) : null };
    }
    return null;
  }
}

type Step =
  | { kind: "end"; next: number }
  | { kind: "skip"; next: number }
  | { kind: "meta"; type: "x" | "L"; name: string; dataAt: number; size: number; next: number }
  | { kind: "member"; member: TarMember; next: number };

/**
 * One archive entry's header blocks, step by step (shared by the async reader and the sync walk):
 * pax and GNU long-name headers apply to the entry that follows them.
 */
class EntryParser {
  #longName: string | null = null;
  #pax: Map<string, string> | null = null;
  #first: number;

  constructor(
    readonly file: string,
    readonly size: number,
    start: number,
  ) {
    this.#first = start;
  }

  /** The header block at `at` (null: an end-of-archive block or the end of the file). */
  header(h: Buffer | null, at: number): Step {
    if (!h) return { kind: "end", next: at };
    if (this.#longName === null && this.#pax === null) this.#first = at;
    const type = String.fromCharCode(h[156]!);
    let name = cString(h, 0, 100);
    if (h.toString("latin1", 257, 262) === "ustar") {
      const prefix = cString(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const size = this.#pax?.has("size") ? Number(this.#pax.get("size")) : octal(h, 124, 12);
    const dataAt = at + BLOCK;
    const full = this.#pax?.get("path") ?? this.#longName ?? name;
    if (!Number.isSafeInteger(size) || size < 0) throw new TarError(this.file, at, full, "bad member size");
    if (dataAt + size > this.size)
      throw new TarError(this.file, at, full, `truncated: ${size} bytes of data, the file ends at ${this.size}`);
    const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "x" || type === "L") return { kind: "meta", type, name, dataAt, size, next };
    if (type === "g") return { kind: "skip", next };
    this.#longName = null;
    this.#pax = null;
    if (type !== "0" && type !== "\0" && type !== "7") return { kind: "skip", next };
    return { kind: "member", member: { name: full, size, offset: dataAt, header: this.#first }, next };
  }

  /** The data of a pax ("x") or long-name ("L") header. */
  meta(type: "x" | "L", data: Buffer): void {
    if (type === "x") this.#pax = paxRecords(data);
    else this.#longName = cString(data, 0, data.length);
  }
}

/** A header block read from `buf` (null for an all-zero block); a bad checksum is a TarError. */
function checkedHeader(file: string, h: Buffer, at: number): Buffer | null {
  if (h.every((x) => x === 0)) return null;
  if (!checksumOk(h)) throw new TarError(file, at, null, "bad header checksum (not a tar file, or corrupt)");
  return h;
}

/** `n` bytes of `file` (open as `fd`) at offset `at`; a TarError when the file ends first. */
export function readExactlySync(fd: number, file: string, at: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    const k = readSync(fd, b, got, n - got, at + got);
    if (k === 0) throw new TarError(file, at + got, null, "truncated: unexpected end of file");
    got += k;
  }
  return b;
}

/**
 * The regular-file members of a tar, headers only, read synchronously (for listings that must
 * not be async). Visits each member in order; throws a TarError where the archive is damaged,
 * after visiting the members before it.
 */
export function walkTarSync(file: string, visit: (m: TarMember) => void): void {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const read = (at: number, n: number) => readExactlySync(fd, file, at, n);
    const entry = new EntryParser(file, size, 0);
    let at = 0;
    for (;;) {
      if (at < size && at + BLOCK > size)
        throw new TarError(file, at, null, `truncated: a header cut short (the file ends at ${size})`);
      const step = entry.header(at < size ? checkedHeader(file, read(at, BLOCK), at) : null, at);
      at = step.next;
      if (step.kind === "end") return;
      if (step.kind === "meta") entry.meta(step.type, read(step.dataAt, step.size));
      if (step.kind === "member") visit(step.member);
    }
  } finally {
    closeSync(fd);
  }
}
