/**
 * `.pt` checkpoints (native importTorchCheckpoint): valid released-style files of random tensors
 * (every dtype, shared storages, transposed views, offsets; the result must equal the views read in
 * JavaScript), and malformed ones: tensor views outside their storage, records of the wrong size,
 * CRC flips, truncations, deflate bombs and lying sizes, deep or cyclic pickles, forbidden globals,
 * garbage (all must fail, naming the culprit); ZIP header flips (a success must equal the original),
 * pickle havoc and random opcode programs (either outcome, no crash).
 */
import { readFileSync } from "node:fs";
import type { Rng } from "../../../lib/data/rng.js";
import { native } from "../../../lib/native.js";
import { sharedPath } from "../../helpers/shared.js";
import {
  makeTorchZip,
  picklePt,
  ptEntries,
  py,
  PyGlobal,
  PyReduce,
  PyTuple,
  releasedPt,
  TorchStorage,
  TorchTensor,
  type PyValue,
  type TorchDtype,
  type ZipEntry,
} from "../../helpers/torch-zip.js";
import { flipBits, havoc, randomBytes, type FuzzCase, type Target } from "../case.js";

const DTYPES: TorchDtype[] = [
  "float32",
  "float64",
  "float16",
  "bfloat16",
  "int64",
  "int32",
  "int16",
  "int8",
  "uint8",
  "bool",
];

/** float32 → IEEE half bits, for the small integers the generator uses (exact). */
function halfBits(x: number): number {
  if (x === 0) return 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  const e = Math.floor(Math.log2(a));
  const mant = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | mant;
}

function bf16Bits(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0]! >>> 16;
}

/** The value of storage element i (small, exact in every dtype). */
function valueAt(dtype: TorchDtype, i: number): number {
  if (dtype === "bool") return i % 3 === 0 ? 1 : 0;
  if (dtype === "uint8") return (i * 7) % 100;
  return ((i * 7) % 61) - 30;
}

function storageArray(dtype: TorchDtype, n: number): ArrayBufferView {
  const v = Array.from({ length: n }, (_, i) => valueAt(dtype, i));
  switch (dtype) {
    case "float32":
      return new Float32Array(v);
    case "float64":
      return new Float64Array(v);
    case "float16":
      return new Uint16Array(v.map(halfBits));
    case "bfloat16":
      return new Uint16Array(v.map(bf16Bits));
    case "int64":
      return new BigInt64Array(v.map(BigInt));
    case "int32":
      return new Int32Array(v);
    case "int16":
      return new Int16Array(v);
    case "int8":
      return new Int8Array(v);
    default:
      return new Uint8Array(v);
  }
}

interface View {
  key: string;
  dtype: TorchDtype;
  storage: TorchStorage;
  shape: number[];
  stride: number[];
  offset: number;
}

/** A random valid view: contiguous or permuted strides, an offset that fits, slack after it. */
function randomView(rng: Rng, key: string, shared?: View): View {
  const dims = rng.int(0, 3);
  const shape = Array.from({ length: dims }, () => (rng.chance(0.05) ? 0 : rng.int(1, 4)));
  const order = shape.map((_, i) => i);
  if (rng.chance(0.4)) order.reverse();
  const stride = new Array<number>(dims).fill(0);
  let acc = 1;
  for (let k = dims - 1; k >= 0; k--) {
    stride[order[k]!] = acc;
    acc *= Math.max(shape[order[k]!]!, 1);
  }
  const extent = shape.includes(0) ? 0 : 1 + shape.reduce((a, s, i) => a + (s - 1) * stride[i]!, 0);
  if (shared && shared.storage.numel >= extent) {
    const offset = rng.int(0, shared.storage.numel - extent);
    return { key, dtype: shared.dtype, storage: shared.storage, shape, stride, offset };
  }
  const dtype = rng.pick(DTYPES);
  const offset = rng.int(0, 3);
  const storage = new TorchStorage(
    dtype,
    storageArray(dtype, extent + offset + rng.int(0, 3)),
    rng.pick(["cpu", "cuda:0"]),
  );
  return { key, dtype, storage, shape, stride, offset };
}

function randomViews(rng: Rng): View[] {
  const views: View[] = [];
  const n = rng.int(2, 5);
  for (let i = 0; i < n; i++) {
    const shared = views.length && rng.chance(0.3) ? rng.pick(views) : undefined;
    views.push(randomView(rng, `${rng.pick(["visual", "bert", "head"])}.t${i}.weight`, shared));
  }
  return views;
}

