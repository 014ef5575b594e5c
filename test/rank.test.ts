// Block-wise ranking and top-k search in LibTorch (native/rank.h, lib/eval/rank.ts) against brute
// force in JavaScript: features on a coarse grid, so every dot product is exact in float32 and
// ties are frequent; several block sizes, so queries and index rows cross block boundaries.
import test from "ava";
import { mulberry32 } from "../lib/data/rng.js";
import { featureMatrix, targetRanks, topK, topKStream } from "../lib/eval/rank.js";
import type { FeatureMatrix } from "../lib/eval/rank.js";
import { native } from "../lib/native.js";

/** n × d values in {−1, −½, 0, ½, 1}; `dupes` rows copied from earlier rows (exact ties). */
function grid(seed: number, n: number, d: number, dupes = 0): Float64Array {
  const r = mulberry32(seed);
  const x = Float64Array.from({ length: n * d }, () => Math.floor(r.next() * 5) / 2 - 1);
  for (let k = 0; k < dupes; k++) {
    const from = Math.floor(r.next() * (n - 1));
    const to = from + 1 + Math.floor(r.next() * (n - from - 1));
    x.copyWithin(to * d, from * d, (from + 1) * d);
  }
  return x;
}

function scoresOf(q: Float64Array, x: Float64Array, n: number, m: number, d: number): Float64Array {
  const s = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += q[i * d + k]! * x[j * d + k]!;
      s[i * m + j] = v;
    }
  return s;
}

/** The evaluation's definition: other candidates scoring at least as high as the target. */
function bruteRank(s: Float64Array, m: number, row: number, target: number): number {
  let rank = 0;
  for (let c = 0; c < m; c++) if (c !== target && !(s[row * m + c]! < s[row * m + target]!)) rank++;
  return rank;
}

/** Best first, equal scores by ascending index, at most k. */
function bruteTopK(s: Float64Array, m: number, row: number, k: number): { scores: number[]; indices: number[] } {
  const order = Array.from({ length: m }, (_, j) => j).sort((a, b) => s[row * m + b]! - s[row * m + a]! || a - b);
  const top = order.slice(0, k);
  return { scores: top.map((j) => s[row * m + j]!), indices: top };
}

const as = (x: Float64Array, n: number, d: number, f32: boolean): FeatureMatrix =>
  featureMatrix(f32 ? Float32Array.from(x) : x, n, d);

const n = 57;
const m = 83;
const d = 7;
const Q = grid(1, n, d, 6);
const X = grid(2, m, d, 15);
const S = scoresOf(Q, X, n, m, d);

test("target ranks equal brute force with ties, one or several targets per query, any block size, \
float32 and float64", async (t) => {
  const r = mulberry32(3);
  const one = Int32Array.from({ length: n }, () => Math.floor(r.next() * m));
  const three = Int32Array.from({ length: n * 3 }, () => Math.floor(r.next() * m));
  let ties = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) if (j !== one[i] && S[i * m + j] === S[i * m + one[i]!]) ties++;
  t.true(ties > 50, `${ties} ties with a target`);
  const want1 = Array.from(one, (tg, i) => bruteRank(S, m, i, tg));
  const want3 = Array.from(three, (tg, k) => bruteRank(S, m, Math.floor(k / 3), tg));
  for (const f32 of [true, false])
    for (const block of [1, 100, 1000, undefined]) {
      const opts = block === undefined ? {} : { block };
      const what = `${f32 ? "float32" : "float64"}, block ${block ?? "default"}`;
      t.deepEqual([...(await targetRanks(as(Q, n, d, f32), as(X, m, d, f32), one, opts))], want1, what);
      const several = await targetRanks(as(Q, n, d, f32), as(X, m, d, f32), { data: three, shape: [n, 3] }, opts);
      t.deepEqual([...several], want3, `${what}, three targets`);
    }
});

