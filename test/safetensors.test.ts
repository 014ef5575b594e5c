import test from "ava";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  CheckpointError,
  encodeSafetensors,
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  stItemSize,
  writeSafetensors,
  type StDtype,
  type StTensor,
} from "../lib/checkpoint/safetensors.js";

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(bytesOf(a), bytesOf(b)) === 0;
}

/** Tensors of every dtype, with NaN payloads, -0, infinities and integer extremes. */
function everyDtype(): Map<string, StTensor> {
  const f32 = new Float32Array([0, -0, 1.5, -Infinity, 3.4028234663852886e38, 0]);
  new Uint32Array(f32.buffer)[5] = 0xffc0_0001; // negative NaN with a payload
  const f64 = new Float64Array([-0, Math.E, Infinity, 0]);
  new BigUint64Array(f64.buffer)[3] = 0x7ff0_0000_0000_0001n; // signalling NaN
  const m = new Map<string, StTensor>();
  m.set("visual.proj", { dtype: "F32", shape: [2, 3], data: f32 });
  m.set("f64", { dtype: "F64", shape: [4], data: f64 });
  m.set("half", { dtype: "F16", shape: [3], data: new Uint16Array([0x8000, 0x7c00, 0x7e55]) });
  m.set("bf16", { dtype: "BF16", shape: [1, 3], data: new Uint16Array([0x8000, 0x7f80, 0x7fc1]) });
  m.set("ids", { dtype: "I64", shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 5n]) });
  m.set("i32", { dtype: "I32", shape: [2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) });
  m.set("i16", { dtype: "I16", shape: [3], data: new Int16Array([-32768, 32767, 1]) });
  m.set("i8", { dtype: "I8", shape: [3], data: new Int8Array([-128, 127, 0]) });
  m.set("u8", { dtype: "U8", shape: [5], data: new Uint8Array([0, 1, 128, 255, 9]) });
  m.set("mask", { dtype: "BOOL", shape: [2, 2], data: new Uint8Array([1, 0, 0, 1]) });
  m.set("scalar", { dtype: "F32", shape: [], data: new Float32Array([7]) });
  m.set("empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) });
  m.set("名前.weight", { dtype: "I8", shape: [1], data: new Int8Array([3]) });
  return m;
}

function u64le(n: number | bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** A file from raw header text and a data buffer (no validation, no padding). */
function rawFile(header: string, data: Uint8Array | number = 0): Uint8Array {
  const h = Buffer.from(header, "utf8");
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  return Buffer.concat([u64le(h.length), h, d]);
}

function entry(dtype: string, shape: unknown, offsets: unknown): string {
  return JSON.stringify({ dtype, shape, data_offsets: offsets });
}

test("save -> load is bit-exact for every dtype, with metadata", (t) => {
  const tensors = everyDtype();
  const metadata = {
    config: JSON.stringify({ preset: "tiny" }),
    labels: "正常,糖尿病视网膜病变",
    vocab_sha256: "ab".repeat(32),
  };
  const bytes = encodeSafetensors(tensors, metadata);
  const back = parseSafetensors(bytes, { name: "every.safetensors" });
  t.deepEqual(back.metadata, metadata);
  t.deepEqual([...back.tensors.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, want] of tensors) {
    const got = back.tensors.get(name)!;
    t.is(got.dtype, want.dtype, name);
    t.deepEqual(got.shape, want.shape, name);
    t.is(got.data.constructor, want.data.constructor, name);
    t.is(got.data.length, want.data.length, name);
    t.true(sameBytes(got.data, want.data), `${name}: bytes differ`);
  }
  // Record input gives the same bytes as Map input, whatever the insertion order.
  const reversed = Object.fromEntries([...tensors.entries()].reverse());
  t.true(sameBytes(encodeSafetensors(reversed, metadata), bytes), "layout is deterministic");
  // No metadata: no __metadata__ entry, and an empty object back.
  const plain = parseSafetensors(encodeSafetensors(tensors));
  t.deepEqual(plain.metadata, {});
  t.false(Buffer.from(encodeSafetensors(tensors)).includes("__metadata__"));
});

test("layout: header padded to a multiple of 8, every tensor aligned to its item size, views zero-copy", (t) => {
  const bytes = encodeSafetensors(everyDtype(), { a: "b" });
  const n = Number(bytes.readBigUInt64LE(0));
  t.is(n % 8, 0);
  t.regex(bytes.subarray(8, 8 + n).toString("utf8"), /\} *$/);
  const header = parseSafetensorsHeader(bytes);
  t.is(header.dataOffset, 8 + n);
  t.is(header.dataBytes, bytes.length - 8 - n);
  for (const e of header.entries) t.is((header.dataOffset + e.begin) % stItemSize(e.dtype), 0, `${e.name} is aligned`);
  // Parsing from an 8-aligned copy gives views into that copy.
  const aligned = new Uint8Array(new ArrayBuffer(bytes.length));
  aligned.set(bytes);
  for (const [name, tensor] of parseSafetensors(aligned).tensors)
    t.is(tensor.data.buffer, aligned.buffer, `${name} is a view`);
  // Shifted by one byte, multi-byte tensors are copied, and still equal.
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const fromShifted = parseSafetensors(shifted.subarray(1));
  const f32 = fromShifted.tensors.get("visual.proj")!;
  t.not(f32.data.buffer, shifted.buffer);
  t.true(sameBytes(f32.data, everyDtype().get("visual.proj")!.data));
});