/** What the importer must hand back for a view: its elements in row-major order, as JS reads them. */
function expected(v: View): number[] {
  const out: number[] = [];
  const walk = (d: number, at: number) => {
    if (d === v.shape.length) {
      out.push(valueAt(v.dtype, at));
      return;
    }
    for (let i = 0; i < v.shape[d]!; i++) walk(d + 1, at + i * v.stride[d]!);
  };
  if (!v.shape.includes(0)) walk(0, v.offset);
  return out;
}

const tensorOf = (v: View) => new TorchTensor(v.storage, v.shape, { stride: v.stride, storageOffset: v.offset });

function checkResult(views: View[]): (r: unknown) => string {
  return (r) => {
    const tensors = (r as { tensors: Record<string, { data: ArrayLike<number | bigint>; shape: number[] }> }).tensors;
    if (Object.keys(tensors).length !== views.length)
      return `${Object.keys(tensors).length} tensors, want ${views.length}`;
    for (const v of views) {
      const t = tensors[v.key];
      if (!t) return `no tensor ${v.key}`;
      if (JSON.stringify(t.shape) !== JSON.stringify(v.shape)) return `${v.key}: shape ${t.shape}, want ${v.shape}`;
      const got = Array.from(t.data, Number);
      const want = expected(v);
      if (got.length !== want.length || got.some((x, i) => x !== want[i])) return `${v.key}: values differ`;
    }
    return "";
  };
}

function sanity(r: unknown): string {
  const tensors = (r as { tensors: Record<string, { data: ArrayLike<unknown>; shape: number[] }> }).tensors;
  for (const [k, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) return `${k}: ${t.data.length} elements for shape [${t.shape}]`;
  }
  return "";
}

const released = (views: View[]) => releasedPt(new Map(views.map((v) => [v.key, tensorOf(v)])));

/** Data regions [start, end) of each entry of a ZIP written by makeTorchZip. */
function regions(zip: Uint8Array): Array<{ name: string; start: number; end: number }> {
  const b = Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength);
  const eocd = b.length - 22;
  const out: Array<{ name: string; start: number; end: number }> = [];
  let at = b.readUInt32LE(eocd + 16);
  for (let i = 0; i < b.readUInt16LE(eocd + 10); i++) {
    const n = b.readUInt16LE(at + 28);
    const local = b.readUInt32LE(at + 42);
    const start = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    out.push({ name: b.toString("utf8", at + 46, at + 46 + n), start, end: start + b.readUInt32LE(at + 20) });
    at += 46 + n + b.readUInt16LE(at + 30) + b.readUInt16LE(at + 32);
  }
  return out;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// ---- the generators --------------------------------------------------------------------------

function valid(rng: Rng): FuzzCase {
  const views = randomViews(rng);
  return { kind: "pt/valid", mustFail: false, bytes: released(views), file: "case.pt", check: checkResult(views) };
}

/** A view corrupted one way; big numbers are ≥ 2^56 (LibTorch reads LONG1 of 8 bytes only). */
function badView(rng: Rng): FuzzCase {
  const views = randomViews(rng);
  const v = rng.pick(views);
  const n = v.storage.numel;
  const how = rng.pick([
    "size",
    "offset",
    "negative-offset",
    "negative-stride",
    "negative-size",
    "dims",
    "huge",
    "stride",
  ]);
  // no zero sizes: an empty view is valid wherever it points
  const shape: Array<number | bigint> = v.shape.length ? v.shape.map((d) => Math.max(d, 1)) : [1];
  const stride: Array<number | bigint> = v.stride.length ? [...v.stride] : [1];
  let offset: number | bigint = v.offset;
  if (how === "size") shape[0] = n + rng.int(1, 100);
  else if (how === "offset") offset = n + rng.int(0, 1000);
  else if (how === "negative-offset") offset = -rng.int(1, 1000);
  else if (how === "negative-stride") ((shape[0] = 2), (stride[0] = -rng.int(1, 5)));
  else if (how === "negative-size") shape[0] = -rng.int(1, 5);
  else if (how === "dims") stride.push(1);
  else if (how === "huge") shape[0] = rng.pick([2n ** 62n, 2n ** 56n, 2n ** 63n - 1n]);
  else ((shape[0] = 2), (stride[0] = rng.pick([n, n + 7, 2 ** 30, 2n ** 60n])));
  const t = new TorchTensor(v.storage, shape as number[], {
    stride: stride as number[],
    storageOffset: offset as number,
  });
  const sd = new Map(views.map((x) => [x.key, x === v ? t : tensorOf(x)]));
  return {
    kind: `pt/bad-view/${how}`,
    mustFail: true,
    bytes: releasedPt(sd),
    file: "case.pt",
    culprit: new RegExp(`tensor "module\\.${esc(v.key)}"`),
  };
}

