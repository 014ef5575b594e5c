/**
 * NumPy `.npy` files, versions 1.0, 2.0 and 3.0
 * (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
 *
 * Reading accepts little- and big-endian data and Fortran order and always returns little-endian
 * (native), C-order data. Object arrays (pickles) and structured dtypes are refused: nothing in a
 * file is ever executed. Writing produces the bytes `numpy.save` produces for the same array.
 */
import { open, readFile } from "node:fs/promises";
import { atomicWriteFile, byteswapInPlace, bytesOf, hostIsLittleEndian, viewOrCopy } from "./bytes.js";

export type NpyDtype = "float32" | "float64" | "float16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  /** C-order, native byte order. float16 is raw IEEE binary16 bits; bool is one byte per element (0 or 1). */
  data: Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

/** A malformed or unsupported `.npy` file; the message names the array and what is wrong. */
export class NpyError extends Error {
  override name = "NpyError";
}

interface DtypeInfo {
  kind: "f" | "i" | "u" | "b";
  size: number;
  ctor: {
    new (buffer: ArrayBufferLike, byteOffset: number, length: number): NpyArray["data"];
    BYTES_PER_ELEMENT: number;
  };
}

const DTYPES: Record<NpyDtype, DtypeInfo> = {
  float32: { kind: "f", size: 4, ctor: Float32Array },
  float64: { kind: "f", size: 8, ctor: Float64Array },
  float16: { kind: "f", size: 2, ctor: Uint16Array },
  int64: { kind: "i", size: 8, ctor: BigInt64Array },
  int32: { kind: "i", size: 4, ctor: Int32Array },
  int16: { kind: "i", size: 2, ctor: Int16Array },
  int8: { kind: "i", size: 1, ctor: Int8Array },
  uint8: { kind: "u", size: 1, ctor: Uint8Array },
  bool: { kind: "b", size: 1, ctor: Uint8Array },
};

/** Item size in bytes of an npy dtype. */
export function npyItemSize(dtype: NpyDtype): number {
  return DTYPES[dtype].size;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const GROWTH_AXIS_MAX_DIGITS = 21;
const ARRAY_ALIGN = 64;

// ---------------------------------------------------------------------------------------------
// The header: a Python literal (dict of str -> str | bool | tuple of int), parsed without eval.

type PyLit = string | boolean | null | number | PyLit[] | { tuple: PyLit[] } | Map<string, PyLit>;

class LiteralParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly fail: (msg: string) => never,
  ) {}

  parseTop(): PyLit {
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length)
      this.fail(`unexpected ${JSON.stringify(this.s.slice(this.i, this.i + 10))} after the header dict`);
    return v;
  }

  private ws(): void {
    while (this.i < this.s.length && /[ \t\r\n]/.test(this.s[this.i]!)) this.i++;
  }

  private value(depth: number): PyLit {
    if (depth > 32) this.fail("header nests too deeply");
    this.ws();
    const c = this.s[this.i];
    if (c === undefined) this.fail("header ends early");
    if (c === "'" || c === '"') return this.str();
    if (c === "{") return this.dict(depth);
    if (c === "(" || c === "[") return this.seq(depth);
    const word = /^(True|False|None)\b/.exec(this.s.slice(this.i, this.i + 6));
    if (word) {
      this.i += word[1]!.length;
      return word[1] === "True" ? true : word[1] === "False" ? false : null;
    }
    const num = /^[-+]?\d+[lL]?/.exec(this.s.slice(this.i, this.i + 40));
    if (num) {
      this.i += num[0].length;
      const digits = num[0].replace(/[lL]$/, "");
      const n = Number(digits);
      if (!Number.isSafeInteger(n)) this.fail(`integer ${digits} is out of range`);
      return n;
    }
    this.fail(`unexpected ${JSON.stringify(this.s.slice(this.i, this.i + 10))} in the header`);
  }

  private str(): string {
    const q = this.s[this.i++]!;
    let out = "";
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) this.fail("unterminated string in the header");
      if (c === q) return out;
      if (c === "\\") {
        const e = this.s[this.i++];
        const map: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0" };
        if (e === undefined || !(e in map)) this.fail("unsupported escape in a header string");
        out += map[e]!;
      } else out += c;
    }
  }

  private dict(depth: number): Map<string, PyLit> {
    this.i++;
    const m = new Map<string, PyLit>();
    for (;;) {
      this.ws();
      if (this.s[this.i] === "}") {
        this.i++;
        return m;
      }
      const key = this.value(depth + 1);
      if (typeof key !== "string") this.fail("header dict keys must be strings");
      this.ws();
      if (this.s[this.i] !== ":") this.fail(`expected ':' after key '${key}'`);
      this.i++;
      const v = this.value(depth + 1);
      if (m.has(key)) this.fail(`duplicate key '${key}'`);
      m.set(key, v);
      this.ws();
      if (this.s[this.i] === ",") this.i++;
      else if (this.s[this.i] !== "}") this.fail("expected ',' or '}' in the header dict");
    }
  }

  private seq(depth: number): PyLit {
    const open = this.s[this.i++]!;
    const close = open === "(" ? ")" : "]";
    const items: PyLit[] = [];
    let sawComma = false;
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        if (open === "[") return items;
        // (x) is just x in Python; (x,) and () are tuples.
        if (items.length === 1 && !sawComma) return items[0]!;
        return { tuple: items };
      }
      items.push(this.value(depth + 1));
      this.ws();
      if (this.s[this.i] === ",") {
        this.i++;
        sawComma = true;
      } else if (this.s[this.i] !== close) this.fail(`expected ',' or '${close}' in the header`);
    }
  }
}

