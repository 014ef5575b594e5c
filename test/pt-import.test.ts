// The validating `.pt` reader (native/checkpoint.cc, torch_zip.cc, pickle_check.cc): each failure
// class of issue 22 as a crafted file that once crashed, leaked memory into the output or inflated
// without bound, now an Error naming the file and the tensor or entry; and what still loads.
import test from "ava";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../lib/build/addon.js";
import { CheckpointError } from "../lib/checkpoint/errors.js";
import { writeSafetensors } from "../lib/checkpoint/safetensors.js";
import type { StTensor } from "../lib/checkpoint/safetensors.js";
import { presetConfig } from "../lib/model/config.js";
import { readCheckpoint, ViLReF } from "../lib/model/vilref.js";
import { native } from "../lib/native.js";
import { sharedPath } from "./helpers/shared.js";
import {
  makePt,
  makeTorchZip,
  picklePt,
  ptEntries,
  py,
  releasedPt,
  tensor,
  TorchStorage,
  TorchTensor,
  type PyValue,
  type ZipEntry,
} from "./helpers/torch-zip.js";

const scratch = mkdtempSync(join(tmpdir(), "vilref-pt-"));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

const importPt = (bytes: Uint8Array, name = "bad.pt", options?: { maxUncompressedBytes?: number }) =>
  native().importTorchCheckpoint(new Uint8Array(bytes), name, options);

const floats = (n: number) => new Float32Array(Array.from({ length: n }, (_, i) => i + 0.5));

/** A checkpoint whose state_dict holds one tensor "w" over a storage of `storageNumel` floats. */
function oneTensor(
  storageNumel: number,
  shape: Array<number | bigint>,
  opts: { stride?: Array<number | bigint>; storageOffset?: number | bigint } = {},
): Buffer {
  const storage = new TorchStorage("float32", floats(storageNumel));
  const t = new TorchTensor(storage, shape as number[], {
    ...(opts.stride ? { stride: opts.stride as number[] } : {}),
    ...(opts.storageOffset !== undefined ? { storageOffset: opts.storageOffset as number } : {}),
  });
  // two entries: LibTorch 1.13 reads no SETITEM, the opcode of a one-entry dict
  return releasedPt({ w: t, pad: tensor("float32", [1], floats(1)) });
}

