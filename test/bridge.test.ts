// The typed boundary: round trips, zero-copy both ways, and a named error for every bad argument.
import test from "ava";
import { native } from "../lib/native.js";
import type { ResolvedHeadConfig, TensorArray, TensorData } from "../lib/native.js";

const addon = native();

const cases: [string, TensorArray][] = [
  ["Float32Array", Float32Array.from([1.5, -2.25, 3e-8, 4e30, 0, -0, 7, 8])],
  ["Float64Array", Float64Array.from([1e-300, -2, Math.PI, 4, 5, 6, 7, 8])],
  ["Int32Array", Int32Array.from([2147483647, -2147483648, 0, 1, -1, 5, 6, 7])],
  ["BigInt64Array", BigInt64Array.from([9007199254740993n, -(2n ** 63n), 0n, 1n, -1n, 21128n, 6n, 7n])],
  ["Uint8Array", Uint8Array.from([0, 255, 1, 2, 3, 4, 5, 6])],
  ["Int8Array", Int8Array.from([-128, 127, 0, 1, 2, 3, 4, 5])],
  ["Int16Array", Int16Array.from([-32768, 32767, 0, 1, 2, 3, 4, 5])],
];

for (const [name, data] of cases) {
  test(`${name} round-trips with its dtype and shape, zero-copy in and out`, async (t) => {
    const r = await addon.debug.echo({ data, shape: [2, 4] });
    t.is(r.output.data.constructor.name, name);
    t.deepEqual(r.output.shape, [2, 4]);
    t.deepEqual(
      Array.from(r.output.data as ArrayLike<number | bigint>),
      Array.from(data as ArrayLike<number | bigint>),
    );
    t.is(r.inputAddress, addon.debug.addressOf(data), "LibTorch read the JS memory in place");
    t.is(r.outputAddress, addon.debug.addressOf(r.output.data), "JS sees LibTorch's result memory in place");
    t.not(r.outputAddress, r.inputAddress);
  });
}

test("a subarray is read in place at its byte offset", async (t) => {
  const whole = Float32Array.from({ length: 16 }, (_, i) => i);
  const part = whole.subarray(5, 11);
  const r = await addon.debug.echo({ data: part, shape: [3, 2] });
  t.deepEqual(Array.from(r.output.data), [5, 6, 7, 8, 9, 10]);
  t.is(r.inputAddress, addon.debug.addressOf(whole) + 20n);
});

test("non-contiguous results are made contiguous: a transpose comes back in row-major order", async (t) => {
  const r = await addon.debug.echo({ data: Int32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] }, { transpose: true });
  t.deepEqual(r.output.shape, [3, 2]);
  t.deepEqual(Array.from(r.output.data), [1, 4, 2, 5, 3, 6]);
  t.is(r.outputAddress, addon.debug.addressOf(r.output.data));
});

test("bfloat16 and float16 results reach JS as Float32Array within their precision", async (t) => {
  const data = Float32Array.from([1, 1 / 3, -1000.5, 65504, 1e-3, 3.14159]);
  for (const [cast, eps] of [
    ["bfloat16", 2 ** -8],
    ["float16", 2 ** -11],
  ] as const) {
    const r = await addon.debug.echo({ data, shape: [6] }, { cast });
    t.true(r.output.data instanceof Float32Array);
    data.forEach((v, i) =>
      t.true(Math.abs(r.output.data[i]! - v) <= Math.abs(v) * eps, `${cast}[${i}]: ${r.output.data[i]} vs ${v}`),
    );
    t.not(Array.from(r.output.data).join(), Array.from(data).join(), `${cast} really rounded`);
  }
});

test("empty tensors round-trip", async (t) => {
  const r = await addon.debug.echo({ data: new Float32Array(0), shape: [0, 3] });
  t.deepEqual(r.output.shape, [0, 3]);
  t.is(r.output.data.length, 0);
});

const x = (data: unknown, shape: unknown) => ({ data, shape }) as unknown as TensorData;