function descrToDtype(descr: string, fail: (msg: string) => never): { dtype: NpyDtype; bigEndian: boolean } {
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (descr.includes("O")) fail(`descr '${descr}' is an object array (pickled Python objects), which is not supported`);
  if (!m) fail(`unsupported descr '${descr}'`);
  const [, order, kind, sizeText] = m;
  const size = Number(sizeText);
  let dtype: NpyDtype | undefined;
  if (kind === "f") dtype = size === 2 ? "float16" : size === 4 ? "float32" : size === 8 ? "float64" : undefined;
  else if (kind === "i")
    dtype = size === 1 ? "int8" : size === 2 ? "int16" : size === 4 ? "int32" : size === 8 ? "int64" : undefined;
  else if (kind === "u") dtype = size === 1 ? "uint8" : undefined;
  else if (kind === "b") dtype = size === 1 ? "bool" : undefined;
  if (dtype === undefined) fail(`unsupported descr '${descr}' (supported: ${Object.keys(DTYPES).join(", ")})`);
  return { dtype, bigEndian: order === ">" };
}

function checkedProduct(shape: readonly number[], fail: (msg: string) => never): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) fail(`shape (${shape.join(", ")}) has too many elements`);
  }
  return n;
}

/** Reorders Fortran-order elements (`src`, raw bytes) into C order for `shape`. */
function fortranToC(src: Uint8Array, shape: readonly number[], itemSize: number): Uint8Array {
  const n = src.length / itemSize;
  const out = new Uint8Array(src.length);
  const aligned = new Uint8Array(src.length);
  aligned.set(src);
  const view = <T extends Uint8Array | Uint16Array | Uint32Array | BigUint64Array>(
    c: { new (b: ArrayBufferLike, o: number, l: number): T },
    buf: Uint8Array,
  ): T => new c(buf.buffer, buf.byteOffset, n);
  const pick = (b: Uint8Array): Uint8Array | Uint16Array | Uint32Array | BigUint64Array =>
    itemSize === 1
      ? b
      : itemSize === 2
        ? view(Uint16Array, b)
        : itemSize === 4
          ? view(Uint32Array, b)
          : view(BigUint64Array, b);
  const s = pick(aligned);
  const d = pick(out);
  const nd = shape.length;
  if (n === 0) return out;
  const fstride: number[] = new Array<number>(nd);
  let acc = 1;
  for (let k = 0; k < nd; k++) {
    fstride[k] = acc;
    acc *= shape[k]!;
  }
  const idx = new Array<number>(nd).fill(0);
  const last = nd - 1;
  const lastDim = shape[last]!;
  const lastStride = fstride[last]!;
  let f = 0;
  for (let o = 0; o < n;) {
    // Innermost (last) dimension in one loop; integer element copies keep every bit.
    for (let j = 0, p = f; j < lastDim; j++, p += lastStride) (d as Uint32Array)[o++] = (s as Uint32Array)[p]!;
    // Carry into the outer dimensions.
    let k = last - 1;
    while (k >= 0) {
      idx[k]!++;
      f += fstride[k]!;
      if (idx[k]! < shape[k]!) break;
      f -= shape[k]! * fstride[k]!;
      idx[k] = 0;
      k--;
    }
    if (k < 0) break;
  }
  return out;
}

