// Tip-Adapter and CLIP-Adapter arithmetic (native/fewshot.cc) against direct computations on toy
// caches; α = 0 gives the zero-shot logits; training lowers the loss; bad input names the argument.
import test from "ava";
import {
  buildCache,
  clipAdapterLogits,
  tipGrid,
  tipLogits,
  trainClipAdapter,
  trainTipF,
} from "../lib/adapt/adapters.js";
import { normalizeRows } from "../lib/eval/features.js";
import { native } from "../lib/native.js";

function rand(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
}
const matrix = (rows: number, cols: number, seed: number) => {
  const r = rand(seed);
  return normalizeRows(Float32Array.from({ length: rows * cols }, r), rows, cols);
};
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) =>
  a.length === b.length && Array.from(a).every((v, i) => Math.abs(v - b[i]!) <= tol * (1 + Math.abs(b[i]!)));

/** zeroShot + alpha · A·V (A·V / rowsum A with normalize), A = exp(−β(1 − F·Kᵀ)), in float64. */
function direct(
  F: Float32Array,
  n: number,
  K: Float32Array,
  m: number,
  V: Float32Array,
  C: number,
  d: number,
  zs: Float32Array,
  beta: number,
  alpha: number,
  normalize: boolean,
) {
  const out = new Float64Array(n * C);
  for (let i = 0; i < n; i++) {
    const a = new Float64Array(m);
    for (let j = 0; j < m; j++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += F[i * d + k]! * K[j * d + k]!;
      a[j] = Math.exp(-beta * (1 - dot));
    }
    const mass = a.reduce((x, y) => x + y, 0);
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += a[j]! * V[j * C + c]!;
      out[i * C + c] = zs[i * C + c]! + alpha * (normalize ? s / mass : s);
    }
  }
  return out;
}

const [n, m, d, C] = [5, 6, 8, 3];
const F = matrix(n, d, 1);
const K = matrix(m, d, 2);
const zs = Float32Array.from({ length: n * C }, rand(3));

test("Tip-Adapter logits equal a direct computation (single-label cache, one-hot values)", async (t) => {
  const cache = buildCache(K, m, d, { kind: "single", t: Int32Array.from([0, 1, 2, 0, 1, 2]) }, C);
  t.deepEqual(Array.from(cache.values.subarray(0, 6)), [1, 0, 0, 0, 1, 0]);
  t.false(cache.normalize);
  const got = await tipLogits(F, n, cache, zs, { beta: 5.5, alpha: 1.7 });
  t.true(close(got, direct(F, n, K, m, cache.values, C, d, zs, 5.5, 1.7, false), 1e-5));
});

test("Tip-Adapter logits equal a direct computation (multi-label cache, \
normalised by the affinity mass)", async (t) => {
  const y = Float32Array.from([1, 0, Number.NaN, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0]);
  const cache = buildCache(K, m, d, { kind: "multilabel", y }, C);
  t.is(cache.values[2], 0); // unknown → 0 in the cache
  t.true(cache.normalize);
  const got = await tipLogits(F, n, cache, zs, { beta: 3, alpha: 0.8, bias: Float32Array.from([0.1, -0.2, 0.3]) });
  const want = direct(F, n, K, m, cache.values, C, d, zs, 3, 0.8, true).map((v, i) => v + [0.1, -0.2, 0.3][i % C]!);
  t.true(close(got, want, 1e-5));
});

test("α = 0 gives exactly the zero-shot logits; the grid matches single calls", async (t) => {
  const cache = buildCache(K, m, d, { kind: "single", t: Int32Array.from([0, 1, 2, 0, 1, 2]) }, C);
  t.deepEqual(Array.from(await tipLogits(F, n, cache, zs, { beta: 7, alpha: 0 })), Array.from(zs));
  const grid = await tipGrid(F, n, cache, zs, [1, 4], [0, 0.5, 2]);
  t.is(grid.length, 2);
  t.is(grid[0]!.length, 3);
  t.deepEqual(Array.from(grid[0]![0]!), Array.from(zs));
  t.deepEqual(Array.from(grid[1]![2]!), Array.from(await tipLogits(F, n, cache, zs, { beta: 4, alpha: 2 })));
});

test("Tip-Adapter-F: the loss falls and the keys move", async (t) => {
  const feats = matrix(12, d, 5);
  const targets = { kind: "single" as const, t: Int32Array.from({ length: 12 }, (_, i) => i % C) };
  const cache = buildCache(feats, 12, d, targets, C);
  const zero = new Float32Array(12 * C);
  const r = await trainTipF(
    cache,
    targets,
    zero,
    { beta: 2, alpha: 3 },
    { epochs: 40, batchSize: 12, lr: 0.05, seed: 1 },
  );
  t.is(r.losses.length, 40);
  t.true(r.losses.at(-1)! < 0.8 * r.losses[0]!, `losses ${r.losses[0]} → ${r.losses.at(-1)}`);
  t.false(close(r.cache.keys, feats, 1e-4));
  t.deepEqual(Array.from(r.bias), [0, 0, 0]); // single-label: no bias
});