test("encodeSafetensors writes the documented byte layout", (t) => {
  const bytes = encodeSafetensors({
    a: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
    b: { dtype: "U8", shape: [1], data: new Uint8Array([9]) },
  });
  const json =
    '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}}';
  const padded = json + " ".repeat((8 - (json.length % 8)) % 8);
  const expected = Buffer.concat([
    u64le(padded.length),
    Buffer.from(padded),
    Buffer.from(new Float32Array([1, 2]).buffer),
    Buffer.from([9]),
  ]);
  t.true(sameBytes(bytes, expected), `${bytes.toString("latin1")}`);
});

test("encodeSafetensors rejects inconsistent tensors with the tensor's name", (t) => {
  const e1 = t.throws(() => encodeSafetensors({ w: { dtype: "F32", shape: [3], data: new Float32Array(2) } }), {
    instanceOf: RangeError,
  });
  t.regex(e1?.message ?? "", /"w"/);
  const e2 = t.throws(() => encodeSafetensors({ w: { dtype: "F64", shape: [2], data: new Float32Array(2) } }), {
    instanceOf: TypeError,
  });
  t.regex(e2?.message ?? "", /"w".*F64 needs a Float64Array/);
  t.throws(() => encodeSafetensors({ w: { dtype: "Q4" as StDtype, shape: [2], data: new Float32Array(2) } }), {
    instanceOf: TypeError,
  });
  t.throws(() => encodeSafetensors({ w: { dtype: "F32", shape: [-2], data: new Float32Array(2) } }), {
    instanceOf: RangeError,
  });
  t.throws(() => encodeSafetensors({ __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } }), {
    instanceOf: TypeError,
  });
  t.throws(() => encodeSafetensors({}, { a: 1 as unknown as string }), { instanceOf: TypeError });
});

