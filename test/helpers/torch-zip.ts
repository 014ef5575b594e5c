/**
 * Test helper: crafts `torch.save`-style `.pt` files (and malicious ones) without Python.
 *
 * - `makeTorchZip(entries)`: a minimal ZIP writer (stored entries, CRC-32, each entry's data
 *   aligned to 64 bytes with an "FB" padding extra field, as PyTorch's writer does).
 * - A tiny pickle writer (protocol 2, the opcodes `torch.save` emits, with the same memoisation:
 *   BINPUT after every memoisable object, BINGET for repeated strings and globals), with value
 *   classes for tuples, globals, reduces, persistent ids and tensors.
 * - `picklePt(root)` / `makePt(root)`: a pickle whose tensors are
 *   `torch._utils._rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', numel), offset,
 *   size, stride, False, OrderedDict())`, and the zip `archive/data.pkl`, `archive/data/0`, ...,
 *   `archive/version`.
 * - `releasedPt(stateDict)`: the released ViLReF layout `{epoch, step, name, state_dict, optimizer}`
 *   with keys prefixed `module.`.
 * - `maliciousPt(markerPath)`: a `.pt` whose pickle calls `os.system("touch <marker>")` through
 *   GLOBAL + REDUCE. A safe loader must refuse it; the marker file existing means it executed.
 */
import { crc32, deflateRawSync } from "node:zlib";

// ------------------------------------------------------------------------------------------------
// ZIP

export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** Deflate the entry (method 8) instead of storing it; torch.save never does, other ZIP tools may. */
  deflate?: boolean;
  /** Override the sizes and CRC the headers declare (for crafting malformed archives). */
  declare?: { size?: number; crc?: number };
}

export interface ZipOptions {
  /** Align each entry's data to this many bytes (0 or 1: no padding). Default 64, like torch. */
  align?: number;
}

/** A ZIP archive of stored (uncompressed) entries, in the given order. */
export function makeTorchZip(entries: ZipEntry[], opts: ZipOptions = {}): Buffer {
  const align = opts.align ?? 64;
  if (entries.length > 0xffff) throw new RangeError("makeTorchZip: too many entries (no ZIP64)");
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, "utf8");
    const flags = /^[\x20-\x7e]*$/.test(entry.name) ? 0 : 0x0800; // bit 11: UTF-8 name
    const crc = entry.declare?.crc ?? crc32(entry.data) >>> 0;
    const body = entry.deflate ? deflateRawSync(entry.data) : entry.data;
    const size = entry.declare?.size ?? entry.data.length;
    const stored = body.length;
    const method = entry.deflate ? 8 : 0;
    if (size > 0xfffffffe || offset > 0xfffffffe) throw new RangeError("makeTorchZip: entry too large (no ZIP64)");
    let extraLen = 0;
    if (align > 1) {
      const unpadded = offset + 30 + name.length;
      extraLen = (align - (unpadded % align)) % align;
      if (extraLen > 0 && extraLen < 4) extraLen += align; // an extra field needs a 4-byte header
    }
    const extra = Buffer.alloc(extraLen, 0x5a); // 'Z' padding, as torch's "FB" field
    if (extraLen > 0) {
      extra.write("FB", 0, "latin1");
      extra.writeUInt16LE(extraLen - 4, 2);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed to extract
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8); // 0 stored, 8 deflated
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date: 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extraLen, 28);
    parts.push(local, name, extra, Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4); // version made by
    cd.writeUInt16LE(20, 6); // version needed
    cd.writeUInt16LE(flags, 8);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt16LE(0, 12);
    cd.writeUInt16LE(0x21, 14);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(stored, 20);
    cd.writeUInt32LE(size, 24);
    cd.writeUInt16LE(name.length, 28);
    // extra 30, comment 32, disk 34, internal attrs 36, external attrs 38: all zero
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    offset += 30 + name.length + extraLen + stored;
  }
  const cdBytes = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cdBytes.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBytes, eocd]);
}