async function rejects(t: import("ava").ExecutionContext, bytes: Uint8Array, message: RegExp, label: string) {
  const e = await t.throwsAsync(importPt(bytes), undefined, label);
  t.regex(e?.message ?? "", /^bad\.pt: not a loadable PyTorch checkpoint: /, `${label}: names the file`);
  t.regex(e?.message ?? "", message, label);
  t.notRegex(e?.message ?? "", /INTERNAL ASSERT|report a bug|frame #/, `${label}: no LibTorch internals`);
}

test("a storage record shorter than its storage: refused, no process memory read as weights", async (t) => {
  // the pickle says 16,000 floats; the record holds 100 bytes (LibTorch 1.13 read 63,900 bytes past it)
  const entries = ptEntries(
    py.dict([
      ["epoch", 1],
      [
        "state_dict",
        py.dict([
          ["module.w", tensor("float32", [16000], new Float32Array(16000))],
          ["module.b", tensor("float32", [1], floats(1))],
        ]),
      ],
    ]),
    { prefix: "checkpoint" },
  );
  const data = entries.find((e) => e.name === "checkpoint/data/0")!;
  data.data = new Uint8Array(100);
  await rejects(
    t,
    makeTorchZip(entries),
    /storage "0" needs 64000 bytes but its record checkpoint\/data\/0 holds 100/,
    "short record",
  );
  // and `vilref convert` exits 1 without writing anything
  const file = join(scratch, "short.pt");
  const out = join(scratch, "short.safetensors");
  writeFileSync(file, makeTorchZip(entries));
  const r = spawnSync(process.execPath, [join(packageRoot, "bin/vilref.js"), "convert", file, out], {
    encoding: "utf8",
  });
  t.is(r.status, 1, r.stdout);
  t.regex(r.stderr, /short\.pt: not a loadable PyTorch checkpoint: storage "0" needs 64000 bytes/);
  t.false(existsSync(out));
});

test("tensor views outside their storage: each refused, naming the tensor", async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    [
      "view longer than its storage",
      oneTensor(4, [100]),
      /tensor "module\.w".*holds 100 elements, more than its storage's 4/,
    ],
    [
      "offset past the end",
      oneTensor(4, [2], { storageOffset: 10 }),
      /tensor "module\.w".*reach past the end of its storage of 4/,
    ],
    ["negative offset", oneTensor(4, [2], { storageOffset: -5 }), /tensor "module\.w".*negative storage offset -5/],
    [
      "stride past the end",
      oneTensor(4, [2, 2], { stride: [100, 1] }),
      /tensor "module\.w".*stride \[100, 1\] reach past/,
    ],
    ["negative stride", oneTensor(4, [2, 2], { stride: [-2, 1] }), /tensor "module\.w".*negative stride \[-2, 1\]/],
    ["negative size", oneTensor(4, [-1]), /tensor "module\.w".*negative size \[-1\]/],
    ["sizes and strides disagree", oneTensor(4, [2, 2], { stride: [1] }), /tensor "module\.w".*2 sizes but 1 strides/],
    ["2^62 elements", oneTensor(4, [2n ** 62n], { stride: [1] }), /holds 4611686018427387904 elements/],
    ["2^56 × 64 elements", oneTensor(4, [2n ** 56n, 64], { stride: [64, 1] }), /holds 4611686018427387904/],
    ["2^64 wraps to 0 bytes", oneTensor(4, [2n ** 62n, 4], { stride: [4, 1] }), /holds 2\^64 or more elements/],
    ["an int LibTorch 1.13 cannot read", oneTensor(4, [2 ** 31]), /LONG1 of 5 bytes/],
    [
      "a broadcast view of more elements",
      oneTensor(4, [8], { stride: [0] }),
      /holds 8 elements, more than its storage's 4/,
    ],
  ];
  for (const [label, bytes, message] of cases) await rejects(t, bytes, message, label);
  // the tensor's own key is named when it sits in the state dict
  const e = await t.throwsAsync(importPt(oneTensor(4, [100])));
  t.regex(e!.message, /tensor "module\.w" \(storage "0"\)/);
});

test("a pickle nested 200,000 deep is an error, not a stack overflow", async (t) => {
  const deep = (body: number[], n: number, tail: number[]) => {
    const out = [0x80, 2];
    for (let i = 0; i < n; i++) out.push(...body);
    for (let i = 0; i < n; i++) out.push(...tail);
    out.push(0x2e);
    return Uint8Array.from(out);
  };
  const n = 200_000;
  const pickles: Array<[string, Uint8Array, RegExp]> = [
    ["MARK ... LIST", deep([0x28], n, [0x6c]), /MARKs nested deeper than 256/],
    [
      "EMPTY_LIST then TUPLE1s",
      Uint8Array.from([0x80, 2, 0x5d, ...new Array(n).fill(0x85), 0x2e]),
      /nested deeper than 256/,
    ],
    ["lists appended into lists", deep([0x5d, 0x28], n, [0x65]), /MARKs nested deeper than 256/],
  ];
  for (const [label, pickle, message] of pickles) {
    const zip = makeTorchZip([
      { name: "archive/data.pkl", data: pickle },
      { name: "archive/version", data: Buffer.from("3\n") },
    ]);
    await rejects(t, zip, message, label);
  }
});

test("a list that contains itself (a leak in LibTorch) is refused", async (t) => {
  // EMPTY_LIST, BINPUT 0, MARK, BINGET 0, APPENDS, STOP
  const pickle = Uint8Array.from([0x80, 2, 0x5d, 0x71, 0, 0x28, 0x68, 0, 0x65, 0x2e]);
  const zip = makeTorchZip([
    { name: "archive/data.pkl", data: pickle },
    { name: "archive/version", data: Buffer.from("3\n") },
  ]);
  await rejects(t, zip, /data\.pkl, byte 8: a list that contains itself/, "self-containing list");
});

