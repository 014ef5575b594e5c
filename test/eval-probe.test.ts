// The linear probe's logistic regression (LibTorch, native/logistic.h): a closed-form optimum, the
// optimality condition, separable data, the choice of C on a validation split, multinomial vs
// one-vs-rest, the scalar JavaScript it replaced (bench/baselines/eval-js.ts) reproduced, and a
// fit that does not converge reported. scikit-learn parity: test/probe-sklearn.test.ts.
import test from "ava";
import { fitLinear as fitLinearJs, trainProbeJs } from "../bench/baselines/eval-js.js";
import { mulberry32 } from "../lib/data/rng.js";
import { accuracy, argmaxRows, rocAuc } from "../lib/eval/metrics.js";
import {
  LBFGS_DEFAULTS,
  convergenceWarning,
  fitLinear,
  fitStandardizer,
  predictProba,
  standardize,
  trainProbe,
} from "../lib/eval/probe.js";
import type { ProbeTargets } from "../lib/eval/probe.js";
import { native } from "../lib/native.js";

/** A binary fit on all rows of X [n, d] with 0/1 labels y: [w..., b]. */
async function fitBinary(X: Float64Array, d: number, y: number[], C: number, gradTol: number): Promise<number[]> {
  const m = await fitLinear({ X, n: y.length, d }, { kind: "multilabel", K: 1, y: Float32Array.from(y) }, C, {
    gradTol,
  });
  return [...m.W, m.b[0]!];
}

test("binary logistic regression: the unregularised optimum by hand, \
and the optimality condition with L2", async (t) => {
  // x = −1: 1 positive, 3 negatives; x = +1: 3 positives, 1 negative. Without regularisation the
  // fitted probabilities equal the empirical ones: σ(b − w) = ¼, σ(b + w) = ¾ → w = ln 3, b = 0.
  const X = Float64Array.from([-1, -1, -1, -1, 1, 1, 1, 1]);
  const y = [1, 0, 0, 0, 1, 1, 1, 0];
  const p = await fitBinary(X, 1, y, 1e8, 1e-10);
  t.true(Math.abs(p[0]! - Math.log(3)) < 1e-4, `w ${p[0]}`);
  t.true(Math.abs(p[1]!) < 1e-4, `b ${p[1]}`);
  // with C = 0.5 (λ = 1/(C·n) = 0.25): gradient of mean loss + λ/2·w² vanishes at the optimum,
  // and the weight shrinks below ln 3
  const q = await fitBinary(X, 1, y, 0.5, 1e-12);
  const sig = (z: number) => 1 / (1 + Math.exp(-z));
  let gw = 0;
  let gb = 0;
  for (let i = 0; i < 8; i++) {
    const e = sig(q[0]! * X[i]! + q[1]!) - y[i]!;
    gw += (e * X[i]!) / 8;
    gb += e / 8;
  }
  gw += 0.25 * q[0]!;
  t.true(Math.abs(gw) < 1e-8 && Math.abs(gb) < 1e-8, `gradient ${gw}, ${gb}`);
  t.true(q[0]! > 0.2 && q[0]! < Math.log(3));
});

/** n points in d dims; class = sign of feature 0 (shifted apart by `gap`), other features noise. */
function toy(n: number, d: number, seed: number, gap: number, flip = 0): { X: Float64Array; y: Int32Array } {
  const r = mulberry32(seed);
  const X = new Float64Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    y[i] = r.chance(flip) ? 1 - c : c;
    for (let k = 0; k < d; k++) X[i * d + k] = r.normal();
    X[i * d] = X[i * d]! * 0.5 + (c ? gap : -gap);
  }
  return { X, y };
}

