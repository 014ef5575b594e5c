/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON header, then the data buffer.
 *
 * The reader validates the whole header before it touches any tensor data, with the rules of the
 * reference Rust implementation (and a few stricter ones): the header size is capped, dtypes are
 * known, shapes are non-negative integers, every tensor's byte range lies inside the data buffer
 * and matches its shape, and the ranges, sorted, tile the data buffer exactly (no overlap, no hole,
 * no trailing bytes). Nothing in the file is ever executed.
 */
import { readFile } from "node:fs/promises";
import { atomicWriteFile, bytesOf, hostIsLittleEndian, viewOrCopy } from "../io/bytes.js";
import { DEFAULT_MAX_JSON_DEPTH, jsonDepthViolation } from "../io/json.js";
import { CheckpointError } from "./errors.js";

export { CheckpointError } from "./errors.js";

export type StDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

export interface StTensor {
  dtype: StDtype;
  shape: number[];
  /** Row-major, native byte order. F16 and BF16 are raw bits; BOOL is one byte per element. */
  data: Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

export interface SafetensorsOptions {
  /** Names the file in error messages (readSafetensors passes the path). Default "safetensors". */
  name?: string;
  /** Largest accepted header, in bytes. Default 100 MiB. */
  maxHeaderBytes?: number;
}

/** One header entry, validated. Offsets are relative to the start of the data buffer. */
export interface StHeaderEntry {
  name: string;
  dtype: StDtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface StHeader {
  /** Entries in data-buffer order (sorted by begin). */
  entries: StHeaderEntry[];
  metadata: Record<string, string>;
  /** Header length N as stored in the first 8 bytes. */
  headerBytes: number;
  /** Offset of the data buffer in the file: 8 + N. */
  dataOffset: number;
  /** Length of the data buffer in bytes. */
  dataBytes: number;
}

export const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;

type Ctor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): StTensor["data"];
  BYTES_PER_ELEMENT: number;
};

const DTYPES: Record<StDtype, { size: number; ctor: Ctor }> = {
  F64: { size: 8, ctor: Float64Array },
  F32: { size: 4, ctor: Float32Array },
  F16: { size: 2, ctor: Uint16Array },
  BF16: { size: 2, ctor: Uint16Array },
  I64: { size: 8, ctor: BigInt64Array },
  I32: { size: 4, ctor: Int32Array },
  I16: { size: 2, ctor: Int16Array },
  I8: { size: 1, ctor: Int8Array },
  U8: { size: 1, ctor: Uint8Array },
  BOOL: { size: 1, ctor: Uint8Array },
};

const ENTRY_FIELDS = ["data_offsets", "dtype", "shape"];

/** Item size in bytes of a safetensors dtype. */
export function stItemSize(dtype: StDtype): number {
  return DTYPES[dtype].size;
}

function isStDtype(x: unknown): x is StDtype {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(DTYPES, x);
}

/** A short, safe rendering of a JSON value for messages. */
function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function showShape(shape: readonly number[]): string {
  return shape.length > 16 ? `[${shape.slice(0, 16).join(", ")}, ... (${shape.length} dims)]` : `[${shape.join(", ")}]`;
}

function showKey(key: string): string {
  const s = JSON.stringify(key);
  return s.length > 120 ? `${s.slice(0, 117)}..."` : s;
}

/** Throws the CheckpointError of a header check, naming the file and, where given, the tensor. */
type Fail = (msg: string, tensor?: string) => never;

/** Where the header's JSON ends and the data buffer starts. */
interface HeaderSpan {
  /** The header's length in bytes (without the 8 bytes that give it). */
  n: number;
  dataOffset: number;
  dataBytes: number;
}

/** Step 1: the 8-byte header length, checked against the limit, the file and the bytes given. */
function readHeaderSpan(bytes: Uint8Array, fileSize: number, cap: number, fail: Fail): HeaderSpan {
  if (fileSize < 8 || bytes.length < 8)
    fail(
      `${Math.min(fileSize, bytes.length)} bytes is too short for a safetensors file (the header length alone takes 8)`,
    );
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(cap)) fail(`header length ${n64} exceeds the limit of ${cap} bytes`);
  const n = Number(n64);
  if (8 + n > fileSize) fail(`header length ${n} runs past the end of the file (${fileSize} bytes)`);
  if (8 + n > bytes.length) fail(`header length ${n} runs past the ${bytes.length} bytes given`);
  return { n, dataOffset: 8 + n, dataBytes: fileSize - (8 + n) };
}

/** Step 2: the header's text as a JSON object (UTF-8, not nested too deep, an object). */
function readHeaderObject(bytes: Uint8Array, dataOffset: number, fail: Fail): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, dataOffset));
  } catch {
    return fail("header is not valid UTF-8");
  }
  const deep = jsonDepthViolation(text);
  if (deep >= 0) fail(`header is JSON nested deeper than ${DEFAULT_MAX_JSON_DEPTH} levels (at character ${deep})`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header))
    return fail("header is not a JSON object");
  return header as Record<string, unknown>;
}