function badRecord(rng: Rng): FuzzCase {
  const views = randomViews(rng).filter((v) => v.storage.numel > 0);
  if (views.length < 2) return valid(rng);
  const entries = ptEntries(
    py.dict([
      ["epoch", 1],
      ["state_dict", py.dict(views.map((v) => [v.key, tensorOf(v)]))],
    ]),
    { prefix: "checkpoint" },
  );
  const records = entries.filter((e) => e.name.includes("/data/"));
  const r = rng.pick(records);
  const len = r.data.length;
  const newLen = rng.chance(0.5) ? rng.int(0, len - 1) : len + rng.int(1, 64);
  r.data = randomBytes(rng, newLen);
  const key = r.name.slice("checkpoint/data/".length);
  return {
    kind: "pt/bad-record",
    mustFail: true,
    bytes: makeTorchZip(entries),
    file: "case.pt",
    culprit: new RegExp(`storage "${esc(key)}"`),
  };
}

let fixtures: Uint8Array[] = [];

function crcFlip(rng: Rng): FuzzCase {
  const zip = rng.chance(0.05) && fixtures.length ? rng.pick(fixtures) : released(randomViews(rng));
  const nonEmpty = regions(zip).filter((r) => r.end > r.start);
  const r = rng.pick(nonEmpty);
  return {
    kind: "pt/crc-flip",
    mustFail: true,
    bytes: flipBits(zip, rng, r.start, r.end),
    file: "case.pt",
    culprit: new RegExp(`entry "${esc(r.name)}": CRC-32 mismatch`),
  };
}

function truncate(rng: Rng): FuzzCase {
  const zip = rng.chance(0.05) && fixtures.length ? rng.pick(fixtures) : released(randomViews(rng));
  return { kind: "pt/truncate", mustFail: true, bytes: zip.subarray(0, rng.int(0, zip.length - 1)), file: "case.pt" };
}

/** Flips outside every entry's data: headers, directory, end record. A success must equal the original. */
function headerFlip(rng: Rng): FuzzCase {
  const views = randomViews(rng);
  const zip = released(views);
  const data = regions(zip);
  let at: number;
  do at = rng.int(0, zip.length - 1);
  while (data.some((r) => at >= r.start && at < r.end));
  const out = Uint8Array.from(zip);
  out[at]! ^= 1 << rng.int(0, 7);
  return { kind: "pt/header-flip", mustFail: false, bytes: out, file: "case.pt", check: checkResult(views) };
}

function bomb(rng: Rng): FuzzCase {
  const views = randomViews(rng).filter((v) => v.storage.numel > 0);
  if (views.length < 2) return valid(rng);
  const entries = ptEntries(
    py.dict([
      ["epoch", 1],
      ["state_dict", py.dict(views.map((v) => [v.key, tensorOf(v)]))],
    ]),
    { prefix: "checkpoint" },
  ).map((e): ZipEntry => (rng.chance(0.5) ? { ...e, deflate: true } : e));
  const records = entries.filter((e) => e.name.includes("/data/"));
  const r = rng.pick(records);
  const how = rng.pick(["over-cap", "liar-longer", "liar-shorter"]);
  const true_ = r.data.length;
  r.deflate = true;
  if (how === "over-cap") r.declare = { size: rng.pick([2 ** 31, 2 ** 32 - 2, 50_000_000]) };
  else if (how === "liar-longer")
    ((r.data = new Uint8Array(true_ + rng.int(1, 1 << 20))), (r.declare = { size: true_ }));
  else ((r.data = new Uint8Array(rng.int(0, true_ - 1))), (r.declare = { size: true_ }));
  return {
    kind: `pt/bomb/${how}`,
    mustFail: true,
    bytes: makeTorchZip(entries),
    file: "case.pt",
    culprit: new RegExp(`entry "${esc(r.name)}"`),
  };
}

