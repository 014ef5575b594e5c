import test from "ava";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  makePt,
  makeTorchZip,
  maliciousCommand,
  maliciousPt,
  picklePt,
  py,
  PyFloat,
  releasedPt,
  tensor,
  TorchStorage,
  TorchTensor,
  type PyValue,
  type TorchDtype,
} from "./helpers/torch-zip.js";
import { hasShared, sharedPath } from "./helpers/shared.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";

async function python(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(PYTHON, ["-c", script, ...args], { timeout: 120_000, maxBuffer: 64 << 20 });
  return stdout;
}

async function canImport(module: string): Promise<boolean> {
  try {
    await run(PYTHON, ["-c", `import ${module}`], { timeout: 120_000 });
    return true;
  } catch {
    return false;
  }
}

async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vilref-torchzip-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const ZIP_CHECK = String.raw`
import json, struct, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
raw = open(sys.argv[1], "rb").read()
out = {"bad": z.testzip(), "entries": []}
for i in z.infolist():
    n, e = struct.unpack("<HH", raw[i.header_offset + 26:i.header_offset + 30])
    out["entries"].append({"name": i.filename, "method": i.compress_type, "hex": z.read(i.filename).hex(),
                           "dataOffset": i.header_offset + 30 + n + e})
print(json.dumps(out))
`;

