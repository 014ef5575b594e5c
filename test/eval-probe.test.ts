// The linear probe's logistic regression: a closed-form optimum, the optimality condition,
// separable data, the choice of C on a validation split, multinomial vs one-vs-rest.
import test from "ava";
import { mulberry32 } from "../lib/data/rng.js";
import { accuracy, argmaxRows, rocAuc } from "../lib/eval/metrics.js";
import {
  fitBinary,
  fitLinear,
  fitStandardizer,
  lbfgs,
  predictProba,
  standardize,
  trainProbe,
} from "../lib/eval/probe.js";
import type { ProbeTargets } from "../lib/eval/probe.js";

test("L-BFGS finds the minimum of a quadratic", (t) => {
  // f = (x0 − 3)² + 10 (x1 + 1)²
  const x = new Float64Array(2);
  const r = lbfgs((p, g) => {
    g[0] = 2 * (p[0]! - 3);
    g[1] = 20 * (p[1]! + 1);
    return (p[0]! - 3) ** 2 + 10 * (p[1]! + 1) ** 2;
  }, x);
  t.true(r.converged);
  t.true(Math.abs(x[0]! - 3) < 1e-6 && Math.abs(x[1]! + 1) < 1e-6);
});

test("binary logistic regression: the unregularised optimum by hand, and the optimality condition with L2", (t) => {
  // x = −1: 1 positive, 3 negatives; x = +1: 3 positives, 1 negative. Without regularisation the
  // fitted probabilities equal the empirical ones: σ(b − w) = ¼, σ(b + w) = ¾ → w = ln 3, b = 0.
  const X = Float64Array.from([-1, -1, -1, -1, 1, 1, 1, 1]);
  const y = [1, 0, 0, 0, 1, 1, 1, 0];
  const rows = [0, 1, 2, 3, 4, 5, 6, 7];
  const p = fitBinary({ X, n: 8, d: 1 }, rows, y, 1e8, undefined, { gradTol: 1e-10 });
  t.true(Math.abs(p[0]! - Math.log(3)) < 1e-4, `w ${p[0]}`);
  t.true(Math.abs(p[1]!) < 1e-4, `b ${p[1]}`);
  // with C = 0.5 (λ = 1/(C·n) = 0.25): gradient of mean loss + λ/2·w² vanishes at the optimum,
  // and the weight shrinks below ln 3
  const q = fitBinary({ X, n: 8, d: 1 }, rows, y, 0.5, undefined, { gradTol: 1e-12 });
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

test("separable data: the probe reaches ~1.0 accuracy and AUC on held-out points", (t) => {
  const tr = toy(200, 10, 1, 2);
  const va = toy(100, 10, 2, 2);
  const te = toy(200, 10, 3, 2);
  const asML = (y: Int32Array): ProbeTargets => ({ kind: "multilabel", K: 1, y: Float32Array.from(y) });
  const p = trainProbe({ X: tr.X, n: 200, targets: asML(tr.y) }, { X: va.X, n: 100, targets: asML(va.y) }, 10);
  const P = predictProba(p.model, standardize(te.X, 200, 10, p.standardizer), 200);
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
    const q = trainProbe(
      { X: a.X, n: 150, targets: { kind: "single", K: 3, t: a.t } },
      { X: b.X, n: 60, targets: { kind: "single", K: 3, t: b.t } },
      2,
      { multiclass },
    );
    t.is(q.model.kind, multiclass === "multinomial" ? "softmax" : "sigmoid");
    const Q = predictProba(q.model, standardize(c.X, 150, 2, q.standardizer), 150);
    t.is(accuracy(argmaxRows(Q, 150, 3), c.t), 1, multiclass);
  }
});

test("C is chosen on the validation split: strong enough for noise dimensions, weak enough to use the signal", (t) => {
  // 40 training points, 60 features, one informative with 15% label noise
  const tr = toy(40, 60, 7, 0.6, 0.15);
  const va = toy(400, 60, 8, 0.6, 0.15);
  const asML = (y: Int32Array): ProbeTargets => ({ kind: "multilabel", K: 1, y: Float32Array.from(y) });
  const p = trainProbe({ X: tr.X, n: 40, targets: asML(tr.y) }, { X: va.X, n: 400, targets: asML(va.y) }, 60, {
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
    trainProbe({ X: tr.X, n: 40, targets: asML(tr.y) }, { X: va.X, n: 400, targets: asML(va.y) }, 60, {
      refit: "train",
    }).C,
    p.C,
  );
});

test("a class with one label value in training gets its prior; unknown labels are left out of its fit", (t) => {
  const X = Float64Array.from([0, 1, 2, 3]);
  const y = Float32Array.from(
    [0, 0, 0, 0, /* class 1 */ 1, Number.NaN, 0, 1].flatMap((_, i, a) => (i < 4 ? [a[i]!, a[i + 4]!] : [])),
  );
  const m = fitLinear({ X, n: 4, d: 1 }, { kind: "multilabel", K: 2, y }, 1);
  // class 0: 0 of 4 positive → prior (0 + ½)/(4 + 1) = 0.1
  const P = predictProba(m, X, 4);
  t.true(Math.abs(P[0]! - 0.1) < 1e-12);
  t.is(m.W[0], 0);
  t.not(m.W[1], 0, "class 1 fitted on its three known labels");
  const s = fitStandardizer([1, 5, 3, 5], 2, 2);
  t.deepEqual([...s.mean], [2, 5]);
  t.deepEqual([...s.std], [1, 1], "a constant column keeps deviation 1");
});