test("malformed pickles that LibTorch 1.13 read outside its stack: refused with the byte", async (t) => {
  const wrap = (ops: number[]) =>
    makeTorchZip([
      { name: "archive/data.pkl", data: Uint8Array.from([0x80, 2, ...ops, 0x2e]) },
      { name: "archive/version", data: Buffer.from("3\n") },
    ]);
  const g = (s: string) => [...Buffer.from(s)];
  const cases: Array<[string, number[], RegExp]> = [
    ["TUPLE1 on an empty stack", [0x85], /byte 2: TUPLEn needs 1 item/],
    ["REDUCE on one item", [0x4e, 0x52], /byte 3: REDUCE needs 2 item\(s\)/],
    ["BUILD on a dict", [0x7d, 0x7d, 0x62], /BUILD on a dict/],
    [
      "REDUCE on an int (a global index in LibTorch)",
      [0x4b, 0, 0x29, 0x52],
      /REDUCE on an int, which LibTorch cannot call/,
    ],
    ["SETITEMS with an odd count", [0x7d, 0x28, 0x4b, 1, 0x75], /odd number of items/],
    ["APPENDS with nothing beneath", [0x28, 0x4e, 0x65], /APPENDS with nothing beneath its MARK/],
    ["APPENDS into a None", [0x4e, 0x28, 0x4e, 0x65], /APPENDS on a None, not a list/],
    [
      "TUPLE taking items below its MARK",
      [0x4e, 0x28, 0x86],
      /TUPLEn needs 2 item\(s\) above the latest MARK, there are 0/,
    ],
    ["a memo index far ahead", [0x4e, 0x72, 0xff, 0xff, 0xff, 0x7f], /memo index 2147483647 skips ahead/],
    ["BINGET of nothing", [0x68, 3], /memo index 3 was never stored/],
    ["os.system", [0x63, ...g("os\nsystem\n")], /global os\.system is not allowed/],
    ["an unterminated GLOBAL", [0x63, ...g("torch")], /not a newline-terminated name/],
    [
      "a complex storage",
      [0x63, ...g("torch\nComplexFloatStorage\n")],
      /storage type torch\.ComplexFloatStorage is not supported/,
    ],
    ["LONG1 of 3 bytes", [0x8a, 3, 1, 2, 3], /LONG1 of 3 bytes/],
    ["a string past the end", [0x58, 0xff, 0xff, 0, 0], /ends in the middle/],
    ["two items at STOP", [0x4e, 0x4e], /STOP with 2 items/],
    ["a dict keyed by a list", [0x7d, 0x28, 0x5d, 0x4e, 0x75], /a dict key that is a list/],
    ["SETITEM (not read by LibTorch 1.13)", [0x7d, 0x4e, 0x4e, 0x73], /SETITEM \(0x73\) is not read by LibTorch/],
    ["a persistent id of the wrong shape", [0x4e, 0x51], /persistent id that is not/],
  ];
  for (const [label, ops, message] of cases) await rejects(t, wrap(ops), message, label);
  await rejects(
    t,
    makeTorchZip([
      { name: "archive/data.pkl", data: Uint8Array.from([0x80, 4, 0x4e, 0x2e]) },
      { name: "archive/version", data: Buffer.from("3") },
    ]),
    /protocol 4/,
    "protocol 4",
  );
  await rejects(
    t,
    makeTorchZip([
      { name: "archive/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e]) },
      { name: "archive/version", data: Buffer.from("3") },
    ]),
    /ends without STOP/,
    "no STOP",
  );
});

test("a deflated entry is capped before it is inflated; a lying size is caught while inflating", async (t) => {
  const numel = 16 * 1024 * 1024; // 64 MiB of float zeros deflate to ~64 KiB
  const pad = tensor("float32", [1], floats(1));
  const root = py.dict([
    ["epoch", 1],
    [
      "state_dict",
      py.dict([
        ["w", tensor("float32", [numel], new Float32Array(numel))],
        ["pad", pad],
      ]),
    ],
  ]);
  const entries = ptEntries(root).map((e): ZipEntry => (e.name.endsWith("/data/0") ? { ...e, deflate: true } : e));
  const bomb = makeTorchZip(entries);
  t.true(bomb.length < 200_000, `the bomb is ${bomb.length} bytes`);
  const e = await t.throwsAsync(importPt(bomb));
  t.regex(
    e!.message,
    new RegExp(
      /^bad\.pt: not a loadable PyTorch checkpoint: entry "archive\/data\/0" /.source +
        /declares 67108864 uncompressed bytes, more than the limit of \d+ per entry/.source,
    ),
  );
  // a caller who expects it raises the cap
  const ok = await importPt(bomb, "ok.pt", { maxUncompressedBytes: 2 ** 27 });
  t.deepEqual(ok.tensors.w!.shape, [numel]);
  // the header lies: 100 bytes declared (a 25-float storage), 64 MiB inside
  const liar = ptEntries(
    py.dict([
      ["w", tensor("float32", [25], new Float32Array(25))],
      ["pad", pad],
    ]),
  );
  const d = liar.find((x) => x.name === "archive/data/0")!;
  d.data = new Uint8Array(numel * 4);
  d.deflate = true;
  d.declare = { size: 100 };
  await rejects(t, makeTorchZip(liar), /entry "archive\/data\/0" inflates to more than its declared 100 bytes/, "liar");
  await t.throwsAsync(importPt(bomb, "x.pt", { maxUncompressedBytes: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(importPt(bomb, "x.pt", "big" as never), { instanceOf: TypeError });
});

test("a deflated checkpoint (re-zipped by another tool) reads the same as the stored one", async (t) => {
  const shared = new TorchStorage("float32", floats(12));
  const sd = {
    a: new TorchTensor(shared, [3, 4]),
    at: new TorchTensor(shared, [4, 3], { stride: [1, 4] }),
    tail: new TorchTensor(shared, [2], { storageOffset: 10 }),
    h: tensor("float16", [2], new Uint16Array([0x3c00, 0xc000])),
    i: tensor("int64", [2], new BigInt64Array([-5n, 7n])),
  };
  const stored = await importPt(releasedPt(sd), "stored.pt");
  const deflated = await importPt(
    makeTorchZip(
      ptEntries(
        py.dict([
          ["epoch", 1],
          ["state_dict", py.dict(Object.entries(sd).map(([k, v]) => [`module.${k}`, v]))],
        ]),
        {
          prefix: "checkpoint",
        },
      ).map((e) => ({ ...e, deflate: true })),
    ),
    "deflated.pt",
  );
  t.deepEqual(Object.keys(deflated.tensors), Object.keys(stored.tensors));
  for (const k of Object.keys(stored.tensors)) {
    t.deepEqual(deflated.tensors[k]!.shape, stored.tensors[k]!.shape, k);
    t.deepEqual(
      Array.from(deflated.tensors[k]!.data as Float32Array),
      Array.from(stored.tensors[k]!.data as Float32Array),
      k,
    );
  }
  t.deepEqual(
    Array.from(stored.tensors.at!.data as Float32Array),
    [0.5, 4.5, 8.5, 1.5, 5.5, 9.5, 2.5, 6.5, 10.5, 3.5, 7.5, 11.5],
  );
  t.deepEqual(Array.from(stored.tensors.h!.data as Float32Array), [1, -2]);
});

/** Offsets of an entry's data in a stored zip, from its central directory record and local header. */
function entryData(zip: Buffer, name: string): { start: number; end: number } {
  const eocd = zip.length - 22;
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < zip.readUInt16LE(eocd + 10); i++) {
    const n = zip.readUInt16LE(at + 28);
    const next = at + 46 + n + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    if (zip.toString("utf8", at + 46, at + 46 + n) === name) {
      const local = zip.readUInt32LE(at + 42);
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      return { start, end: start + zip.readUInt32LE(at + 20) };
    }
    at = next;
  }
  throw new Error(`no entry ${name}`);
}

test("a bit flip in a .pt is caught by its CRC-32", async (t) => {
  const fixture = readFileSync(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"));
  for (const name of ["checkpoint/data/0", "checkpoint/data/5", "checkpoint/data.pkl"]) {
    const { start, end } = entryData(fixture, name);
    for (const at of [start, Math.floor((start + end) / 2), end - 1]) {
      const flipped = Buffer.from(fixture);
      flipped[at]! ^= 0x10;
      const e = await t.throwsAsync(importPt(flipped), undefined, `${name} @${at}`);
      t.regex(e!.message, new RegExp(`entry "${name}": CRC-32 mismatch`), `${name} @${at}`);
    }
  }
  // the untouched fixture still reads, byte for byte the same tensors as the parity tests use
  const ok = await importPt(fixture, "fixture.pt");
  t.is(Object.keys(ok.tensors).length, 71);
});

test("ZIP structure: truncation, overlaps, duplicates, encryption and unknown methods are named", async (t) => {
  const good = releasedPt({ w: tensor("float32", [4], floats(4)) });
  const cases: Array<[string, Buffer, RegExp]> = [
    ["no end record", good.subarray(0, good.length - 10), /no ZIP end-of-central-directory record/],
    ["cut before the directory", good.subarray(0, 200), /no ZIP end-of-central-directory record/],
  ];
  const dup = makeTorchZip([
    { name: "checkpoint/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e, 0x2e]) },
    { name: "checkpoint/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e, 0x2e]) },
  ]);
  cases.push(["a duplicate entry", dup, /entry "checkpoint\/data\.pkl" appears twice/]);
  const enc = Buffer.from(good);
  const cd = enc.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  enc.writeUInt16LE(1, cd + 8); // "encrypted"
  cases.push(["an encrypted entry", enc, /is encrypted/]);
  const method = Buffer.from(good);
  method.writeUInt16LE(12, cd + 10); // bzip2
  cases.push(["bzip2", method, /uses compression method 12/]);
  const moved = Buffer.from(good);
  moved.writeUInt32LE(moved.readUInt32LE(cd + 42) + 1, cd + 42);
  cases.push(["a header offset that points nowhere", moved, /no local header at offset/]);
  // the overlapped-entries bomb: A's data runs over B's local header
  const ov = makeTorchZip(
    [
      { name: "a/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e, 0x2e]) },
      { name: "a/version", data: Buffer.from("3\n") },
    ],
    { align: 0 },
  );
  const grown = 4 + 30 + "a/version".length + 2;
  ov.writeUInt32LE(grown, 18);
  ov.writeUInt32LE(grown, 22);
  const ovCd = ov.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  ov.writeUInt32LE(grown, ovCd + 20);
  ov.writeUInt32LE(grown, ovCd + 24);
  cases.push(["overlapping entries", ov, /entries "a\/data\.pkl" and "a\/version" overlap/]);
  cases.push([
    "not a torch archive",
    makeTorchZip([{ name: "x.txt", data: Buffer.from("hi") }]),
    /entry "x\.txt" is not in a folder/,
  ]);
  cases.push([
    "no version",
    makeTorchZip([{ name: "a/data.pkl", data: Uint8Array.from([0x80, 2, 0x4e, 0x2e]) }]),
    /no a\/version/,
  ]);
  cases.push(["a version from the future", makePt(null, { version: "99\n" }), /format version 99/]);
  for (const [label, bytes, message] of cases) await rejects(t, bytes, message, label);
});

test("storages saved on a GPU are read to the CPU", async (t) => {
  const storage = new TorchStorage("float32", floats(3), "cuda:0");
  const r = await importPt(
    releasedPt({ w: new TorchTensor(storage, [3]), pad: tensor("float32", [1], floats(1)) }),
    "gpu.pt",
  );
  t.deepEqual(Array.from(r.tensors.w!.data as Float32Array), [0.5, 1.5, 2.5]);
});

test("a metadata config claiming terabytes is refused before the model is built", async (t) => {
  const model = ViLReF.create("tiny-vit");
  const state = await model.stateDict();
  const tensors = new Map<string, StTensor>(
    Object.entries(state).map(([k, v]) => [
      k,
      v.data instanceof BigInt64Array
        ? { dtype: "I64", shape: v.shape, data: v.data }
        : { dtype: "F32", shape: v.shape, data: v.data as Float32Array },
    ]),
  );
  const huge = {
    ...presetConfig("tiny-vit"),
    vision_width: 1_048_576,
    vision_layers: 4096,
    text_hidden_size: 1_048_576,
    text_num_attention_heads: 16_384,
  };
  const file = join(scratch, "huge.safetensors");
  await writeSafetensors(file, tensors, { vilref: JSON.stringify({ format: 1, config: huge }) });
  const rss = process.memoryUsage().rss;
  const e = await t.throwsAsync(ViLReF.load(file), { instanceOf: CheckpointError });
  t.regex(
    e!.message,
    new RegExp(
      /huge\.safetensors: its metadata config does not fit the checkpoint's tensors: /.source +
        /text_hidden_size is 1048576 in its metadata config but 32 in the tensors /.source +
        /\(bert\.embeddings\.word_embeddings\.weight \[/.source,
    ),
  );
  t.true(process.memoryUsage().rss - rss < 512 * 2 ** 20, "nothing large was allocated");
  // a .pt with a --config that does not fit: the same, naming the field
  const pt = join(scratch, "fixture-copy.pt");
  writeFileSync(pt, readFileSync(sharedPath("fixtures", "tiny-vit", "checkpoint.pt")));
  const cfg = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "config.json"), "utf8"));
  await t.throwsAsync(readCheckpoint(pt, { ...cfg, vision_layers: 40 }), {
    instanceOf: CheckpointError,
    message: new RegExp(
      /the config given does not fit the checkpoint's tensors: /.source +
        /vision_layers is 40 in the config given but 2 in the tensors \(visual\.transformer\.resblocks\.N\.\*\)/.source,
    ),
  });
  // strict: false may lack tensors, but not ask for terabytes
  const partial = join(scratch, "partial.safetensors");
  await writeSafetensors(partial, new Map([["logit_scale", tensors.get("logit_scale")!]]), {
    vilref: JSON.stringify({ format: 1, config: huge }),
  });
  await t.throwsAsync(ViLReF.load(partial, { strict: false }), {
    instanceOf: CheckpointError,
    message: /asks for about .* parameters/,
  });
});

test("a .pt loaded without a config warns that its head widths were guessed", async (t) => {
  const warnings: string[] = [];
  const file = join(scratch, "noconfig.pt");
  writeFileSync(file, readFileSync(sharedPath("fixtures", "tiny-vit", "checkpoint.pt")));
  await ViLReF.load(file, { onWarning: (m) => warnings.push(m) });
  t.is(warnings.length, 1);
  t.regex(warnings[0]!, /noconfig\.pt has no config: its attention heads were guessed/);
  const cfg = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "config.json"), "utf8"));
  await ViLReF.load(file, { config: cfg, onWarning: (m) => warnings.push(m) });
  t.is(warnings.length, 1, "no warning with a config");
  const out = join(scratch, "noconfig.safetensors");
  const r = spawnSync(process.execPath, [join(packageRoot, "bin/vilref.js"), "convert", file, out], {
    encoding: "utf8",
  });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /^warning: .*noconfig\.pt has no config: its attention heads were guessed/m);
});

test("the released layout with every storage type still imports exactly", async (t) => {
  const values: PyValue = py.dict([
    ["epoch", 1],
    [
      "state_dict",
      py.dict([
        ["module.x", tensor("bfloat16", [2], new Uint16Array([0x3f80, 0x4040]))],
        ["module.m", tensor("bool", [3], new Uint8Array([1, 0, 1]))],
      ]),
    ],
  ]);
  const r = await importPt(makePt(values), "types.pt");
  t.deepEqual(Array.from(r.tensors.x!.data as Float32Array), [1, 3]);
  t.deepEqual(Array.from(r.tensors.m!.data as unknown as Uint8Array), [1, 0, 1]);
  t.is(picklePt(values).storages.length, 2);
});
