import test from "ava";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  encodeNpy,
  npyFromTensor,
  NpyError,
  parseNpy,
  readNpy,
  writeNpy,
  type NpyArray,
  type NpyDtype,
} from "../lib/io/npy.js";
import { hasShared, sharedPath } from "./helpers/shared.js";

const run = promisify(execFile);

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(bytesOf(a), bytesOf(b)) === 0;
}

/** A .npy file from a header dict text and raw data, laid out as numpy does (64-byte aligned). */
function rawNpy(dict: string, data: Uint8Array, major = 1): Uint8Array {
  const lenBytes = major === 1 ? 2 : 4;
  let header = dict;
  while ((6 + 2 + lenBytes + header.length + 1) % 64 !== 0) header += " ";
  header += "\n";
  const out = new Uint8Array(6 + 2 + lenBytes + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, header.length, true);
  else dv.setUint32(8, header.length, true);
  out.set(Buffer.from(header, major === 3 ? "utf8" : "latin1"), 8 + lenBytes);
  out.set(data, 8 + lenBytes + header.length);
  return out;
}

function beBytes(values: number[], size: 2 | 4 | 8, kind: "i" | "f"): Uint8Array {
  const out = new Uint8Array(values.length * size);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => {
    if (kind === "f") size === 4 ? dv.setFloat32(i * size, v, false) : dv.setFloat64(i * size, v, false);
    else if (size === 2) dv.setInt16(i * size, v, false);
    else if (size === 4) dv.setInt32(i * size, v, false);
    else dv.setBigInt64(i * size, BigInt(v), false);
  });
  return out;
}

/** One array of every dtype, with the awkward values (NaN payloads, -0, infinities, extremes). */
function samples(): NpyArray[] {
  const f32 = new Float32Array([0, -0, 1.5, -2.25, Infinity, -Infinity, 3.4028234663852886e38, 1e-45]);
  const f32nan = new Uint32Array(f32.buffer);
  f32nan[7] = 0x7fc01234; // NaN with a payload
  const f64 = new Float64Array([0, -0, Math.PI, -Infinity, Number.MAX_VALUE, 5e-324]);
  new BigUint64Array(f64.buffer)[5] = 0xfff8_0000_dead_beefn; // negative NaN with a payload
  return [
    { dtype: "float32", shape: [2, 4], data: f32 },
    { dtype: "float64", shape: [3, 2], data: f64 },
    { dtype: "float16", shape: [5], data: new Uint16Array([0x0000, 0x8000, 0x3c00, 0x7c00, 0x7e01]) },
    { dtype: "int64", shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]) },
    { dtype: "int32", shape: [2, 1, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]) },
    { dtype: "int16", shape: [2], data: new Int16Array([-32768, 32767]) },
    { dtype: "int8", shape: [3], data: new Int8Array([-128, 127, 0]) },
    { dtype: "uint8", shape: [1, 3], data: new Uint8Array([0, 255, 7]) },
    { dtype: "bool", shape: [4], data: new Uint8Array([1, 0, 0, 1]) },
    { dtype: "float32", shape: [], data: new Float32Array([42]) },
    { dtype: "int64", shape: [0, 5], data: new BigInt64Array(0) },
    { dtype: "uint8", shape: [130, 2], data: Uint8Array.from({ length: 260 }, (_, i) => i % 251) },
  ];
}

test("fixtures: tiny-vit .npy files parse with the right dtypes and shapes", async (t) => {
  if (!hasShared("fixtures", "tiny-vit", "images.npy")) return t.fail("../shared/fixtures/tiny-vit is missing");
  const dir = sharedPath("fixtures", "tiny-vit");
  const images = await readNpy(path.join(dir, "images.npy"));
  t.is(images.dtype, "float32");
  t.true(images.data instanceof Float32Array);
  t.is(images.shape.length, 4);
  const n = images.shape[0]!;
  t.true(n > 0);
  t.deepEqual(images.shape, [n, 3, 32, 32]);
  t.is(images.data.length, n * 3 * 32 * 32);
  t.true((images.data as Float32Array).every(Number.isFinite));
  const ids = await readNpy(path.join(dir, "text_ids.npy"));
  t.is(ids.dtype, "int64");
  t.true(ids.data instanceof BigInt64Array);
  t.deepEqual(ids.shape, [n, 24]);
  // Token ids are small non-negative integers, and the first of each row is [CLS] (non-zero).
  const idv = ids.data as BigInt64Array;
  t.true(idv.every((v) => v >= 0n && v < 100000n));
  for (let r = 0; r < n; r++) t.not(idv[r * 24], 0n);
  for (const f of (await readdir(dir)).filter((x) => x.endsWith(".npy"))) {
    const a = await readNpy(path.join(dir, f));
    t.is(
      a.data.length,
      a.shape.reduce((p, d) => p * d, 1),
      f,
    );
  }
});