/** Step 3a: the `__metadata__` entry, an object mapping strings to strings. */
function readMetadata(raw: unknown, into: Array<[string, string]>, fail: Fail): void {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    fail(`__metadata__ must be an object mapping strings to strings, got ${show(raw)}`);
  for (const [mk, mv] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof mv !== "string") fail(`__metadata__ entry ${showKey(mk)} must be a string, got ${show(mv)}`);
    into.push([mk, mv as string]);
  }
}

/** Step 3b: one tensor's entry: exactly dtype, shape and data_offsets, each well-formed and in the buffer. */
function readEntry(key: string, raw: unknown, dataBytes: number, fail: Fail): StHeaderEntry {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    fail(`entry must be an object with dtype, shape and data_offsets, got ${show(raw)}`, key);
  const info = raw as Record<string, unknown>;
  const fields = Object.keys(info);
  for (const f of fields)
    if (!ENTRY_FIELDS.includes(f))
      fail(`unexpected field ${showKey(f)} (an entry has exactly dtype, shape and data_offsets)`, key);
  for (const f of ENTRY_FIELDS) if (!fields.includes(f)) fail(`missing field "${f}"`, key);
  const dtype = info.dtype;
  if (!isStDtype(dtype)) return fail(`unknown dtype ${show(dtype)} (known: ${Object.keys(DTYPES).join(", ")})`, key);
  const shape = info.shape;
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0))
    return fail(`shape must be an array of non-negative integers, got ${show(shape)}`, key);
  const offs = info.data_offsets;
  if (
    !Array.isArray(offs) ||
    offs.length !== 2 ||
    !offs.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
  )
    return fail(`data_offsets must be two non-negative integers [begin, end], got ${show(offs)}`, key);
  const [begin, end] = offs as [number, number];
  if (begin > end) fail(`data_offsets [${begin}, ${end}] begin after they end`, key);
  if (end > dataBytes) fail(`data_offsets [${begin}, ${end}] lie outside the data buffer of ${dataBytes} bytes`, key);
  const entry = { name: key, dtype, shape: [...(shape as number[])], begin, end };
  checkEntryBytes(entry, fail);
  return entry;
}

/** Step 3c: an entry's byte span is its element count × item size. */
function checkEntryBytes({ name: key, dtype, shape, begin, end }: StHeaderEntry, fail: Fail): void {
  // Element count × item size, overflow-safe: all dims ≥ 1 makes the running product
  // non-decreasing, so it can stop as soon as it passes the span; item sizes are powers of two.
  const size = DTYPES[dtype].size;
  const span = end - begin;
  let need = 0;
  if (!shape.includes(0)) {
    let p = 1;
    for (const d of shape) {
      p *= d;
      if (p > span) break;
    }
    need = p * size;
  }
  if (need !== span) {
    const exact =
      shape.length <= 64 ? String(shape.reduce((a, d) => a * BigInt(d), 1n) * BigInt(size)) : `more than ${span}`;
    fail(
      `data_offsets [${begin}, ${end}] hold ${span} bytes but shape ${showShape(shape)} of ${dtype} needs ${exact}`,
      key,
    );
  }
}

/**
 * Step 4: sorted by begin (then end, then name, for a deterministic report), the ranges must tile
 * [0, dataBytes) exactly. Sorts `entries` in place.
 */
function checkTiling(entries: StHeaderEntry[], dataBytes: number, fail: Fail): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let cursor = 0;
  let prev: StHeaderEntry | undefined;
  for (const e of entries) {
    if (e.begin < cursor) {
      const p = prev!;
      fail(
        `tensors ${showKey(p.name)} [${p.begin}, ${p.end}] and ${showKey(e.name)} [${e.begin}, ${e.end}] overlap`,
        e.name,
      );
    }
    if (e.begin > cursor) {
      if (prev === undefined)
        fail(
          `hole of ${e.begin - cursor} bytes at the start of the data buffer, ` +
            `before tensor ${showKey(e.name)} [${e.begin}, ${e.end}]`,
          e.name,
        );
      else
        fail(
          `hole of ${e.begin - cursor} bytes between tensor ${showKey(prev.name)} [${prev.begin}, ${prev.end}] ` +
            `and tensor ${showKey(e.name)} [${e.begin}, ${e.end}]`,
          e.name,
        );
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataBytes) {
    if (prev === undefined) fail(`the data buffer holds ${dataBytes} bytes but the header lists no tensors`);
    else
      fail(
        `${dataBytes - cursor} trailing bytes of the data buffer [${cursor}, ${dataBytes}) ` +
          `belong to no tensor (the last, ${showKey(prev.name)}, ends at ${cursor})`,
        prev.name,
      );
  }
}