function zipOf(pickle: Uint8Array, extra: ZipEntry[] = []): Uint8Array {
  return makeTorchZip([
    { name: "archive/data.pkl", data: pickle },
    ...extra,
    { name: "archive/version", data: Buffer.from("3\n") },
  ]);
}

function deep(rng: Rng): FuzzCase {
  const depth = rng.chance(0.5) ? rng.int(257, 2000) : rng.int(2000, 250_000);
  const how = rng.pick(["mark-list", "tuple1", "appends", "dict", "tuple"]);
  const ops: number[] = [0x80, 2];
  const push = (xs: number[], n: number) => {
    for (let i = 0; i < n; i++) for (const x of xs) ops.push(x);
  };
  if (how === "mark-list") (push([0x28], depth), push([0x6c], depth));
  else if (how === "tuple1") (push([0x4e], 1), push([0x85], depth));
  else if (how === "appends") (push([0x5d, 0x28], depth), push([0x65], depth));
  else if (how === "dict") (push([0x28, 0x4b, 1], depth), ops.push(0x4e), push([0x64], depth));
  else (push([0x28], depth), ops.push(0x4e), push([0x74], depth));
  ops.push(0x2e);
  return {
    kind: `pt/deep/${how}`,
    mustFail: true,
    bytes: zipOf(Uint8Array.from(ops)),
    file: "case.pt",
    culprit: /deeper than 256/,
  };
}

function cycle(rng: Rng): FuzzCase {
  // EMPTY_LIST|EMPTY_DICT, BINPUT 0, MARK, [key], BINGET 0, APPENDS|SETITEMS, STOP
  const dict = rng.chance(0.5);
  const ops = dict
    ? [0x80, 2, 0x7d, 0x71, 0, 0x28, 0x4b, 1, 0x68, 0, 0x75, 0x2e]
    : [0x80, 2, 0x5d, 0x71, 0, 0x28, 0x68, 0, 0x65, 0x2e];
  return {
    kind: "pt/cycle",
    mustFail: true,
    bytes: zipOf(Uint8Array.from(ops)),
    file: "case.pt",
    culprit: /contains itself/,
  };
}

const FORBIDDEN: Array<[string, string]> = [
  ["os", "system"],
  ["posix", "system"],
  ["subprocess", "Popen"],
  ["builtins", "eval"],
  ["builtins", "exec"],
  ["__builtin__", "getattr"],
  ["torch", "load"],
  ["torch._utils", "_rebuild_qtensor"],
  ["torch._utils", "_rebuild_sparse_tensor"],
  ["torch.jit._pickle", "restore_type_tag"],
  ["__main__", "TensorID"],
  ["numpy.core.multiarray", "_reconstruct"],
];

function forbidden(rng: Rng): FuzzCase {
  const [module, name] = rng.pick(FORBIDDEN);
  const call = new PyReduce(new PyGlobal(module, name), new PyTuple(["touch /tmp/vilref-fuzz-pwned"]));
  const views = randomViews(rng);
  const sd = new Map<string, PyValue>(views.map((v) => [v.key, tensorOf(v)]));
  sd.set(rng.pick(["evil", views[0]!.key]), call);
  const root = py.dict([
    ["epoch", 1],
    ["state_dict", py.dict([...sd.entries()])],
  ]);
  const { pickle } = picklePt(root);
  const entries = ptEntries(root).map((e) => (e.name.endsWith("data.pkl") ? { ...e, data: pickle } : e));
  return {
    kind: "pt/forbidden-global",
    mustFail: true,
    bytes: makeTorchZip(entries),
    file: "case.pt",
    culprit: new RegExp(`global ${esc(module)}\\.${esc(name)} is not allowed`),
  };
}

function garbage(rng: Rng): FuzzCase {
  const how = rng.pick(["random", "pk-random", "random-zip"]);
  let bytes: Uint8Array;
  if (how === "random") bytes = randomBytes(rng, rng.int(0, 3000));
  else if (how === "pk-random") bytes = Uint8Array.from([0x50, 0x4b, 3, 4, ...randomBytes(rng, rng.int(0, 3000))]);
  else
    bytes = makeTorchZip(
      Array.from({ length: rng.int(0, 4) }, (_, i) => ({
        name: `${rng.pick(["a", "archive", ""])}/f${i}`,
        data: randomBytes(rng, rng.int(0, 100)),
      })),
    );
  return { kind: `pt/garbage/${how}`, mustFail: true, bytes, file: "case.pt" };
}