test("makeTorchZip: python's zipfile reads every entry, CRCs check, data is 64-byte aligned", async (t) => {
  const entries = [
    { name: "archive/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e, 0x2e]) },
    { name: "archive/data/0", data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
    { name: "archive/data/1", data: new Uint8Array(0) },
    { name: "archive/データ", data: Buffer.from("utf-8 name") },
    { name: "archive/version", data: Buffer.from("3\n") },
  ];
  await withTmp(async (dir) => {
    const file = path.join(dir, "a.zip");
    await writeFile(file, makeTorchZip(entries));
    const res = JSON.parse(await python(ZIP_CHECK, file)) as {
      bad: string | null;
      entries: Array<{ name: string; method: number; hex: string; dataOffset: number }>;
    };
    t.is(res.bad, null, "testzip finds no CRC error");
    t.deepEqual(
      res.entries.map((e) => e.name),
      entries.map((e) => e.name),
    );
    for (const [i, e] of res.entries.entries()) {
      t.is(e.method, 0, `${e.name} is stored`);
      t.is(e.hex, Buffer.from(entries[i]!.data).toString("hex"), e.name);
      t.is(e.dataOffset % 64, 0, `${e.name} data is 64-byte aligned`);
    }
    // Without alignment the data follows the local header directly.
    await writeFile(file, makeTorchZip(entries.slice(0, 2), { align: 0 }));
    const plain = JSON.parse(await python(ZIP_CHECK, file)) as {
      bad: string | null;
      entries: Array<{ dataOffset: number }>;
    };
    t.is(plain.bad, null);
    t.is(plain.entries[0]!.dataOffset, 30 + "archive/data.pkl".length);
  });
});

const PICKLE_VALUES = String.raw`
import io, json, pickle, pickletools, sys
data = open(sys.argv[1], "rb").read()
pickletools.dis(data, out=io.StringIO())
v = pickle.loads(data)  # only plain values, no globals: safe
print(repr(v))
`;

test("Pickler: plain values round-trip through Python's pickle with the right opcodes", async (t) => {
  const shared: PyValue[] = [1, 2];
  const value: PyValue = [
    0,
    255,
    256,
    65535,
    65536,
    -1,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 31,
    -(2 ** 31) - 1,
    2n ** 70n,
    -(2n ** 70n),
    128n,
    -128n,
    255n,
    1.5,
    -0,
    new PyFloat(3),
    Infinity,
    true,
    false,
    null,
    "é中",
    "",
    py.tuple(),
    py.tuple(1),
    py.tuple(1, 2),
    py.tuple(1, 2, 3),
    py.tuple(1, 2, 3, 4),
    { a: [1], b: {} },
    py.dict([
      [1, "x"],
      [py.tuple(2, 3), null],
    ]),
    new Map<PyValue, PyValue>([["k", "v"]]),
    shared,
    shared,
  ];
  const expected =
    "[0, 255, 256, 65535, 65536, -1, 2147483647, -2147483648, 2147483648, -2147483649, 1180591620717411303424, " +
    "-1180591620717411303424, 128, -128, 255, " +
    "1.5, -0.0, 3.0, inf, True, False, None, 'é中', '', (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), " +
    "{'a': [1], 'b': {}}, {1: 'x', (2, 3): None}, {'k': 'v'}, [1, 2], [1, 2]]";
  await withTmp(async (dir) => {
    const file = path.join(dir, "v.pkl");
    const { pickle, storages } = picklePt(value);
    t.is(storages.length, 0);
    t.is(pickle[0], 0x80);
    t.is(pickle[1], 2);
    t.is(pickle[pickle.length - 1], 0x2e);
    await writeFile(file, pickle);
    t.is((await python(PICKLE_VALUES, file)).trim(), expected);
    // The same list object twice: memoised, so the second is a BINGET and Python sees one list.
    await writeFile(file, picklePt([shared, shared]).pickle);
    const same = await python(
      "import pickle,sys; v=pickle.loads(open(sys.argv[1],'rb').read()); print(v[0] is v[1])",
      file,
    );
    t.is(same.trim(), "True");
  });
});

const DIS = String.raw`
import io, json, pickletools, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
out = io.StringIO()
pickletools.dis(z.read(pkl[0]), out=out)
print(json.dumps({"names": z.namelist(), "dis": out.getvalue()}))
`;

function storageOf(dtype: TorchDtype, values: number[]): TorchStorage {
  const arrays: Record<TorchDtype, (v: number[]) => ArrayBufferView> = {
    float32: (v) => new Float32Array(v),
    float64: (v) => new Float64Array(v),
    float16: (v) => new Uint16Array(v),
    bfloat16: (v) => new Uint16Array(v),
    int64: (v) => new BigInt64Array(v.map(BigInt)),
    int32: (v) => new Int32Array(v),
    int16: (v) => new Int16Array(v),
    int8: (v) => new Int8Array(v),
    uint8: (v) => new Uint8Array(v),
    bool: (v) => new Uint8Array(v),
  };
  return new TorchStorage(dtype, arrays[dtype](values));
}

/** A checkpoint exercising every storage class, a transposed view, a storage offset and shared storage. */
function richCheckpoint(): Buffer {
  const shared = storageOf("float32", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  const sd: Array<[PyValue, PyValue]> = [
    ["module.visual.proj", new TorchTensor(shared, [3, 4])],
    ["module.visual.proj_t", new TorchTensor(shared, [4, 3], { stride: [1, 4] })],
    ["module.tail", new TorchTensor(shared, [2], { storageOffset: 10 })],
    ["module.f64", new TorchTensor(storageOf("float64", [0.5, -2]), [2])],
    ["module.f16", new TorchTensor(storageOf("float16", [0x3c00, 0xc000]), [2])], // 1, -2
    ["module.bf16", new TorchTensor(storageOf("bfloat16", [0x3f80, 0x4040]), [1, 2])], // 1, 3
    ["module.i64", new TorchTensor(storageOf("int64", [-5, 7]), [2])],
    ["module.i32", new TorchTensor(storageOf("int32", [-(2 ** 31), 9]), [2])],
    ["module.i16", new TorchTensor(storageOf("int16", [-3, 300]), [2])],
    ["module.i8", new TorchTensor(storageOf("int8", [-128, 5]), [2])],
    ["module.u8", new TorchTensor(storageOf("uint8", [255, 0]), [2])],
    ["module.mask", new TorchTensor(storageOf("bool", [1, 0, 1]), [3])],
    ["module.scalar", new TorchTensor(storageOf("float32", [42]), [])],
  ];
  return makePt(
    py.dict([
      ["epoch", 3],
      ["step", 120],
      ["name", "rich"],
      ["state_dict", py.orderedDict(sd, { _metadata: py.orderedDict([["", { version: 1 }]]) })],
      ["optimizer", {}],
    ]),
    { prefix: "rich", byteorder: true },
  );
}

test("picklePt/makePt: pickletools accepts it, with torch.save's structure; \
torch.load(weights_only) reads it", async (t) => {
  await withTmp(async (dir) => {
    const file = path.join(dir, "rich.pt");
    await writeFile(file, richCheckpoint());
    const res = JSON.parse(await python(DIS, file)) as { names: string[]; dis: string };
    t.deepEqual(res.names, [
      "rich/data.pkl",
      "rich/byteorder",
      ...Array.from({ length: 11 }, (_, i) => `rich/data/${i}`),
      "rich/version",
    ]);
    t.regex(res.dis, /GLOBAL\s+'torch\._utils _rebuild_tensor_v2'/);
    t.regex(res.dis, /GLOBAL\s+'torch FloatStorage'/);
    t.regex(res.dis, /GLOBAL\s+'torch BFloat16Storage'/);
    t.regex(res.dis, /GLOBAL\s+'collections OrderedDict'/);
    t.regex(res.dis, /BINPERSID/);
    t.regex(res.dis, /BUILD/);
    t.regex(res.dis, /highest protocol among opcodes = 2/);
    t.notRegex(res.dis, /GLOBAL\s+'(os|posix|builtins|subprocess)/);
    if (!(await canImport("torch"))) {
      t.log(`SKIPPED the torch.load half: ${PYTHON} cannot import torch`);
      return;
    }
    const out = await python(
      String.raw`
import json, sys, torch
ck = torch.load(sys.argv[1], weights_only=True)
sd = ck["state_dict"]
print(json.dumps({"top": {k: v for k, v in ck.items() if k != "state_dict"}, "type": type(sd).__name__,
  "meta": {k: v for k, v in sd._metadata.items()},
  "shared": sd["module.visual.proj"].data_ptr() == sd["module.visual.proj_t"].data_ptr(),
  "t": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "stride": list(v.stride()), "offset": v.storage_offset(),
            "values": v.float().flatten().tolist()} for k, v in sd.items()}}))`,
      file,
    );
    const got = JSON.parse(out) as {
      top: Record<string, unknown>;
      type: string;
      meta: Record<string, unknown>;
      shared: boolean;
      t: Record<string, { dtype: string; shape: number[]; stride: number[]; offset: number; values: number[] }>;
    };
    t.deepEqual(got.top, { epoch: 3, step: 120, name: "rich", optimizer: {} });
    t.is(got.type, "OrderedDict");
    t.deepEqual(got.meta, { "": { version: 1 } });
    t.true(got.shared, "tensors over one TorchStorage share it in torch");
    const want: Record<string, [string, number[], number[], number, number[]]> = {
      "module.visual.proj": ["torch.float32", [3, 4], [4, 1], 0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]],
      "module.visual.proj_t": ["torch.float32", [4, 3], [1, 4], 0, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]],
      "module.tail": ["torch.float32", [2], [1], 10, [10, 11]],
      "module.f64": ["torch.float64", [2], [1], 0, [0.5, -2]],
      "module.f16": ["torch.float16", [2], [1], 0, [1, -2]],
      "module.bf16": ["torch.bfloat16", [1, 2], [2, 1], 0, [1, 3]],
      "module.i64": ["torch.int64", [2], [1], 0, [-5, 7]],
      "module.i32": ["torch.int32", [2], [1], 0, [-(2 ** 31), 9]],
      "module.i16": ["torch.int16", [2], [1], 0, [-3, 300]],
      "module.i8": ["torch.int8", [2], [1], 0, [-128, 5]],
      "module.u8": ["torch.uint8", [2], [1], 0, [255, 0]],
      "module.mask": ["torch.bool", [3], [1], 0, [1, 0, 1]],
      "module.scalar": ["torch.float32", [], [], 0, [42]],
    };
    t.deepEqual(Object.keys(got.t), Object.keys(want), "order kept");
    for (const [k, [dtype, shape, stride, offset, values]] of Object.entries(want))
      t.deepEqual(got.t[k], { dtype, shape, stride, offset, values }, k);
  });
});

test("picklePt reproduces the fixture checkpoint's data.pkl byte for byte", async (t) => {
  const fixture = sharedPath("fixtures", "tiny-vit", "checkpoint.pt");
  if (!hasShared("fixtures", "tiny-vit", "checkpoint.pt"))
    return t.fail("../shared/fixtures/tiny-vit/checkpoint.pt is missing");
  if (!(await canImport("torch"))) {
    t.log(`SKIPPED: ${PYTHON} cannot import torch, which this test uses to list the fixture's tensors`);
    t.pass();
    return;
  }
  const out = await python(
    String.raw`
import json, sys, torch, zipfile
ck = torch.load(sys.argv[1], weights_only=True)
storages = {}
rows = []
for k, v in ck["state_dict"].items():
    s = v.storage()
    key = storages.setdefault(s.data_ptr(), (len(storages), s.size()))
    rows.append({"key": k, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                 "stride": list(v.stride()), "offset": v.storage_offset(), "storage": key[0], "numel": key[1]})
pkl = zipfile.ZipFile(sys.argv[1]).read("checkpoint/data.pkl")
print(json.dumps({"epoch": ck["epoch"], "step": ck["step"], "name": ck["name"], "optimizer": len(ck["optimizer"]),
                  "rows": rows, "pkl": pkl.hex()}))`,
    fixture,
  );
  const spec = JSON.parse(out) as {
    epoch: number;
    step: number;
    name: string;
    optimizer: number;
    rows: Array<{
      key: string;
      dtype: TorchDtype;
      shape: number[];
      stride: number[];
      offset: number;
      storage: number;
      numel: number;
    }>;
    pkl: string;
  };
  t.is(spec.optimizer, 0);
  const storages = new Map<number, TorchStorage>();
  const sd = new Map<string, TorchTensor>();
  for (const r of spec.rows) {
    let s = storages.get(r.storage);
    if (!s) {
      s = new TorchStorage(
        r.dtype,
        new Uint8Array(r.numel * (r.dtype === "float32" ? 4 : r.dtype === "int64" ? 8 : 1)),
      );
      storages.set(r.storage, s);
    }
    sd.set(r.key, new TorchTensor(s, r.shape, { stride: r.stride, storageOffset: r.offset }));
  }
  const root = py.dict([
    ["epoch", spec.epoch],
    ["step", spec.step],
    ["name", spec.name],
    ["state_dict", py.dict([...sd.entries()])],
    ["optimizer", {}],
  ]);
  const ours = Buffer.from(picklePt(root).pickle).toString("hex");
  t.is(ours.length, spec.pkl.length);
  t.true(ours === spec.pkl, "data.pkl differs from torch.save's");
  // releasedPt builds the same pickle from un-prefixed keys.
  const unprefixed = new Map([...sd.entries()].map(([k, v]) => [k.replace(/^module\./, ""), v]));
  await withTmp(async (dir) => {
    const file = path.join(dir, "released.pt");
    await writeFile(file, releasedPt(unprefixed, { epoch: spec.epoch, step: spec.step, name: spec.name }));
    const pkl = await python(
      "import sys,zipfile; print(zipfile.ZipFile(sys.argv[1]).read('checkpoint/data.pkl').hex())",
      file,
    );
    t.true(pkl.trim() === spec.pkl, "releasedPt's data.pkl differs from torch.save's");
  });
});

const OPS = String.raw`
import json, pickletools, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
data = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
ops = [(op.name, arg) for op, arg, pos in pickletools.genops(data)]  # reads opcodes, executes nothing
print(json.dumps({"names": z.namelist(),
                  "ops": [[n, a if isinstance(a, (str, int, type(None))) else repr(a)] for n, a in ops]}))
`;

test("maliciousPt: a valid .pt whose pickle calls os.system(touch marker); inspected, never executed", async (t) => {
  await withTmp(async (dir) => {
    const marker = path.join(dir, "it ran; 'really'");
    const command = maliciousCommand(marker);
    const variants: Array<[string, Buffer, string]> = [
      ["nested", maliciousPt(marker), "os system"],
      ["top level", maliciousPt(marker, { topLevel: true }), "os system"],
      ["posix.system", maliciousPt(marker, { global: ["posix", "system"] }), "posix system"],
    ];
    for (const [label, bytes, global] of variants) {
      const file = path.join(dir, `${label}.pt`);
      await writeFile(file, bytes);
      const { names, ops } = JSON.parse(await python(OPS, file)) as { names: string[]; ops: Array<[string, unknown]> };
      t.true(
        names.some((n) => n.endsWith("/data.pkl")),
        label,
      );
      const at = ops.findIndex(([n, a]) => n === "GLOBAL" && a === global);
      t.true(at >= 0, `${label}: GLOBAL '${global}'`);
      // GLOBAL, the command string, a 1-tuple, REDUCE: the call itself.
      t.deepEqual(
        ops
          .slice(at, at + 10)
          .filter(([n]) => !n.endsWith("PUT"))
          .slice(0, 4)
          .map(([n, a]) => (n === "BINUNICODE" ? [n, a] : [n])),
        [["GLOBAL"], ["BINUNICODE", command], ["TUPLE1"], ["REDUCE"]],
        label,
      );
      if (label === "nested") {
        const tensorAt = ops.findIndex(([n, a]) => n === "GLOBAL" && a === "torch._utils _rebuild_tensor_v2");
        t.true(tensorAt >= 0 && tensorAt < at, "the payload comes after a genuine tensor");
      }
      if (label === "top level") t.deepEqual(ops.slice(-1), [["STOP", null]]);
    }
    t.false(existsSync(marker), "nothing executed the payload");
    // The command does what a permissive unpickler would make it do: create the marker.
    await run("/bin/sh", ["-c", command]);
    t.true(existsSync(marker), "the embedded command creates the marker");
  });
});