/** A parsed `.npy` header: what the data is and where it starts. */
export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  fortranOrder: boolean;
  bigEndian: boolean;
  /** Byte offset of the data in the file. */
  dataOffset: number;
  /** Bytes of data the shape needs. */
  dataBytes: number;
}

/**
 * Parses the header of `.npy` bytes (`bytes` holds at least the header; `fileSize`, when given, is
 * the whole file's size and must match the shape). Errors name the array.
 */
export function parseNpyHeader(bytes: Uint8Array, name = "array", fileSize?: number): NpyHeader {
  const fail = (msg: string): never => {
    throw new NpyError(`${name}: ${msg}`);
  };
  const size = fileSize ?? bytes.length;
  if (size < 10 || bytes.length < 10) fail(`${size} bytes is too short for a .npy file`);
  for (let i = 0; i < MAGIC.length; i++)
    if (bytes[i] !== MAGIC[i]) fail("not a .npy file (bad magic; expected \\x93NUMPY)");
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (minor !== 0 || major < 1 || major > 3) fail(`unsupported .npy format version ${major}.${minor}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    headerStart = 10;
  } else {
    if (bytes.length < 12) fail(`${bytes.length} bytes is too short for a version ${major}.0 .npy file`);
    headerLen = dv.getUint32(8, true);
    headerStart = 12;
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > size) fail(`header length ${headerLen} runs past the end of the file (${size} bytes)`);
  if (dataStart > bytes.length) fail(`header length ${headerLen} is larger than the bytes read`);
  let header: string;
  try {
    header = new TextDecoder(major === 3 ? "utf-8" : "latin1", { fatal: true }).decode(
      bytes.subarray(headerStart, dataStart),
    );
  } catch {
    fail("header is not valid UTF-8");
  }
  const lit = new LiteralParser(header!, (msg) => fail(`bad header: ${msg}`)).parseTop();
  if (!(lit instanceof Map)) fail("bad header: not a dict");
  const dict = lit as Map<string, PyLit>;
  const keys = [...dict.keys()].sort();
  if (keys.join(",") !== "descr,fortran_order,shape")
    fail(`bad header: keys are {${keys.join(", ")}}, expected {descr, fortran_order, shape}`);
  const descr = dict.get("descr");
  if (typeof descr !== "string") fail(`bad header: descr is not a string (structured dtypes are not supported)`);
  const fortran = dict.get("fortran_order");
  if (typeof fortran !== "boolean") fail("bad header: fortran_order is not True or False");
  const shapeLit = dict.get("shape");
  if (shapeLit === null || typeof shapeLit !== "object" || !("tuple" in shapeLit))
    fail("bad header: shape is not a tuple");
  const shape = (shapeLit as { tuple: PyLit[] }).tuple.map((d, i) => {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)
      fail(`bad header: shape[${i}] is ${JSON.stringify(d)}, not a non-negative integer`);
    return d as number;
  });
  const { dtype, bigEndian } = descrToDtype(descr as string, fail);
  const count = checkedProduct(shape, fail);
  const need = count * DTYPES[dtype].size;
  if (!Number.isSafeInteger(need)) fail(`shape (${shape.join(", ")}) is too large`);
  const have = size - dataStart;
  if (have !== need) fail(`data holds ${have} bytes but shape (${shape.join(", ")}) of ${dtype} needs ${need}`);
  return { dtype, shape, fortranOrder: fortran as boolean, bigEndian, dataOffset: dataStart, dataBytes: need };
}

/**
 * Parses `.npy` bytes. The result's data is a zero-copy view of `bytes` when the data is aligned,
 * little-endian and C-order; otherwise a copy.
 */
export function parseNpy(bytes: Uint8Array, name = "array"): NpyArray {
  const h = parseNpyHeader(bytes, name);
  const { dtype, shape } = h;
  const info = DTYPES[dtype];
  const dataStart = h.dataOffset;
  const count = h.dataBytes / info.size;
  const need = h.dataBytes;
  const swap = info.size > 1 && h.bigEndian === hostIsLittleEndian;
  const trivialOrder = shape.filter((d) => d !== 1).length <= 1;
  if (!h.fortranOrder || trivialOrder)
    return { dtype, shape, data: viewOrCopy(info.ctor, bytes, dataStart, count, swap) };
  const raw = bytes.slice(dataStart, dataStart + need);
  if (swap) byteswapInPlace(raw, info.size);
  const c = fortranToC(raw, shape, info.size);
  return { dtype, shape, data: new info.ctor(c.buffer, 0, count) };
}

/** Reads only the header of a `.npy` file (the data is checked against the file's size, not read). */
export async function readNpyHeader(file: string): Promise<NpyHeader> {
  const fh = await open(file, "r");
  try {
    const { size } = await fh.stat();
    const head = new Uint8Array(Math.min(size, 12));
    await fh.read(head, 0, head.length, 0);
    let len = Math.min(size, 65536);
    if (head.length >= 12 && head[6]! >= 2) len = Math.min(size, 12 + new DataView(head.buffer).getUint32(8, true));
    else if (head.length >= 10) len = Math.min(size, 10 + new DataView(head.buffer).getUint16(8, true));
    const bytes = new Uint8Array(len);
    await fh.read(bytes, 0, len, 0);
    return parseNpyHeader(bytes, file, size);
  } finally {
    await fh.close();
  }
}

/**
 * Rows [start, end) of a C-order `.npy` file (along the first axis), read from disk without the
 * rest: a large array is read a slice at a time. Native byte order, as readNpy returns.
 */
export async function readNpyRows(file: string, header: NpyHeader, start: number, end: number): Promise<NpyArray> {
  const { dtype, shape } = header;
  const info = DTYPES[dtype];
  const rows = shape[0] ?? 1;
  if (
    shape.length === 0 ||
    !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= rows)
  )
    throw new RangeError(`${file}: rows ${start}..${end} are outside its ${rows} rows`);
  if (header.fortranOrder && shape.filter((d) => d !== 1).length > 1)
    throw new NpyError(`${file}: Fortran-order data cannot be read a slice of rows at a time`);
  const rowItems = shape.slice(1).reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array((end - start) * rowItems * info.size);
  const fh = await open(file, "r");
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await fh.read(
        bytes,
        done,
        bytes.length - done,
        header.dataOffset + start * rowItems * info.size + done,
      );
      if (bytesRead === 0) throw new NpyError(`${file}: the file ended early`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const swap = info.size > 1 && header.bigEndian === hostIsLittleEndian;
  return {
    dtype,
    shape: [end - start, ...shape.slice(1)],
    data: viewOrCopy(info.ctor, bytes, 0, (end - start) * rowItems, swap),
  };
}

/** Reads and parses a `.npy` file; errors name the file. */
export async function readNpy(file: string): Promise<NpyArray> {
  const bytes = await readFile(file);
  return parseNpy(bytes, file);
}

function descrOf(dtype: NpyDtype): string {
  const info = DTYPES[dtype];
  const order = info.size === 1 ? "|" : hostIsLittleEndian ? "<" : ">";
  return `${order}${info.kind}${info.size}`;
}

function checkArray(arr: NpyArray): DtypeInfo {
  const info = DTYPES[arr.dtype];
  if (!info) throw new TypeError(`npy: unknown dtype ${JSON.stringify(arr.dtype)}`);
  if (!(arr.data instanceof info.ctor))
    throw new TypeError(
      `npy: dtype ${arr.dtype} needs a ${info.ctor.name}, got ${arr.data?.constructor?.name ?? typeof arr.data}`,
    );
  if (!Array.isArray(arr.shape) || arr.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw new RangeError(`npy: shape [${String(arr.shape)}] must be non-negative integers`);
  let n = 1;
  for (const d of arr.shape) n *= d;
  if (n !== arr.data.length)
    throw new RangeError(`npy: shape [${arr.shape.join(", ")}] holds ${n} elements but data has ${arr.data.length}`);
  return info;
}

/** The header bytes (magic, version, length, padded dict) numpy writes for this array. */
function encodeHeader(dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  const shapeRepr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let dict = `{'descr': '${descrOf(dtype)}', 'fortran_order': False, 'shape': ${shapeRepr}, }`;
  if (shape.length > 0) dict += " ".repeat(GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length);
  const hlen = dict.length + 1; // the trailing '\n'
  for (const [major, lenBytes] of [
    [1, 2],
    [2, 4],
  ] as const) {
    const padlen = ARRAY_ALIGN - ((MAGIC.length + 2 + lenBytes + hlen) % ARRAY_ALIGN);
    const total = hlen + padlen;
    if (major === 1 && total > 0xffff) continue;
    const out = new Uint8Array(MAGIC.length + 2 + lenBytes + total);
    out.set(MAGIC, 0);
    out[6] = major;
    out[7] = 0;
    const dv = new DataView(out.buffer);
    if (lenBytes === 2) dv.setUint16(8, total, true);
    else dv.setUint32(8, total, true);
    const start = MAGIC.length + 2 + lenBytes;
    for (let i = 0; i < dict.length; i++) out[start + i] = dict.charCodeAt(i);
    out.fill(0x20, start + dict.length, out.length - 1);
    out[out.length - 1] = 0x0a;
    return out;
  }
  throw new RangeError("npy: header too large");
}

/** Encodes an array as `.npy` bytes (version 1.0, or 2.0 for huge headers), byte-identical to `numpy.save`. */
export function encodeNpy(arr: NpyArray): Uint8Array {
  checkArray(arr);
  const header = encodeHeader(arr.dtype, arr.shape);
  const out = new Uint8Array(header.length + arr.data.byteLength);
  out.set(header, 0);
  out.set(bytesOf(arr.data), header.length);
  return out;
}

/** Writes `arr` to `file` atomically (temporary file, fsync, rename). */
export async function writeNpy(file: string, arr: NpyArray): Promise<void> {
  checkArray(arr);
  await atomicWriteFile(file, [encodeHeader(arr.dtype, arr.shape), bytesOf(arr.data)]);
}

/**
 * An NpyArray from `{ data, shape }`, the dtype inferred from the typed array: Float32Array → float32,
 * Float64Array → float64, Uint16Array → float16 (raw bits), BigInt64Array → int64, Int32Array → int32,
 * Int16Array → int16, Int8Array → int8, Uint8Array → uint8 (pass `dtype: "bool"` for booleans).
 */
export function npyFromTensor(
  tensor: { data: NpyArray["data"]; shape: readonly number[] },
  dtype?: NpyDtype,
): NpyArray {
  const d = tensor.data;
  const inferred: NpyDtype | undefined =
    d instanceof Float32Array
      ? "float32"
      : d instanceof Float64Array
        ? "float64"
        : d instanceof Uint16Array
          ? "float16"
          : d instanceof BigInt64Array
            ? "int64"
            : d instanceof Int32Array
              ? "int32"
              : d instanceof Int16Array
                ? "int16"
                : d instanceof Int8Array
                  ? "int8"
                  : d instanceof Uint8Array
                    ? "uint8"
                    : undefined;
  if (inferred === undefined)
    throw new TypeError(`npyFromTensor: unsupported data type ${(d as object)?.constructor?.name ?? typeof d}`);
  const arr: NpyArray = { dtype: dtype ?? inferred, shape: [...tensor.shape], data: d };
  checkArray(arr);
  return arr;
}