test("round trip: encodeNpy -> parseNpy is bit-exact for every dtype", (t) => {
  for (const arr of samples()) {
    const bytes = encodeNpy(arr);
    t.is(bytes.length % 64, arr.data.byteLength % 64, `${arr.dtype}: header is 64-byte aligned`);
    const back = parseNpy(bytes, arr.dtype);
    t.is(back.dtype, arr.dtype);
    t.deepEqual(back.shape, arr.shape);
    t.is(back.data.constructor, arr.data.constructor);
    t.true(sameBytes(back.data, arr.data), `${arr.dtype} ${JSON.stringify(arr.shape)} bytes differ`);
  }
});

test("encodeNpy writes numpy's header layout", (t) => {
  const bytes = encodeNpy({ dtype: "float32", shape: [2, 3], data: new Float32Array(6) });
  t.deepEqual([...bytes.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const hlen = bytes[8]! | (bytes[9]! << 8);
  t.is(10 + hlen, 128);
  const header = Buffer.from(bytes.subarray(10, 10 + hlen)).toString("latin1");
  t.true(header.startsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
  t.true(header.endsWith(" \n"));
  t.is(bytes.length, 128 + 24);
  const h1 = Buffer.from(encodeNpy({ dtype: "bool", shape: [7], data: new Uint8Array(7) })).toString("latin1");
  t.true(h1.includes("{'descr': '|b1', 'fortran_order': False, 'shape': (7,), }"));
  const h0 = Buffer.from(encodeNpy({ dtype: "int64", shape: [], data: new BigInt64Array(1) })).toString("latin1");
  t.true(h0.includes("'descr': '<i8', 'fortran_order': False, 'shape': (), }"));
});

test("parseNpy returns a zero-copy view when aligned and a copy when not", (t) => {
  const bytes = encodeNpy({ dtype: "float32", shape: [4], data: new Float32Array([1, 2, 3, 4]) });
  const a = parseNpy(bytes);
  t.is(a.data.buffer, bytes.buffer);
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const unaligned = shifted.subarray(1);
  const b = parseNpy(unaligned);
  t.not(b.data.buffer, shifted.buffer);
  t.deepEqual([...(b.data as Float32Array)], [1, 2, 3, 4]);
});

test("parseNpy converts big-endian data and Fortran order to native C order", (t) => {
  const be = parseNpy(
    rawNpy("{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }", beBytes([1, -2, 70000], 4, "i")),
  );
  t.deepEqual([...(be.data as Int32Array)], [1, -2, 70000]);
  const bef = parseNpy(
    rawNpy("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", beBytes([Math.PI, -0.5], 8, "f")),
  );
  t.deepEqual([...(bef.data as Float64Array)], [Math.PI, -0.5]);
  // Fortran (2, 3): column-major storage of [[0, 1, 2], [3, 4, 5]] is 0 3 1 4 2 5.
  const f = parseNpy(
    rawNpy("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3), }", bytesOf(new Int16Array([0, 3, 1, 4, 2, 5]))),
  );
  t.deepEqual(f.shape, [2, 3]);
  t.deepEqual([...(f.data as Int16Array)], [0, 1, 2, 3, 4, 5]);
  // Fortran 3-D, big-endian int64: element (i, j, k) stored at i + 2j + 6k holds 100i + 10j + k.
  const shape = [2, 3, 4];
  const fvals: number[] = new Array<number>(24);
  for (let i = 0; i < 2; i++)
    for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) fvals[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
  const f3 = parseNpy(rawNpy("{'descr': '>i8', 'fortran_order': True, 'shape': (2, 3, 4), }", beBytes(fvals, 8, "i")));
  t.deepEqual(f3.shape, shape);
  const expected: bigint[] = [];
  for (let i = 0; i < 2; i++)
    for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) expected.push(BigInt(100 * i + 10 * j + k));
  t.deepEqual([...(f3.data as BigInt64Array)], expected);
  // Versions 2.0 and 3.0 (4-byte header length; 3.0 header in UTF-8).
  for (const major of [2, 3]) {
    const v = parseNpy(
      rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", bytesOf(new Float32Array([5, 6])), major),
    );
    t.deepEqual([...(v.data as Float32Array)], [5, 6]);
  }
});

test("parseNpy rejects malformed files with NpyError naming the array", (t) => {
  const ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const data = bytesOf(new Float32Array([1, 2]));
  const good = rawNpy(ok, data);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["short", good.subarray(0, 5), /too short/],
    [
      "magic",
      (() => {
        const b = good.slice();
        b[1] = 0x41;
        return b;
      })(),
      /bad magic/,
    ],
    [
      "version",
      (() => {
        const b = good.slice();
        b[6] = 4;
        return b;
      })(),
      /version 4\.0/,
    ],
    [
      "hlen",
      (() => {
        const b = good.slice();
        b[8] = 0xff;
        b[9] = 0xff;
        return b;
      })(),
      /runs past the end/,
    ],
    ["short data", good.subarray(0, good.length - 1), /holds 7 bytes but shape \(2\) of float32 needs 8/],
    ["long data", rawNpy(ok, new Uint8Array(12)), /holds 12 bytes/],
    ["missing key", rawNpy("{'descr': '<f4', 'shape': (2,), }", data), /keys are \{descr, shape\}/],
    ["extra key", rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", data), /keys are/],
    ["object", rawNpy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", data), /object array/],
    ["complex", rawNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", data), /unsupported descr '<c8'/],
    ["uint16", rawNpy("{'descr': '<u2', 'fortran_order': False, 'shape': (4,), }", data), /unsupported descr '<u2'/],
    [
      "structured",
      rawNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", data),
      /descr is not a string/,
    ],
    ["negative", rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data), /shape\[0\] is -2/],
    ["shape list", rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", data), /shape is not a tuple/],
    ["fortran", rawNpy("{'descr': '<f4', 'fortran_order': 1, 'shape': (2,), }", data), /fortran_order/],
    ["not dict", rawNpy("[1, 2]", data), /not a dict/],
    ["garbage", rawNpy("{'descr': __import__('os'), }", data), /bad header/],
    ["unterminated", rawNpy("{'descr': '<f4", data), /unterminated/],
    [
      "duplicate",
      rawNpy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data),
      /duplicate key/,
    ],
    [
      "overflow",
      rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", data),
      /too many elements|too large/,
    ],
  ];
  for (const [label, bytes, re] of cases) {
    const err = t.throws(() => parseNpy(bytes, `case-${label}.npy`), { instanceOf: NpyError }, label);
    t.true(err?.message.startsWith(`case-${label}.npy: `), `${label}: ${err?.message}`);
    t.regex(err?.message ?? "", re, label);
  }
});

test("writeNpy writes atomically and readNpy reads it back; npyFromTensor infers dtypes", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vilref-npy-"));
  try {
    const file = path.join(dir, "x.npy");
    await writeNpy(file, npyFromTensor({ data: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [3, 2] }));
    await writeNpy(file, npyFromTensor({ data: new Int32Array([7, 8]), shape: [2] }));
    const back = await readNpy(file);
    t.is(back.dtype, "int32");
    t.deepEqual([...(back.data as Int32Array)], [7, 8]);
    t.deepEqual(await readdir(dir), ["x.npy"], "no temporary file left behind");
    await t.throwsAsync(writeNpy(path.join(dir, "missing", "y.npy"), back));
    t.deepEqual(await readdir(dir), ["x.npy"]);
    await writeFile(path.join(dir, "bad.npy"), "not numpy");
    const err = await t.throwsAsync(readNpy(path.join(dir, "bad.npy")), { instanceOf: NpyError });
    t.true(err?.message.includes("bad.npy"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const inferred: Array<[ArrayBufferView, NpyDtype]> = [
    [new Float64Array(1), "float64"],
    [new Uint16Array(1), "float16"],
    [new BigInt64Array(1), "int64"],
    [new Int16Array(1), "int16"],
    [new Int8Array(1), "int8"],
    [new Uint8Array(1), "uint8"],
  ];
  for (const [data, dtype] of inferred)
    t.is(npyFromTensor({ data: data as NpyArray["data"], shape: [1] }).dtype, dtype);
  t.is(npyFromTensor({ data: new Uint8Array(2), shape: [2] }, "bool").dtype, "bool");
  t.throws(() => npyFromTensor({ data: new Float32Array(3), shape: [2] }), { instanceOf: RangeError });
  t.throws(() => encodeNpy({ dtype: "float64", shape: [1], data: new Float32Array(1) }), { instanceOf: TypeError });
});

const PYTHON = "/usr/bin/python3";

async function hasNumpy(): Promise<boolean> {
  try {
    await run(PYTHON, ["-c", "import numpy"], { timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

const PY_SCRIPT = String.raw`
import io, json, sys
import numpy as np
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
res = {"ours": [], "theirs": []}
for c in m["ours"]:
    a = np.load(d + "/" + c["file"], allow_pickle=False)
    raw = open(d + "/" + c["raw"], "rb").read()
    buf = io.BytesIO(); np.save(buf, a)
    res["ours"].append({"file": c["file"], "dtype": a.dtype.name, "shape": list(a.shape),
        "bytesEqual": a.tobytes() == raw, "identical": buf.getvalue() == open(d + "/" + c["file"], "rb").read()})
rng = np.random.default_rng(0)
def f(shape, dt):
    a = rng.standard_normal(shape).astype(dt)
    if a.size > 3:
        a.flat[0] = -0.0; a.flat[1] = np.inf; a.flat[2] = np.nan
    return a
def i(shape, dt):
    return rng.integers(-100, 100, size=shape).astype(dt)
cases = [
    ("c_f4", f((2, 3, 4), "<f4"), None),
    ("fortran_f4", np.asfortranarray(f((3, 4, 5), "<f4")), None),
    ("transposed_f4", f((4, 6), "<f4").T, None),
    ("be_f4", f((2, 3), ">f4"), None),
    ("be_fortran_i8", np.asfortranarray(i((4, 3, 2), ">i8")), None),
    ("be_f8", f((5,), ">f8"), None),
    ("fortran_f2", np.asfortranarray(f((3, 5), "<f2")), None),
    ("be_i2", i((3, 3), ">i2"), None),
    ("be_i4_fortran", np.asfortranarray(i((2, 5), ">i4")), None),
    ("fortran_b1", np.asfortranarray(i((3, 4), "<i4") > 0), None),
    ("u1", np.arange(10, dtype="u1").reshape(2, 5), None),
    ("i1", i((7,), "i1"), None),
    ("scalar", np.array(3.5, dtype="<f8"), None),
    ("empty", np.zeros((0, 4), dtype="<f4"), None),
    ("v2", f((2, 2), "<f4"), (2, 0)),
    ("v3_fortran", np.asfortranarray(i((3, 2), "<i8")), (3, 0)),
    ("row_fortran", np.asfortranarray(f((1, 5), ">f4")), None),
]
for name, a, version in cases:
    p = d + "/np_" + name + ".npy"
    with open(p, "wb") as fh:
        np.lib.format.write_array(fh, a, version=version)
    raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
    open(p + ".bin", "wb").write(raw)
    res["theirs"].append({"file": "np_" + name + ".npy", "dtype": a.dtype.name, "shape": list(a.shape),
        "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous), "bigEndian": a.dtype.byteorder == ">"})
print(json.dumps(res))
`;

test("numpy interoperability: numpy reads what we write (byte-identical to np.save) and we read what numpy \
writes", async (t) => {
  if (!(await hasNumpy())) {
    t.log(`SKIPPED: ${PYTHON} cannot import numpy; the numpy interoperability check did not run`);
    t.pass();
    return;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "vilref-npy-np-"));
  try {
    const ours = samples().map((arr, i) => ({ arr, file: `ts_${i}.npy`, raw: `ts_${i}.bin` }));
    for (const o of ours) {
      await writeNpy(path.join(dir, o.file), o.arr);
      await writeFile(path.join(dir, o.raw), bytesOf(o.arr.data));
    }
    await writeFile(
      path.join(dir, "manifest.json"),
      JSON.stringify({ ours: ours.map(({ file, raw }) => ({ file, raw })) }),
    );
    const { stdout } = await run(PYTHON, ["-c", PY_SCRIPT, dir], { timeout: 120_000 });
    const res = JSON.parse(stdout) as {
      ours: Array<{ file: string; dtype: string; shape: number[]; bytesEqual: boolean; identical: boolean }>;
      theirs: Array<{ file: string; dtype: string; shape: number[]; fortran: boolean; bigEndian: boolean }>;
    };
    t.is(res.ours.length, ours.length);
    for (const [k, r] of res.ours.entries()) {
      const o = ours[k]!;
      t.is(r.dtype, o.arr.dtype, r.file);
      t.deepEqual(r.shape, o.arr.shape, r.file);
      t.true(r.bytesEqual, `${r.file}: numpy sees different element bytes`);
      t.true(r.identical, `${r.file}: np.save of the same array gives different file bytes`);
    }
    t.true(
      res.theirs.some((r) => r.fortran) && res.theirs.some((r) => r.bigEndian),
      "numpy wrote Fortran and big-endian cases",
    );
    for (const r of res.theirs) {
      const a = await readNpy(path.join(dir, r.file));
      const raw = await readFile(path.join(dir, `${r.file}.bin`));
      t.is(a.dtype, r.dtype as NpyDtype, r.file);
      t.deepEqual(a.shape, r.shape, r.file);
      t.true(sameBytes(a.data, raw), `${r.file}: elements differ from numpy's C-order little-endian bytes`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