test("separable data: the probe reaches ~1.0 accuracy and AUC on held-out points", async (t) => {
  const tr = toy(200, 10, 1, 2);
  const va = toy(100, 10, 2, 2);
  const te = toy(200, 10, 3, 2);
  const asML = (y: Int32Array): ProbeTargets => ({ kind: "multilabel", K: 1, y: Float32Array.from(y) });
  const p = await trainProbe({ X: tr.X, n: 200, targets: asML(tr.y) }, { X: va.X, n: 100, targets: asML(va.y) }, 10);
  const P = await predictProba(p.model, standardize(te.X, 200, 10, p.standardizer), 200);
  t.is(rocAuc(P, te.y), 1);
  t.true(
    accuracy(
      Int32Array.from(P, (v) => (v > 0.5 ? 1 : 0)),
      te.y,
    ) >= 0.99,
  );
  // multinomial on three separable classes
  const three = (n: number, seed: number) => {
    const r = mulberry32(seed);
    const X = new Float64Array(n * 2);
    const t3 = new Int32Array(n);
    const centres = [
      [0, 3],
      [3, -2],
      [-3, -2],
    ];
    for (let i = 0; i < n; i++) {
      t3[i] = i % 3;
      X[2 * i] = centres[i % 3]![0]! + 0.4 * r.normal();
      X[2 * i + 1] = centres[i % 3]![1]! + 0.4 * r.normal();
    }
    return { X, t: t3 };
  };
  const a = three(150, 4);
  const b = three(60, 5);
  const c = three(150, 6);
  for (const multiclass of ["multinomial", "ovr"] as const) {
    const q = await trainProbe(
      { X: a.X, n: 150, targets: { kind: "single", K: 3, t: a.t } },
      { X: b.X, n: 60, targets: { kind: "single", K: 3, t: b.t } },
      2,
      { multiclass },
    );
    t.is(q.model.kind, multiclass === "multinomial" ? "softmax" : "sigmoid");
    const Q = await predictProba(q.model, standardize(c.X, 150, 2, q.standardizer), 150);
    t.is(accuracy(argmaxRows(Q, 150, 3), c.t), 1, multiclass);
  }
});

test("C is chosen on the validation split: strong enough for noise dimensions, \
weak enough to use the signal", async (t) => {
  // 40 training points, 60 features, one informative with 15% label noise
  const tr = toy(40, 60, 7, 0.6, 0.15);
  const va = toy(400, 60, 8, 0.6, 0.15);
  const asML = (y: Int32Array): ProbeTargets => ({ kind: "multilabel", K: 1, y: Float32Array.from(y) });
  const p = await trainProbe({ X: tr.X, n: 40, targets: asML(tr.y) }, { X: va.X, n: 400, targets: asML(va.y) }, 60, {
    refit: "train",
  });
  const loss = new Map(p.selection.map((r) => [r.C, r.valLogLoss]));
  t.is(p.selection.length, 13);
  // the chosen C has the lowest validation loss of the grid, and it is inside the grid, not at an end
  t.is(Math.min(...loss.values()), loss.get(p.C)!);
  t.true(p.C > 1e-4 && p.C < 100, `chosen C ${p.C}`);
  t.true(loss.get(p.C)! < loss.get(1e-4)! - 0.02, "better than (almost) no weights");
  t.true(loss.get(p.C)! < loss.get(100)! - 0.05, "better than (almost) no regularisation");
  // the selection is reproducible
  t.deepEqual(
    (
      await trainProbe({ X: tr.X, n: 40, targets: asML(tr.y) }, { X: va.X, n: 400, targets: asML(va.y) }, 60, {
        refit: "train",
      })
    ).C,
    p.C,
  );
  t.true(p.selection.every((r) => r.converged && r.iterations > 0));
  t.deepEqual(p.nonConverged, []);
});

test("a class with one label value in training gets its prior; unknown labels are left out of its fit", async (t) => {
  const X = Float64Array.from([0, 1, 2, 3]);
  const y = Float32Array.from(
    [0, 0, 0, 0, /* class 1 */ 1, Number.NaN, 0, 1].flatMap((_, i, a) => (i < 4 ? [a[i]!, a[i + 4]!] : [])),
  );
  const m = await fitLinear({ X, n: 4, d: 1 }, { kind: "multilabel", K: 2, y }, 1);
  // class 0: 0 of 4 positive → prior (0 + ½)/(4 + 1) = 0.1
  t.deepEqual(m.constant, [0]);
  t.deepEqual(
    m.problems.map((p) => p.class),
    [1],
  );
  const P = await predictProba(m, X, 4);
  t.true(Math.abs(P[0]! - 0.1) < 1e-12);
  t.is(m.W[0], 0);
  t.not(m.W[1], 0, "class 1 fitted on its three known labels");
  const s = fitStandardizer([1, 5, 3, 5], 2, 2);
  t.deepEqual([...s.mean], [2, 5]);
  t.deepEqual([...s.std], [1, 1], "a constant column keeps deviation 1");
});