test("top-k equals brute force: ties by lower index, k up to and beyond the index, any block size", async (t) => {
  for (const f32 of [true, false])
    for (const k of [1, 4, 30, m, m + 20])
      for (const block of [7, 500, undefined]) {
        const r = await topK(as(Q, n, d, f32), as(X, m, d, f32), k, block === undefined ? {} : { block });
        const kk = Math.min(k, m);
        const what = `${f32 ? "float32" : "float64"}, k ${k}, block ${block ?? "default"}`;
        t.deepEqual(r.scores.shape, [n, kk], what);
        t.deepEqual(r.indices.shape, [n, kk], what);
        t.is(r.scores.data instanceof Float32Array, f32);
        for (let i = 0; i < n; i++) {
          const want = bruteTopK(S, m, i, kk);
          const got = [...r.indices.data.subarray(i * kk, (i + 1) * kk)];
          if (JSON.stringify(got) !== JSON.stringify(want.indices))
            t.fail(`${what}, query ${i}: ${got} ≠ ${want.indices}`);
          t.deepEqual([...r.scores.data.subarray(i * kk, (i + 1) * kk)], want.scores);
        }
      }
});

test("top-k over an index in pieces equals top-k over the whole; the merge keeps the tie order", async (t) => {
  const whole = await topK(as(Q, n, d, true), as(X, m, d, true), 10);
  for (const sizes of [[1, 82], [40, 43], [10, 10, 10, 10, 10, 10, 10, 13], [83]]) {
    const pieces: FeatureMatrix[] = [];
    let o = 0;
    for (const s of sizes) {
      pieces.push(as(X.subarray(o * d, (o + s) * d), s, d, true));
      o += s;
    }
    const r = await topKStream(as(Q, n, d, true), pieces, 10, { block: 50 });
    t.deepEqual([...r.indices.data], [...whole.indices.data], `pieces ${sizes}`);
    t.deepEqual([...r.scores.data], [...whole.scores.data], `pieces ${sizes}`);
  }
  // an async source, and fewer rows than k in total
  async function* two() {
    yield as(X.subarray(0, 3 * d), 3, d, true);
    yield as(X.subarray(3 * d, 5 * d), 2, d, true);
  }
  const few = await topKStream(as(Q, n, d, true), two(), 10);
  t.deepEqual(few.indices.shape, [n, 5]);
  const none = await topKStream(as(Q, n, d, true), [], 10);
  t.deepEqual(none.indices.shape, [n, 0]);
});

test("arguments are checked before LibTorch and named in the errors", async (t) => {
  const q = as(Q, n, d, true);
  const x = as(X, m, d, true);
  const rank = native().rank;
  await t.throwsAsync(targetRanks(q, as(X, m, d, false), new Int32Array(n)), {
    instanceOf: TypeError,
    message: /^index\.data: expected Float32Array, got Float64Array$/,
  });
  await t.throwsAsync(targetRanks(q, featureMatrix(new Float32Array(m * 3), m, 3), new Int32Array(n)), {
    instanceOf: RangeError,
    message: /^index: expected shape \[\*, 7\]/,
  });
  await t.throwsAsync(targetRanks(q, x, new Int32Array(n - 1)), {
    instanceOf: RangeError,
    message: /^targets: expected shape \[57\]/,
  });
  await t.throwsAsync(
    targetRanks(
      q,
      x,
      Int32Array.from({ length: n }, (_, i) => (i === 5 ? m : 0)),
    ),
    {
      instanceOf: RangeError,
      message: /^targets\.data\[5\] = 83 is not a row of the index \(it has 83\)$/,
    },
  );
  const bad = Float32Array.from(X);
  bad[3 * d + 2] = Number.NaN;
  await t.throwsAsync(topK(q, featureMatrix(bad, m, d), 3), {
    instanceOf: RangeError,
    message: /^index: row 3, column 2 is not finite/,
  });
  await t.throwsAsync(topK(q, x, 0), { instanceOf: RangeError, message: /^options\.k: 0 is outside/ });
  await t.throwsAsync(topK(q, x, 2.5), { instanceOf: TypeError, message: /^options\.k: expected an integer/ });
  await t.throwsAsync(targetRanks(q, x, new Int32Array(n), { block: 0 }), {
    instanceOf: RangeError,
    message: /^options\.block/,
  });
  const prev = await topK(q, x, 3);
  await t.throwsAsync(topK(q, x, 3, { offset: 10, previous: prev }), {
    instanceOf: RangeError,
    message: /^options\.previous\.indices\.data\[\d+\] = \d+ is not an index row before options\.offset \(10\)$/,
  });
  await t.throwsAsync(rank.topK(q, x, undefined as unknown as { k: number }), {
    instanceOf: TypeError,
    message: /^options: expected an object/,
  });
});