/**
 * Validates the header of a safetensors file. `bytes` is the whole file, or at least its first
 * 8 + N bytes with `fileSize` the size of the whole file (for readers that map the data separately).
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  opts: SafetensorsOptions & { fileSize?: number } = {},
): StHeader {
  const file = opts.name ?? "safetensors";
  const fail: Fail = (msg, tensor) => {
    throw new CheckpointError(`${file}: ${tensor === undefined ? "" : `tensor ${showKey(tensor)}: `}${msg}`, {
      file,
      ...(tensor === undefined ? {} : { tensor }),
    });
  };
  const span = readHeaderSpan(
    bytes,
    opts.fileSize ?? bytes.length,
    opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
    fail,
  );
  const header = readHeaderObject(bytes, span.dataOffset, fail);
  const metadataPairs: Array<[string, string]> = [];
  const entries: StHeaderEntry[] = [];
  for (const [key, raw] of Object.entries(header)) {
    if (key === "__metadata__") readMetadata(raw, metadataPairs, fail);
    else entries.push(readEntry(key, raw, span.dataBytes, fail));
  }
  checkTiling(entries, span.dataBytes, fail);
  return {
    entries,
    metadata: Object.fromEntries(metadataPairs),
    headerBytes: span.n,
    dataOffset: span.dataOffset,
    dataBytes: span.dataBytes,
  };
}

/**
 * Parses a whole safetensors file held in memory. Tensors come in data-buffer order; their data is
 * a zero-copy view of `bytes` where aligned, otherwise a copy. Errors are CheckpointError.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  opts: SafetensorsOptions = {},
): { tensors: Map<string, StTensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(bytes, { ...opts, fileSize: bytes.length });
  const tensors = new Map<string, StTensor>();
  for (const e of header.entries) {
    const { size, ctor } = DTYPES[e.dtype];
    const data = viewOrCopy(
      ctor,
      bytes,
      header.dataOffset + e.begin,
      (e.end - e.begin) / size,
      !hostIsLittleEndian && size > 1,
    );
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata: header.metadata };
}

/** Reads and parses a safetensors file; errors name the path (or `opts.name`). */
export async function readSafetensors(
  file: string,
  opts: SafetensorsOptions = {},
): Promise<{ tensors: Map<string, StTensor>; metadata: Record<string, string> }> {
  const bytes = await readFile(file);
  return parseSafetensors(bytes, { ...opts, name: opts.name ?? file });
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The header and the tensors' bytes, in file order. */
function encodeParts(
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const list: Array<[string, StTensor]> = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of list) {
    const where = `safetensors: tensor ${showKey(name)}`;
    if (typeof name !== "string") throw new TypeError(`safetensors: tensor names must be strings`);
    if (name === "__metadata__") throw new TypeError(`${where}: the name __metadata__ is reserved`);
    if (t === null || typeof t !== "object") throw new TypeError(`${where}: not a tensor`);
    if (!isStDtype(t.dtype)) throw new TypeError(`${where}: unknown dtype ${show(t.dtype)}`);
    const { ctor } = DTYPES[t.dtype];
    if (!(t.data instanceof ctor))
      throw new TypeError(
        `${where}: dtype ${t.dtype} needs a ${ctor.name}, got ` +
          `${(t.data as object)?.constructor?.name ?? typeof t.data}`,
      );
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new RangeError(`${where}: shape ${show(t.shape)} must be non-negative integers`);
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length)
      throw new RangeError(
        `${where}: shape ${showShape(t.shape)} holds ${count} elements but data has ${t.data.length}`,
      );
  }
  const seen = new Set<string>();
  for (const [name] of list) {
    if (seen.has(name)) throw new TypeError(`safetensors: tensor ${showKey(name)} given twice`);
    seen.add(name);
  }
  // Largest item size first, then by name (UTF-8 byte order, as the Rust writer), so each tensor
  // starts at a multiple of its own item size and the layout is deterministic.
  list.sort(([an, at], [bn, bt]) => DTYPES[bt.dtype].size - DTYPES[at.dtype].size || compareUtf8(an, bn));
  const fields: string[] = [];
  if (metadata !== undefined) {
    const pairs = Object.entries(metadata);
    for (const [k, v] of pairs)
      if (typeof v !== "string")
        throw new TypeError(`safetensors: metadata ${showKey(k)} must be a string, got ${show(v)}`);
    pairs.sort(([a], [b]) => compareUtf8(a, b));
    fields.push(`"__metadata__":{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of list) {
    const bytes = bytesOf(t.data);
    const end = offset + bytes.length;
    fields.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
    if (hostIsLittleEndian || DTYPES[t.dtype].size === 1) chunks.push(bytes);
    else {
      const swapped = bytes.slice();
      for (let i = 0, s = DTYPES[t.dtype].size; i < swapped.length; i += s) swapped.subarray(i, i + s).reverse();
      chunks.push(swapped);
    }
  }
  let json = Buffer.from(`{${fields.join(",")}}`, "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(head, 8);
  return [head, ...chunks];
}

/**
 * Encodes tensors (and optional string metadata) as a safetensors file. The header is padded with
 * spaces to a multiple of 8 bytes; tensors are laid out largest item size first, then by name, so
 * every tensor is aligned to its item size and equal inputs give identical bytes.
 */
export function encodeSafetensors(
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata?: Record<string, string>,
): Buffer {
  return Buffer.concat(encodeParts(tensors, metadata));
}

/** Writes a safetensors file atomically (temporary file, fsync, rename); a failure leaves an
 * existing file untouched. */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, StTensor> | Record<string, StTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await atomicWriteFile(file, encodeParts(tensors, metadata));
}