test("CLIP-Adapter logits equal a direct computation; ratio 0 is the zero-shot cosine", async (t) => {
  const text = matrix(C, d, 7);
  const h = 2;
  const fc1 = Float32Array.from({ length: h * d }, rand(8));
  const fc2 = Float32Array.from({ length: d * h }, rand(9));
  const w = { fc1, fc2, bias: new Float32Array(C), hidden: h };
  const got = await clipAdapterLogits(F, n, d, text, C, "single", w, { ratio: 0.3, scale: 10 });
  const want = new Float64Array(n * C);
  for (let i = 0; i < n; i++) {
    const x = F.subarray(i * d, (i + 1) * d);
    const a = Array.from({ length: h }, (_, j) =>
      Math.max(
        0,
        x.reduce((s, v, k) => s + v * fc1[j * d + k]!, 0),
      ),
    );
    const b = Array.from({ length: d }, (_, k) =>
      Math.max(
        0,
        a.reduce((s, v, j) => s + v * fc2[k * h + j]!, 0),
      ),
    );
    const y = Array.from(x, (v, k) => 0.3 * b[k]! + 0.7 * v);
    const norm = Math.hypot(...y);
    for (let c = 0; c < C; c++) want[i * C + c] = (10 * y.reduce((s, v, k) => s + v * text[c * d + k]!, 0)) / norm;
  }
  t.true(close(got, want, 1e-5));
  const zero = await clipAdapterLogits(F, n, d, text, C, "single", w, { ratio: 0, scale: 10 });
  const cos = Array.from({ length: n * C }, (_, i) => {
    const [r, c] = [Math.floor(i / C), i % C];
    return 10 * F.subarray(r * d, (r + 1) * d).reduce((s, v, k) => s + v * text[c * d + k]!, 0);
  });
  t.true(close(zero, cos, 1e-5));
});

test("CLIP-Adapter training lowers the loss and separates a toy set", async (t) => {
  const text = matrix(C, d, 11);
  const labels = Int32Array.from({ length: 30 }, (_, i) => i % C);
  // features near their class's text feature, with noise
  const r = rand(12);
  const X = normalizeRows(
    Float32Array.from({ length: 30 * d }, (_, j) => text[labels[Math.floor(j / d)]! * d + (j % d)]! * 0.3 + 0.5 * r()),
    30,
    d,
  );
  const s = { ratio: 0.5, scale: 20, hidden: 4, epochs: 60, batchSize: 10, lr: 0.01, seed: 3 };
  const w = await trainClipAdapter(X, 30, d, text, C, { kind: "single", t: labels }, s);
  t.true(w.losses.at(-1)! < 0.7 * w.losses[0]!, `losses ${w.losses[0]} → ${w.losses.at(-1)}`);
  const logits = await clipAdapterLogits(X, 30, d, text, C, "single", w, s);
  let hits = 0;
  for (let i = 0; i < 30; i++) {
    const row = Array.from(logits.subarray(i * C, (i + 1) * C));
    if (row.indexOf(Math.max(...row)) === labels[i]) hits++;
  }
  t.true(hits >= 27, `${hits}/30`);
  // the same seed trains the same adapter
  const again = await trainClipAdapter(X, 30, d, text, C, { kind: "single", t: labels }, s);
  t.deepEqual(Array.from(again.fc1), Array.from(w.fc1));
});

test("bad input: errors name the argument", async (t) => {
  const fs = native().fewshot;
  const mat = (rows: number, cols: number) => ({ data: new Float32Array(rows * cols), shape: [rows, cols] });
  const base = { features: mat(2, 4), keys: mat(3, 4), values: mat(3, 2), zeroShot: mat(2, 2), beta: 1, alpha: 1 };
  await t.throwsAsync(fs.tipLogits({ ...base, keys: mat(3, 5) }), { message: /args\.keys/ });
  await t.throwsAsync(fs.tipLogits({ ...base, zeroShot: mat(2, 3) }), { message: /args\.zeroShot/ });
  await t.throwsAsync(fs.tipLogits({ ...base, beta: -1 }), { instanceOf: RangeError, message: /beta/ });
  await t.throwsAsync(fs.tipGrid({ ...base, betas: [], alphas: [1] }), { message: /args\.betas: empty/ });
  const train = {
    features: mat(2, 4),
    text: mat(2, 4),
    task: "single" as const,
    ratio: 0.2,
    scale: 10,
    hidden: 2,
    epochs: 1,
    batchSize: 2,
    lr: 0.1,
  };
  await t.throwsAsync(fs.trainClipAdapter({ ...train, targets: { data: Int32Array.from([0, 2]), shape: [2] } }), {
    instanceOf: RangeError,
    message: /args\.targets: class indices must lie in \[0, 2\)/,
  });
  await t.throwsAsync(
    fs.trainClipAdapter({ ...train, task: "multi" as never, targets: { data: Int32Array.from([0, 1]), shape: [2] } }),
    { message: /args\.task/ },
  );
  t.throws(() => buildCache(new Float32Array(8), 2, 4, { kind: "single", t: Int32Array.from([0, 5]) }, 2), {
    message: /targets\[1\]: class 5/,
  });
});