const OPS = [
  0x28, 0x2e, 0x4e, 0x88, 0x89, 0x4b, 0x4d, 0x4a, 0x8a, 0x47, 0x58, 0x5d, 0x7d, 0x29, 0x74, 0x6c, 0x64, 0x85, 0x86,
  0x87, 0x65, 0x75, 0x71, 0x72, 0x68, 0x6a, 0x63, 0x52, 0x62, 0x51, 0x61, 0x73, 0x81, 0x30, 0x31, 0x95,
];

/** A random opcode program over the pickle vocabulary (arguments mostly small and plausible). */
function program(rng: Rng): FuzzCase {
  const out: number[] = [0x80, rng.chance(0.95) ? 2 : rng.int(0, 5)];
  const n = rng.int(1, 200);
  const strs = ["storage", "0", "1", "cpu", "cuda:0", "state_dict", "module.w", "epoch"];
  for (let i = 0; i < n; i++) {
    const op = rng.pick(OPS);
    out.push(op);
    if (op === 0x4b || op === 0x71 || op === 0x68) out.push(rng.int(0, 8));
    else if (op === 0x4d) out.push(rng.int(0, 255), rng.int(0, 3));
    else if (op === 0x4a || op === 0x72 || op === 0x6a) out.push(rng.int(0, 8), 0, 0, rng.chance(0.1) ? 0x80 : 0);
    else if (op === 0x8a) out.push(8, ...Array.from(randomBytes(rng, 8)));
    else if (op === 0x47) out.push(...Array.from(randomBytes(rng, 8)));
    else if (op === 0x58) {
      const s = Buffer.from(rng.pick(strs));
      out.push(s.length, 0, 0, 0, ...s);
    } else if (op === 0x63) {
      const g = rng.pick<[string, string]>([
        ["torch._utils", "_rebuild_tensor_v2"],
        ["torch", "FloatStorage"],
        ["torch", "LongStorage"],
        ["collections", "OrderedDict"],
        ["torch", "device"],
        ["builtins", "complex"],
        ...FORBIDDEN,
      ]);
      out.push(...Buffer.from(`${g[0]}\n${g[1]}\n`));
    }
  }
  if (rng.chance(0.8)) out.push(0x2e);
  const storage = { name: "archive/data/0", data: randomBytes(rng, rng.pick([0, 4, 8, 16])) };
  return {
    kind: "pt/program",
    mustFail: false,
    bytes: zipOf(Uint8Array.from(out), [storage]),
    file: "case.pt",
    check: sanity,
  };
}

function pickleHavoc(rng: Rng): FuzzCase {
  const views = randomViews(rng);
  const entries = ptEntries(
    py.dict([
      ["epoch", 1],
      ["state_dict", py.dict(views.map((v) => [v.key, tensorOf(v)]))],
    ]),
    { prefix: "checkpoint" },
  );
  const pkl = entries.find((e) => e.name.endsWith("data.pkl"))!;
  pkl.data = havoc(pkl.data, rng, OPS);
  return { kind: "pt/pickle-havoc", mustFail: false, bytes: makeTorchZip(entries), file: "case.pt", check: sanity };
}

const GENERATORS: Array<[number, (rng: Rng) => FuzzCase]> = [
  [10, valid],
  [14, badView],
  [8, badRecord],
  [10, crcFlip],
  [6, truncate],
  [10, headerFlip],
  [6, bomb],
  [4, deep],
  [3, cycle],
  [5, forbidden],
  [5, garbage],
  [10, program],
  [9, pickleHavoc],
];

export const ptTarget: Target = {
  name: "pt",
  async setup() {
    fixtures = ["tiny-vit", "tiny-rn50"].map(
      (f) => new Uint8Array(readFileSync(sharedPath("fixtures", f, "checkpoint.pt"))),
    );
  },
  generate(rng) {
    const total = GENERATORS.reduce((a, [w]) => a + w, 0);
    let x = rng.int(0, total - 1);
    for (const [w, g] of GENERATORS) {
      if (x < w) return g(rng);
      x -= w;
    }
    return valid(rng);
  },
  run(c, path) {
    return native().importTorchCheckpoint(new Uint8Array(readFileSync(path)), path);
  },
};