test("the L-BFGS in LibTorch follows the scalar JavaScript it replaced: same C, same losses, same model", async (t) => {
  // one-vs-rest with unknown labels, and a multinomial problem; the same algorithm and stops, so
  // only the order of floating-point sums differs
  const r = mulberry32(21);
  const n = 120;
  const d = 6;
  const K = 3;
  const X = Float64Array.from({ length: n * d }, () => r.normal());
  const y = Float32Array.from({ length: n * K }, (_, i) =>
    r.chance(0.1) ? Number.NaN : X[Math.floor(i / K) * d + (i % K)]! + r.normal() > 0 ? 1 : 0,
  );
  const tcls = Int32Array.from({ length: n }, (_, i) => argmaxRows(X.subarray(i * d, i * d + K), 1, K)[0]!);
  const Xv = Float64Array.from({ length: 60 * d }, () => r.normal());
  const yv = Float32Array.from({ length: 60 * K }, (_, i) => (Xv[Math.floor(i / K) * d + (i % K)]! > 0 ? 1 : 0));
  const tv = Int32Array.from({ length: 60 }, (_, i) => argmaxRows(Xv.subarray(i * d, i * d + K), 1, K)[0]!);
  const cases: [ProbeTargets, ProbeTargets][] = [
    [
      { kind: "multilabel", K, y },
      { kind: "multilabel", K, y: yv },
    ],
    [
      { kind: "single", K, t: tcls },
      { kind: "single", K, t: tv },
    ],
  ];
  for (const [tr, va] of cases) {
    const a = await trainProbe({ X, n, targets: tr }, { X: Xv, n: 60, targets: va }, d);
    const b = trainProbeJs({ X, n, targets: tr }, { X: Xv, n: 60, targets: va }, d);
    t.is(a.C, b.C, tr.kind);
    a.selection.forEach((row, i) => {
      t.true(Math.abs(row.valLogLoss - b.selection[i]!.valLogLoss) < 1e-9, `${tr.kind} C ${row.C}: log-loss`);
      t.true(Math.abs(row.valAuc - b.selection[i]!.valAuc) < 1e-9, `${tr.kind} C ${row.C}: AUC`);
    });
    const dW = Math.max(...Array.from(a.model.W, (w, i) => Math.abs(w - b.model.W[i]!)));
    t.true(dW < 1e-6, `${tr.kind}: weights differ by ${dW}`);
  }
  // and a single fit from the same warm start
  const init = fitLinearJs({ X, n, d }, { kind: "multilabel", K, y }, 0.01);
  const one = await fitLinear({ X, n, d }, { kind: "multilabel", K, y }, 0.3, { init });
  const ref = fitLinearJs({ X, n, d }, { kind: "multilabel", K, y }, 0.3, { init });
  t.true(Math.max(...Array.from(one.W, (w, i) => Math.abs(w - ref.W[i]!))) < 1e-6);
});