// ------------------------------------------------------------------------------------------------
// Pickle values

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
/** A module-level name, pickled as GLOBAL 'module name'. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}
/** `callable(*args)`, pickled as callable args REDUCE; then optional items (SETITEMS/APPENDS) and state (BUILD). */
export class PyReduce {
  constructor(
    readonly callable: PyValue,
    readonly args: PyTuple,
    readonly extra: { dictItems?: Array<[PyValue, PyValue]>; listItems?: PyValue[]; state?: PyValue } = {},
  ) {}
}
/** A persistent id, pickled as the id then BINPERSID. */
export class PyPersId {
  constructor(readonly id: PyValue) {}
}
/** A Python float (a JS number that is an integer would otherwise pickle as int). */
export class PyFloat {
  constructor(readonly value: number) {}
}
/** A Python dict with arbitrary keys, in order. Plain JS objects and Maps also pickle as dicts. */
export class PyDict {
  constructor(readonly entries: Array<[PyValue, PyValue]>) {}
}
/** Raw opcode bytes, written verbatim (for crafting malformed pickles). */
export class PyRaw {
  constructor(readonly bytes: Uint8Array) {}
}

export type TorchDtype =
  "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

const STORAGE: Record<TorchDtype, { cls: string; size: number }> = {
  float32: { cls: "FloatStorage", size: 4 },
  float64: { cls: "DoubleStorage", size: 8 },
  float16: { cls: "HalfStorage", size: 2 },
  bfloat16: { cls: "BFloat16Storage", size: 2 },
  int64: { cls: "LongStorage", size: 8 },
  int32: { cls: "IntStorage", size: 4 },
  int16: { cls: "ShortStorage", size: 2 },
  int8: { cls: "CharStorage", size: 1 },
  uint8: { cls: "ByteStorage", size: 1 },
  bool: { cls: "BoolStorage", size: 1 },
};

/** A storage: raw little-endian bytes of one dtype. Share one object between tensors to share storage. */
export class TorchStorage {
  readonly bytes: Uint8Array;
  constructor(
    readonly dtype: TorchDtype,
    data: ArrayBufferView,
    readonly location = "cpu",
  ) {
    this.bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (this.bytes.length % STORAGE[dtype].size !== 0)
      throw new RangeError(`TorchStorage: ${this.bytes.length} bytes is not a whole number of ${dtype}`);
  }
  get numel(): number {
    return this.bytes.length / STORAGE[this.dtype].size;
  }
}

/** A tensor over a storage; stride defaults to contiguous, offset to 0 (in elements). */
export class TorchTensor {
  readonly stride: number[];
  constructor(
    readonly storage: TorchStorage,
    readonly shape: number[],
    opts: { stride?: number[]; storageOffset?: number; requiresGrad?: boolean } = {},
  ) {
    this.stride = opts.stride ?? contiguousStride(shape);
    this.storageOffset = opts.storageOffset ?? 0;
    this.requiresGrad = opts.requiresGrad ?? false;
  }
  readonly storageOffset: number;
  readonly requiresGrad: boolean;
}

export function contiguousStride(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = acc;
    acc *= shape[i]!;
  }
  return stride;
}