test("malformed files give CheckpointError naming the file and the culprit", (t) => {
  const good = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
  const f32x4 = (name: string, b: number, e: number): string => `${JSON.stringify(name)}:${entry("F32", [4], [b, e])}`;
  const cases: Array<[string, Uint8Array, RegExp, string | undefined]> = [
    ["empty file", new Uint8Array(0), /0 bytes is too short/, undefined],
    ["truncated length", good.subarray(0, 5), /5 bytes is too short/, undefined],
    [
      "truncated data",
      good.subarray(0, good.length - 3),
      /tensor "w": data_offsets \[0, 8\] lie outside the data buffer of 5 bytes/,
      "w",
    ],
    [
      "truncated header",
      good.subarray(0, 20),
      /header length \d+ runs past the end of the file \(20 bytes\)/,
      undefined,
    ],
    [
      "header length past the end",
      Buffer.concat([u64le(1000), good.subarray(8)]),
      /header length 1000 runs past the end/,
      undefined,
    ],
    [
      "header length 2^64-1",
      Buffer.concat([u64le(2n ** 64n - 1n), good.subarray(8)]),
      /header length 18446744073709551615 exceeds the limit/,
      undefined,
    ],
    ["not UTF-8", rawFile("{}").fill(0xff, 8, 9), /not valid UTF-8/, undefined],
    ["not JSON", rawFile("{nope}"), /not valid JSON/, undefined],
    ["JSON array", rawFile("[1,2]"), /not a JSON object/, undefined],
    ["JSON null", rawFile("null"), /not a JSON object/, undefined],
    ["empty header", rawFile(""), /not valid JSON/, undefined],
    ["unknown dtype", rawFile(`{"w":${entry("F8_E9", [2], [0, 2])}}`, 2), /tensor "w": unknown dtype "F8_E9"/, "w"],
    [
      "dtype not a string",
      rawFile(`{"w":${entry(4 as unknown as string, [2], [0, 2])}}`, 2),
      /tensor "w": unknown dtype 4/,
      "w",
    ],
    [
      "offsets outside",
      rawFile(`{"w":${entry("U8", [16], [0, 16])}}`, 8),
      /tensor "w": data_offsets \[0, 16\] lie outside the data buffer of 8 bytes/,
      "w",
    ],
    [
      "negative offset",
      rawFile(`{"w":${entry("U8", [2], [-2, 0])}}`, 0),
      /tensor "w": data_offsets must be two non-negative integers \[begin, end\], got \[-2,0\]/,
      "w",
    ],
    [
      "fractional offset",
      rawFile(`{"w":${entry("U8", [2], [0.5, 2.5])}}`, 3),
      /tensor "w": data_offsets must be two non-negative integers/,
      "w",
    ],
    ["string offset", rawFile(`{"w":${entry("U8", [2], ["0", "2"])}}`, 2), /tensor "w": data_offsets must be/, "w"],
    ["three offsets", rawFile(`{"w":${entry("U8", [2], [0, 2, 4])}}`, 2), /tensor "w": data_offsets must be/, "w"],
    [
      "huge offset",
      rawFile(`{"w":${entry("U8", [2], [0, 2 ** 60])}}`, 2),
      /tensor "w": data_offsets must be|lie outside/,
      "w",
    ],
    [
      "begin after end",
      rawFile(`{"w":${entry("U8", [0], [4, 2])}}`, 4),
      /tensor "w": data_offsets \[4, 2\] begin after they end/,
      "w",
    ],
    [
      "overlap",
      rawFile(`{${f32x4("a", 0, 16)},${f32x4("b", 8, 24)}}`, 24),
      /tensor "b": tensors "a" \[0, 16\] and "b" \[8, 24\] overlap/,
      "b",
    ],
    [
      "identical ranges",
      rawFile(`{${f32x4("a", 0, 16)},${f32x4("b", 0, 16)}}`, 16),
      /tensors "a" \[0, 16\] and "b" \[0, 16\] overlap/,
      "b",
    ],
    [
      "hole",
      rawFile(`{${f32x4("a", 0, 16)},${f32x4("b", 24, 40)}}`, 40),
      /tensor "b": hole of 8 bytes between tensor "a" \[0, 16\] and tensor "b" \[24, 40\]/,
      "b",
    ],
    [
      "leading hole",
      rawFile(`{${f32x4("a", 8, 24)}}`, 24),
      /hole of 8 bytes at the start of the data buffer, before tensor "a"/,
      "a",
    ],
    [
      "trailing bytes",
      rawFile(`{${f32x4("a", 0, 16)}}`, 20),
      /4 trailing bytes of the data buffer \[16, 20\) belong to no tensor/,
      "a",
    ],
    ["data but no tensors", rawFile(`{}`, 4), /holds 4 bytes but the header lists no tensors/, undefined],
    [
      "shape/byte mismatch",
      rawFile(`{"visual.proj":${entry("F32", [4, 8], [0, 100])}}`, 100),
      /tensor "visual.proj": data_offsets \[0, 100\] hold 100 bytes but shape \[4, 8\] of F32 needs 128/,
      "visual.proj",
    ],
    [
      "overflowing shape",
      rawFile(`{"w":${entry("F64", [2 ** 52, 2 ** 52, 2 ** 52], [0, 8])}}`, 8),
      new RegExp(
        /tensor "w": data_offsets \[0, 8\] hold 8 bytes but shape .* /.source +
          /needs 730750818665451459101842416358141509827966271488$/.source,
      ),
      "w",
    ],
    [
      "zero dim",
      rawFile(`{"w":${entry("F32", [0, 2 ** 53 - 1], [0, 4])}}`, 4),
      /hold 4 bytes but shape \[0, 9007199254740991\] of F32 needs 0/,
      "w",
    ],
    [
      "negative dim",
      rawFile(`{"w":${entry("F32", [-1], [0, 4])}}`, 4),
      /tensor "w": shape must be an array of non-negative integers, got \[-1\]/,
      "w",
    ],
    ["shape not array", rawFile(`{"w":${entry("F32", 1, [0, 4])}}`, 4), /tensor "w": shape must be an array/, "w"],
    [
      "extra field",
      rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"exec":"rm -rf /"}}`, 1),
      /tensor "w": unexpected field "exec"/,
      "w",
    ],
    ["missing field", rawFile(`{"w":{"dtype":"U8","shape":[1]}}`, 1), /tensor "w": missing field "data_offsets"/, "w"],
    ["entry not object", rawFile(`{"w":[1,2,3]}`, 1), /tensor "w": entry must be an object/, "w"],
    [
      "non-string metadata",
      rawFile(`{"__metadata__":{"epoch":3},"w":${entry("U8", [1], [0, 1])}}`, 1),
      /__metadata__ entry "epoch" must be a string, got 3/,
      undefined,
    ],
    ["metadata not object", rawFile(`{"__metadata__":"x"}`), /__metadata__ must be an object/, undefined],
    ["metadata null", rawFile(`{"__metadata__":null}`), /__metadata__ must be an object/, undefined],
  ];
  for (const [label, bytes, re, tensor] of cases) {
    const err = t.throws(
      () => parseSafetensors(bytes, { name: "model.safetensors" }),
      { instanceOf: CheckpointError },
      label,
    );
    t.true(err?.message.startsWith("model.safetensors: "), `${label}: ${err?.message}`);
    t.regex(err?.message ?? "", re, label);
    t.is(err?.file, "model.safetensors", label);
    t.is(err?.tensor, tensor, label);
  }
  // Oversize header: over the caller's cap (and over the default cap, without reading it).
  const big = rawFile(`{"__metadata__":{"pad":"${"x".repeat(5000)}"}}`);
  t.notThrows(() => parseSafetensors(big));
  const capped = t.throws(() => parseSafetensors(big, { name: "m.st", maxHeaderBytes: 4096 }), {
    instanceOf: CheckpointError,
  });
  t.regex(capped?.message ?? "", /^m\.st: header length 50\d\d exceeds the limit of 4096 bytes/);
  const claimed = Buffer.concat([u64le(100 * 1024 * 1024 + 1), Buffer.from("{}")]);
  t.throws(() => parseSafetensors(claimed), {
    instanceOf: CheckpointError,
    message: /exceeds the limit of 104857600 bytes/,
  });
});

test("valid edge cases parse: empty file body, zero-size tensors, whitespace padding", (t) => {
  t.is(parseSafetensors(rawFile("{}")).tensors.size, 0);
  const zero = parseSafetensors(rawFile(`{"z":${entry("F32", [0], [0, 0])},"a":${entry("U8", [2], [0, 2])}}   `, 2));
  t.deepEqual(zero.tensors.get("z")?.shape, [0]);
  t.is(zero.tensors.get("z")?.data.length, 0);
  t.deepEqual([...(zero.tensors.get("a")!.data as Uint8Array)], [0, 0]);
});

test("writeSafetensors is atomic; readSafetensors names the path in errors", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vilref-st-"));
  try {
    const file = path.join(dir, "model.safetensors");
    await writeSafetensors(file, everyDtype(), { step: "1" });
    const first = await readFile(file);
    // A write that fails validation leaves the existing file untouched.
    await t.throwsAsync(writeSafetensors(file, { w: { dtype: "F32", shape: [5], data: new Float32Array(1) } }));
    t.true(sameBytes(await readFile(file), first));
    // A write whose rename fails (the target is a non-empty directory) leaves no temporary file.
    const blocker = path.join(dir, "blocked.safetensors");
    await mkdir(blocker);
    await writeFile(path.join(blocker, "keep"), "x");
    await t.throwsAsync(writeSafetensors(blocker, everyDtype()));
    t.deepEqual((await readdir(dir)).sort(), ["blocked.safetensors", "model.safetensors"]);
    t.deepEqual(await readdir(blocker), ["keep"]);
    // Overwrite, then read back.
    await writeSafetensors(file, { only: { dtype: "I32", shape: [2], data: new Int32Array([4, 5]) } }, { step: "2" });
    const back = await readSafetensors(file);
    t.deepEqual([...back.tensors.keys()], ["only"]);
    t.deepEqual(back.metadata, { step: "2" });
    await writeFile(path.join(dir, "bad.safetensors"), rawFile(`{"w":${entry("F32", [3], [0, 8])}}`, 8));
    const err = await t.throwsAsync(readSafetensors(path.join(dir, "bad.safetensors")), {
      instanceOf: CheckpointError,
    });
    t.true(err?.message.startsWith(`${path.join(dir, "bad.safetensors")}: tensor "w": `), err?.message);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** mulberry32: a small seeded PRNG, so the fuzz loop is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test("fuzz: random header mutations either parse within bounds or throw CheckpointError", (t) => {
  const ITERATIONS = 3000;
  const rand = prng(0x5eed_1234);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const base = encodeSafetensors(
    {
      "visual.proj": { dtype: "F32", shape: [4, 2], data: new Float32Array(8).map((_, i) => i - 3.5) },
      ids: { dtype: "I64", shape: [3], data: new BigInt64Array([1n, 2n, 3n]) },
      half: { dtype: "BF16", shape: [2, 2], data: new Uint16Array([1, 2, 3, 4]) },
      mask: { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
      empty: { dtype: "F64", shape: [0], data: new Float64Array(0) },
    },
    { config: '{"preset":"tiny"}' },
  );
  const baseN = Number(base.readBigUInt64LE(0));
  const baseHeader = base.subarray(8, 8 + baseN).toString("latin1");
  const baseData = base.subarray(8 + baseN);
  const numbers = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "8",
    "16",
    "24",
    "1.5",
    "1e3",
    "-0",
    "9007199254740993",
    "18446744073709551616",
    "1e400",
    "null",
    '"8"',
    "[]",
    "{}",
  ];
  const tokens = [
    "{",
    "}",
    "[",
    "]",
    '"',
    ",",
    ":",
    " ",
    "\\",
    "\u0000",
    "é",
    "F32",
    "BOOL",
    "I64",
    "X9",
    "__metadata__",
    "dtype",
    "shape",
    "data_offsets",
  ];
  const dtypes = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "U16", "", "f32"];
  let parsed = 0;
  let rejected = 0;
  const started = Date.now();
  for (let iter = 0; iter < ITERATIONS; iter++) {
    let header = baseHeader;
    let data: Uint8Array = baseData;
    let lengthOverride: bigint | undefined;
    let truncateTo: number | undefined;
    const mutations = 1 + int(3);
    for (let m = 0; m < mutations; m++) {
      const kind = int(9);
      if (kind === 0) {
        // Replace one number in the header.
        const spots = [...header.matchAll(/-?\d+/g)];
        if (spots.length) {
          const s = pick(spots);
          header =
            header.slice(0, s.index) +
            (rand() < 0.5 ? pick(numbers) : String(int(80))) +
            header.slice(s.index! + s[0].length);
        }
      } else if (kind === 1) {
        // Flip a random byte of the header.
        const i = int(header.length);
        header = header.slice(0, i) + String.fromCharCode(header.charCodeAt(i) ^ (1 << int(8))) + header.slice(i + 1);
      } else if (kind === 2) {
        // Delete a span.
        const i = int(header.length);
        header = header.slice(0, i) + header.slice(i + 1 + int(12));
      } else if (kind === 3) {
        // Insert a JSON-ish token.
        const i = int(header.length + 1);
        header = header.slice(0, i) + pick(tokens) + header.slice(i);
      } else if (kind === 4) {
        // Swap a dtype.
        const spots = [...header.matchAll(/"dtype":"([A-Z0-9_]*)"/g)];
        if (spots.length) {
          const s = pick(spots);
          header = header.slice(0, s.index) + `"dtype":"${pick(dtypes)}"` + header.slice(s.index! + s[0].length);
        }
      } else if (kind === 5) {
        // Lie about the header length.
        lengthOverride = pick([
          0n,
          1n,
          7n,
          BigInt(header.length - 1),
          BigInt(header.length + 1),
          BigInt(header.length + 8 + int(64)),
          2n ** 32n,
          2n ** 63n,
          2n ** 64n - 1n,
        ]);
      } else if (kind === 6) {
        // Truncate the file, or grow the data buffer.
        if (rand() < 0.5) truncateTo = int(8 + header.length + data.length);
        else data = Buffer.concat([data, new Uint8Array(1 + int(16))]);
      } else if (kind === 7) {
        // Duplicate a span of the header elsewhere.
        const i = int(header.length);
        const span = header.slice(i, i + 1 + int(30));
        const j = int(header.length + 1);
        header = header.slice(0, j) + span + header.slice(j);
      } else {
        // Shrink the data buffer.
        data = data.subarray(0, int(data.length + 1));
      }
    }
    const h = Buffer.from(header, "latin1");
    let file: Uint8Array = Buffer.concat([u64le(lengthOverride ?? BigInt(h.length)), h, data]);
    if (truncateTo !== undefined) file = file.subarray(0, truncateTo);
    let result: ReturnType<typeof parseSafetensors>;
    let header2: ReturnType<typeof parseSafetensorsHeader>;
    try {
      result = parseSafetensors(file, { name: "fuzz.safetensors", maxHeaderBytes: 1 << 20 });
      header2 = parseSafetensorsHeader(file, { name: "fuzz.safetensors", maxHeaderBytes: 1 << 20 });
    } catch (e) {
      if (!(e instanceof CheckpointError)) {
        t.fail(`iteration ${iter}: ${(e as Error)?.name}: ${(e as Error)?.message}\nheader: ${JSON.stringify(header)}`);
        return;
      }
      if (!e.message.startsWith("fuzz.safetensors: "))
        t.fail(`iteration ${iter}: message does not name the file: ${e.message}`);
      rejected++;
      continue;
    }
    parsed++;
    t.is(result.tensors.size, header2.entries.length);
    for (const e of header2.entries) {
      const tensor = result.tensors.get(e.name);
      if (!tensor) {
        t.fail(`iteration ${iter}: tensor ${e.name} missing`);
        return;
      }
      const ok =
        e.begin <= e.end && header2.dataOffset + e.end <= file.length && e.end - e.begin === tensor.data.byteLength;
      const expected = file.subarray(header2.dataOffset + e.begin, header2.dataOffset + e.end);
      const inside =
        tensor.data.buffer !== file.buffer ||
        (tensor.data.byteOffset >= file.byteOffset &&
          tensor.data.byteOffset + tensor.data.byteLength <= file.byteOffset + file.length);
      if (!ok || !inside || !sameBytes(tensor.data, expected)) {
        t.fail(
          `iteration ${iter}: tensor ${e.name} [${e.begin}, ${e.end}] ` +
            `escapes the file of ${file.length} bytes or has the wrong bytes`,
        );
        return;
      }
    }
  }
  const ms = Date.now() - started;
  t.log(`${ITERATIONS} mutated files: ${parsed} parsed, ${rejected} rejected with CheckpointError, ${ms} ms`);
  t.true(parsed > 0 && rejected > ITERATIONS / 2, "the mutations exercise both outcomes");
  t.true(ms < 10_000, `fuzz loop took ${ms} ms`);
});