test("a fit that does not converge is reported: in the probe's result, \
as a warning naming C and classes", async (t) => {
  const tr = toy(200, 10, 1, 0.3, 0.2);
  const va = toy(100, 10, 2, 0.3, 0.2);
  const asML = (y: Int32Array): ProbeTargets => ({ kind: "multilabel", K: 1, y: Float32Array.from(y) });
  const p = await trainProbe({ X: tr.X, n: 200, targets: asML(tr.y) }, { X: va.X, n: 100, targets: asML(va.y) }, 10, {
    cGrid: [1, 100],
    maxIter: 2,
  });
  t.true(p.selection.every((r) => !r.converged && r.iterations === 2));
  t.deepEqual(
    p.nonConverged.map((nc) => [nc.stage, nc.C, nc.classes, nc.iterations]),
    [
      ["selection", 1, [0], 2],
      ["selection", 100, [0], 2],
      ["final", p.C, [0], 2],
    ],
  );
  t.is(
    convergenceWarning(p.nonConverged[2]!, ["glaucoma"]),
    `the final fit at C = ${p.C} did not converge for glaucoma (L-BFGS stopped after 2 iterations); ` +
      "the result may be less accurate",
  );
  // the multinomial problem is one problem for all classes
  const m = await fitLinear({ X: tr.X, n: 200, d: 10 }, { kind: "single", K: 2, t: tr.y }, 1, { maxIter: 1 });
  t.deepEqual(
    m.problems.map((q) => [q.class, q.iterations, q.converged]),
    [[null, 1, false]],
  );
  t.regex(
    convergenceWarning({ stage: "selection", C: 1, classes: [null], iterations: 1 }, []),
    /all classes \(multinomial\)/,
  );
});

test("the native fit checks its arguments and names them", async (t) => {
  const x = { data: new Float64Array(6), shape: [3, 2] };
  const lr = native().logistic;
  const L = LBFGS_DEFAULTS;
  // the L-BFGS options are complete (TypeScript owns their defaults): missing or mistyped, a TypeError
  const y = { data: new Float64Array(3), shape: [3, 1] };
  const { maxIter: _, ...noMaxIter } = L;
  await t.throwsAsync(lr.fit({ x, kind: "sigmoid", y, C: 1, ...noMaxIter } as Parameters<typeof lr.fit>[0]), {
    instanceOf: TypeError,
    message: /args\.maxIter/,
  });
  await t.throwsAsync(lr.fit({ x, kind: "sigmoid", y, C: 1, ...L, gradTol: "1e-6" as unknown as number }), {
    instanceOf: TypeError,
    message: /args\.gradTol/,
  });
  await t.throwsAsync(
    lr.fit({ x, kind: "sigmoid", y: { data: Float64Array.from([0, 1, 2]), shape: [3, 1] }, C: 1, ...L }),
    {
      instanceOf: RangeError,
      message: /args\.y\.data\[2\] = 2\.0+: expected 1, 0 or NaN/,
    },
  );
  await t.throwsAsync(
    lr.fit({ x, kind: "softmax", t: { data: Int32Array.from([0, 1, 3]), shape: [3] }, classes: 3, C: 1, ...L }),
    {
      instanceOf: RangeError,
      message: /args\.t\.data\[2\] = 3 is not a class below 3/,
    },
  );
  await t.throwsAsync(lr.fit({ x, kind: "sigmoid", y: { data: new Float64Array(3), shape: [3, 1] }, C: 0, ...L }), {
    instanceOf: RangeError,
    message: /args\.C: expected a positive finite number/,
  });
  await t.throwsAsync(lr.fit({ x, kind: "logit" as "sigmoid", C: 1, ...L }), {
    instanceOf: TypeError,
    message: /args\.kind/,
  });
  await t.throwsAsync(
    lr.fit({ x: { data: Float64Array.from([0, 0, Number.NaN, 0, 0, 0]), shape: [3, 2] }, kind: "sigmoid", C: 1, ...L }),
    { instanceOf: RangeError, message: /args\.x\.data\[2\] is NaN/ },
  );
  await t.throwsAsync(
    lr.fit({
      x,
      kind: "sigmoid",
      y: { data: new Float64Array(3), shape: [3, 1] },
      C: 1,
      ...L,
      init: { W: { data: new Float64Array(3), shape: [1, 3] }, b: { data: new Float64Array(1), shape: [1] } },
    }),
    { instanceOf: RangeError, message: /args\.init\.W: expected shape \[1, 2\]/ },
  );
  await t.throwsAsync(
    lr.predict(x, {
      kind: "sigmoid",
      W: { data: new Float64Array(3), shape: [1, 3] },
      b: { data: new Float64Array(1), shape: [1] },
    }),
    {
      instanceOf: RangeError,
      message: /model\.W: expected shape \[\*, 2\]/,
    },
  );
});