/** A contiguous tensor with its own storage, from a typed array. */
export function tensor(dtype: TorchDtype, shape: number[], data: ArrayBufferView): TorchTensor {
  return new TorchTensor(new TorchStorage(dtype, data), shape);
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyValue[]
  | PyTuple
  | PyGlobal
  | PyReduce
  | PyPersId
  | PyFloat
  | PyDict
  | PyRaw
  | TorchTensor
  | Map<PyValue, PyValue>
  | { [key: string]: PyValue };

/** Shorthands. */
export const py = {
  tuple: (...items: PyValue[]) => new PyTuple(items),
  global: (module: string, name: string) => new PyGlobal(module, name),
  reduce: (callable: PyValue, ...args: PyValue[]) => new PyReduce(callable, new PyTuple(args)),
  float: (x: number) => new PyFloat(x),
  dict: (entries: Array<[PyValue, PyValue]>) => new PyDict(entries),
  /** collections.OrderedDict(entries), optionally with instance state (e.g. `{ _metadata: ... }`)
   * as torch state_dicts have. */
  orderedDict: (entries: Array<[PyValue, PyValue]>, state?: PyValue) =>
    new PyReduce(
      new PyGlobal("collections", "OrderedDict"),
      new PyTuple([]),
      state === undefined ? { dictItems: entries } : { dictItems: entries, state },
    ),
  raw: (bytes: Uint8Array | number[]) => new PyRaw(Uint8Array.from(bytes)),
};

// ------------------------------------------------------------------------------------------------
// Pickle writer

const OP = {
  PROTO: 0x80,
  STOP: 0x2e,
  MARK: 0x28,
  EMPTY_DICT: 0x7d,
  EMPTY_LIST: 0x5d,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  APPEND: 0x61,
  APPENDS: 0x65,
  BINUNICODE: 0x58,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  LONG1: 0x8a,
  BINFLOAT: 0x47,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  GLOBAL: 0x63,
  REDUCE: 0x52,
  BUILD: 0x62,
  BINPERSID: 0x51,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
} as const;

const BATCH = 1000;

/** Pickles a value with protocol 2, as Python's pickler (and torch.save) lays it out. */
export class Pickler {
  private readonly out: number[] = [];
  private readonly memo = new Map<unknown, number>();
  /** Storages in order of first appearance; their keys are "0", "1", ... */
  readonly storages = new Map<TorchStorage, string>();

  dump(value: PyValue): Uint8Array {
    this.out.length = 0;
    this.out.push(OP.PROTO, 2);
    this.save(value);
    this.out.push(OP.STOP);
    return Uint8Array.from(this.out);
  }

  private bytes(b: Uint8Array | number[]): void {
    for (const x of b) this.out.push(x);
  }

  private u32(n: number): void {
    this.out.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }

  /** BINGET if `key` was memoised; otherwise false. */
  private get(key: unknown): boolean {
    const idx = this.memo.get(key);
    if (idx === undefined) return false;
    if (idx < 256) this.out.push(OP.BINGET, idx);
    else {
      this.out.push(OP.LONG_BINGET);
      this.u32(idx);
    }
    return true;
  }

  private put(key: unknown): void {
    const idx = this.memo.size;
    this.memo.set(key, idx);
    if (idx < 256) this.out.push(OP.BINPUT, idx);
    else {
      this.out.push(OP.LONG_BINPUT);
      this.u32(idx);
    }
  }

  private int(n: number | bigint): void {
    const b = BigInt(n);
    if (b >= 0n && b <= 0xffn) this.out.push(OP.BININT1, Number(b));
    else if (b >= 0n && b <= 0xffffn) this.out.push(OP.BININT2, Number(b) & 0xff, Number(b) >> 8);
    else if (b >= -0x80000000n && b <= 0x7fffffffn) {
      this.out.push(OP.BININT);
      this.u32(Number(BigInt.asUintN(32, b)));
    } else {
      // LONG1: little-endian two's complement, shortest form.
      const bytes: number[] = [];
      let x = b;
      for (;;) {
        bytes.push(Number(BigInt.asUintN(8, x)));
        x >>= 8n;
        const last = bytes[bytes.length - 1]!;
        if ((x === 0n && (last & 0x80) === 0) || (x === -1n && (last & 0x80) !== 0)) break;
      }
      this.out.push(OP.LONG1, bytes.length, ...bytes);
    }
  }

  private setItems(items: Array<[PyValue, PyValue]>): void {
    for (let i = 0; i < items.length; i += BATCH) {
      const batch = items.slice(i, i + BATCH);
      if (batch.length === 1) {
        this.save(batch[0]![0]);
        this.save(batch[0]![1]);
        this.out.push(OP.SETITEM);
      } else {
        this.out.push(OP.MARK);
        for (const [k, v] of batch) {
          this.save(k);
          this.save(v);
        }
        this.out.push(OP.SETITEMS);
      }
    }
  }

  private appends(items: PyValue[]): void {
    for (let i = 0; i < items.length; i += BATCH) {
      const batch = items.slice(i, i + BATCH);
      if (batch.length === 1) {
        this.save(batch[0]!);
        this.out.push(OP.APPEND);
      } else {
        this.out.push(OP.MARK);
        for (const v of batch) this.save(v);
        this.out.push(OP.APPENDS);
      }
    }
  }

  private tuple(items: PyValue[], memoKey: unknown): void {
    if (items.length === 0) {
      this.out.push(OP.EMPTY_TUPLE);
      return;
    }
    if (this.get(memoKey)) return;
    if (items.length <= 3) {
      for (const x of items) this.save(x);
      this.out.push([OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][items.length - 1]!);
    } else {
      this.out.push(OP.MARK);
      for (const x of items) this.save(x);
      this.out.push(OP.TUPLE);
    }
    this.put(memoKey);
  }

  private save(v: PyValue): void {
    if (v === null) this.out.push(OP.NONE);
    else if (v === true) this.out.push(OP.NEWTRUE);
    else if (v === false) this.out.push(OP.NEWFALSE);
    else if (typeof v === "bigint") this.int(v);
    else if (typeof v === "number") {
      if (Number.isInteger(v) && !Object.is(v, -0)) this.int(v);
      else this.float(v);
    } else if (typeof v === "string") {
      const key = `s:${v}`;
      if (this.get(key)) return;
      const b = Buffer.from(v, "utf8");
      this.out.push(OP.BINUNICODE);
      this.u32(b.length);
      this.bytes(b);
      this.put(key);
    } else if (v instanceof PyFloat) this.float(v.value);
    else if (v instanceof PyRaw) this.bytes(v.bytes);
    else if (v instanceof PyGlobal) {
      const key = `g:${v.module}\n${v.name}`;
      if (this.get(key)) return;
      this.out.push(OP.GLOBAL);
      this.bytes(Buffer.from(`${v.module}\n${v.name}\n`, "utf8"));
      this.put(key);
    } else if (v instanceof PyTuple) this.tuple(v.items, v);
    else if (v instanceof PyPersId) {
      this.save(v.id);
      this.out.push(OP.BINPERSID);
    } else if (v instanceof PyReduce) {
      if (this.get(v)) return;
      this.save(v.callable);
      this.tuple(v.args.items, v.args);
      this.out.push(OP.REDUCE);
      this.put(v);
      if (v.extra.listItems) this.appends(v.extra.listItems);
      if (v.extra.dictItems) this.setItems(v.extra.dictItems);
      if (v.extra.state !== undefined) {
        this.save(v.extra.state);
        this.out.push(OP.BUILD);
      }
    } else if (v instanceof TorchTensor) {
      if (this.get(v)) return;
      const s = v.storage;
      let key = this.storages.get(s);
      if (key === undefined) {
        key = String(this.storages.size);
        this.storages.set(s, key);
      }
      this.save(new PyGlobal("torch._utils", "_rebuild_tensor_v2"));
      this.tuple(
        [
          new PyPersId(new PyTuple(["storage", new PyGlobal("torch", STORAGE[s.dtype].cls), key, s.location, s.numel])),
          v.storageOffset,
          new PyTuple(v.shape),
          new PyTuple(v.stride),
          v.requiresGrad,
          new PyReduce(new PyGlobal("collections", "OrderedDict"), new PyTuple([])),
        ],
        {},
      );
      this.out.push(OP.REDUCE);
      this.put(v);
    } else if (Array.isArray(v)) {
      if (this.get(v)) return;
      this.out.push(OP.EMPTY_LIST);
      this.put(v);
      this.appends(v);
    } else if (v instanceof PyDict || v instanceof Map || typeof v === "object") {
      if (this.get(v)) return;
      this.out.push(OP.EMPTY_DICT);
      this.put(v);
      const items: Array<[PyValue, PyValue]> =
        v instanceof PyDict ? v.entries : v instanceof Map ? [...v.entries()] : Object.entries(v);
      this.setItems(items);
    } else throw new TypeError(`Pickler: cannot pickle ${typeof v}`);
  }

  private float(x: number): void {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(x);
    this.out.push(OP.BINFLOAT);
    this.bytes(b);
  }
}

/** Pickles `root` as torch.save does; returns the pickle and the storages (key → bytes) it references. */
export function picklePt(root: PyValue): { pickle: Uint8Array; storages: Array<{ key: string; bytes: Uint8Array }> } {
  const p = new Pickler();
  const pickle = p.dump(root);
  return { pickle, storages: [...p.storages.entries()].map(([s, key]) => ({ key, bytes: s.bytes })) };
}

export interface PtOptions extends ZipOptions {
  /** Top-level folder of the archive; torch uses the file's stem ("archive" by default). */
  prefix?: string;
  /** Also write `<prefix>/byteorder` = "little", as torch ≥ 2.1 does. Default false (as the fixtures). */
  byteorder?: boolean;
  /** Contents of `<prefix>/version`. Default "3\n". */
  version?: string;
}

/** The zip entries of a torch.save file for `root`: data.pkl, [byteorder], data/<key>..., version. */
export function ptEntries(root: PyValue, opts: PtOptions = {}): ZipEntry[] {
  const prefix = opts.prefix ?? "archive";
  const { pickle, storages } = picklePt(root);
  const entries: ZipEntry[] = [{ name: `${prefix}/data.pkl`, data: pickle }];
  if (opts.byteorder) entries.push({ name: `${prefix}/byteorder`, data: Buffer.from("little") });
  for (const s of storages) entries.push({ name: `${prefix}/data/${s.key}`, data: s.bytes });
  entries.push({ name: `${prefix}/version`, data: Buffer.from(opts.version ?? "3\n") });
  return entries;
}

/** A `.pt` file (zip) as torch.save(root) writes it. */
export function makePt(root: PyValue, opts: PtOptions = {}): Buffer {
  return makeTorchZip(ptEntries(root, opts), opts);
}

export interface ReleasedPtOptions extends PtOptions {
  epoch?: number;
  step?: number;
  name?: string;
  /** Prefix of every state_dict key (DataParallel's "module."). Default "module.". */
  keyPrefix?: string;
  /** Extra raw values to put in the state_dict (e.g. a malicious one). */
  extra?: Array<[string, PyValue]>;
}

/** A released-ViLReF-style checkpoint: `{epoch, step, name, state_dict: {module.<k>: tensor}, optimizer: {}}`. */
export function releasedPt(
  stateDict: Record<string, TorchTensor> | Map<string, TorchTensor>,
  opts: ReleasedPtOptions = {},
): Buffer {
  const keyPrefix = opts.keyPrefix ?? "module.";
  const items: Array<[PyValue, PyValue]> = (
    stateDict instanceof Map ? [...stateDict.entries()] : Object.entries(stateDict)
  ).map(([k, t]) => [keyPrefix + k, t]);
  for (const [k, v] of opts.extra ?? []) items.push([k, v]);
  const root = py.dict([
    ["epoch", opts.epoch ?? 3],
    ["step", opts.step ?? 120],
    ["name", opts.name ?? "tiny-vit"],
    ["state_dict", py.dict(items)],
    ["optimizer", py.dict([])],
  ]);
  return makePt(root, { ...opts, prefix: opts.prefix ?? "checkpoint" });
}

/** Single-quotes a string for a POSIX shell. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The shell command maliciousPt embeds: `touch '<markerPath>'`. */
export function maliciousCommand(markerPath: string): string {
  return `touch ${shellQuote(markerPath)}`;
}

export interface MaliciousOptions extends PtOptions {
  /** The callable to reference. Default ["os", "system"]. */
  global?: [string, string];
  /** Put the call at the top level instead of inside a checkpoint's state_dict after a real tensor. */
  topLevel?: boolean;
}

/**
 * A `.pt` whose pickle does GLOBAL 'os system' + REDUCE with `touch <markerPath>`: unpickling it with
 * a permissive unpickler creates the marker file. By default the call sits inside an otherwise
 * plausible checkpoint, after a genuine tensor, so a loader meets it mid-stream.
 */
export function maliciousPt(markerPath: string, opts: MaliciousOptions = {}): Buffer {
  const [module, name] = opts.global ?? ["os", "system"];
  const call = new PyReduce(new PyGlobal(module, name), new PyTuple([maliciousCommand(markerPath)]));
  if (opts.topLevel) return makePt(call, opts);
  return releasedPt(
    { "visual.proj": tensor("float32", [2, 2], new Float32Array([1, 2, 3, 4])) },
    { ...opts, extra: [["module.payload", call]] },
  );
}