test("every bad tensor argument gets a TypeError or RangeError naming it", async (t) => {
  const head = new addon.Head({ inFeatures: 4, hidden: [], outFeatures: 2, activation: "gelu", seed: 0 });
  const bad: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    [undefined, TypeError, /^input: expected an object \{ data: Float32Array, shape: number\[\] \}, got undefined$/],
    [new Float32Array(4), TypeError, /^input: expected an object .* got Float32Array$/],
    [x([1, 2, 3, 4], [1, 4]), TypeError, /^input\.data: expected Float32Array, got an Array$/],
    [x(new Float64Array(4), [1, 4]), TypeError, /^input\.data: expected Float32Array, got Float64Array$/],
    [x(new Uint32Array(4), [1, 4]), TypeError, /^input\.data: expected Float32Array, got Uint32Array$/],
    [
      x(new Float32Array(4), "1,4"),
      TypeError,
      /^input\.shape: expected an array of non-negative integers, got a string$/,
    ],
    [x(new Float32Array(4), [1, 4.5]), TypeError, /^input\.shape\[1\]: expected a non-negative integer/],
    [x(new Float32Array(4), [1, "4"]), TypeError, /^input\.shape\[1\]: expected a non-negative integer, got a string$/],
    [x(new Float32Array(4), [-1, 4]), RangeError, /^input\.shape\[0\]: -1 is negative$/],
    [x(new Float32Array(4), [4]), RangeError, /^input: expected shape \[\*, 4\] \(2-D\), got \[4\]$/],
    [x(new Float32Array(6), [2, 3]), RangeError, /^input: expected shape \[\*, 4\] \(2-D\), got \[2, 3\]$/],
    [x(new Float32Array(7), [2, 4]), RangeError, /^input: shape \[2, 4\] needs 8 elements, but data has 7$/],
    [
      x(new Float32Array(4), [2 ** 40, 4]),
      RangeError,
      /^input: shape \[1099511627776, 4\] needs 4398046511104 elements, but data has 4$/,
    ],
    [
      x(Float32Array.from([0, 1, NaN, 2]), [1, 4]),
      RangeError,
      /^input\.data\[2\] is NaN: non-finite values are not allowed here$/,
    ],
    [x(Float32Array.from([0, 1, 2, -Infinity]), [1, 4]), RangeError, /^input\.data\[3\] is -Infinity/],
  ];
  for (const [arg, type, message] of bad) {
    const error = await t.throwsAsync(head.forward(arg as TensorData), { instanceOf: type, message });
    t.is(error?.constructor, type, String(message));
  }
  // and the process, the object and its queue are fine afterwards
  const ok = await head.forward({ data: new Float32Array(8), shape: [2, 4] });
  t.deepEqual(ok.shape, [2, 2]);
  t.is(head.pending, 0);
});

test("non-finite values pass where they are allowed", async (t) => {
  const r = await addon.debug.echo({ data: Float32Array.from([NaN, Infinity]), shape: [2] });
  t.true(Number.isNaN(r.output.data[0]));
  await t.throwsAsync(addon.debug.echo({ data: Float32Array.from([0, NaN]), shape: [2] }, { finite: true }), {
    instanceOf: RangeError,
    message: /^tensor\.data\[1\] is NaN/,
  });
});

test("bad options and settings are named", async (t) => {
  await t.throwsAsync(addon.debug.echo({ data: new Float32Array(2), shape: [2] }, { cast: "int4" as "bfloat16" }), {
    instanceOf: RangeError,
    message: /^options\.cast:/,
  });
  await t.throwsAsync(addon.debug.echo({ data: new Float32Array(2), shape: [2] }, { transpose: true }), {
    instanceOf: RangeError,
    message: /^options\.transpose: needs a 2-D tensor, got 1-D$/,
  });
  t.throws(() => addon.setNumThreads(0), { instanceOf: RangeError, message: /^threads: 0 is outside \[1, 4096\]$/ });
  t.throws(() => addon.setNumThreads(1.5), { instanceOf: TypeError, message: /^threads: expected an integer/ });
  t.throws(() => addon.setNumThreads("2" as unknown as number), {
    instanceOf: TypeError,
    message: /^threads: expected an integer, got a string$/,
  });
  t.throws(() => addon.debug.addressOf([1, 2] as unknown as Float32Array), {
    instanceOf: TypeError,
    message: /^array: expected a typed array, got an Array$/,
  });
});

test("a c10::Error reaches JS as an Error with LibTorch's one-line message, no C++ backtrace", async (t) => {
  const sync = t.throws(() => addon.debug.torchError("shapes do not line up: 3 vs 4"));
  t.is(sync?.constructor, Error);
  t.is(sync?.message, "shapes do not line up: 3 vs 4");
  const async = await t.throwsAsync(addon.debug.torchError("queue is full", true)!);
  t.is(async?.constructor, Error);
  t.is(async?.message, "queue is full");
  for (const e of [sync, async]) t.notRegex(e!.message, /Exception raised from|frame #|\n/);
});

test("head config errors name the field, from the native side too", (t) => {
  const Head = addon.Head;
  const full: ResolvedHeadConfig = { inFeatures: 4, hidden: [], outFeatures: 2, activation: "gelu", seed: 0 };
  t.throws(() => new Head({ ...full, inFeatures: 0 }), {
    instanceOf: RangeError,
    message: /^config\.inFeatures: 0 is outside/,
  });
  t.throws(() => new Head({ ...full, hidden: [8, -1] }), {
    instanceOf: RangeError,
    message: /^config\.hidden\[1\]:/,
  });
  t.throws(() => new Head({ ...full, activation: "swish" as "gelu" }), {
    instanceOf: RangeError,
    message: /^config\.activation:/,
  });
  t.throws(() => new Head(undefined as unknown as typeof full), {
    instanceOf: TypeError,
    message: /^config:/,
  });
  // the native side takes complete objects (lib/head.ts fills in the defaults): a missing key is named
  t.throws(() => new Head({ inFeatures: 4, outFeatures: 2 } as unknown as typeof full), {
    instanceOf: TypeError,
    message: /^config\.hidden: expected an array/,
  });
});
