// Evaluation metrics against hand-computed values.
import test from "ava";
import {
  accuracy,
  averagePrecision,
  balancedAccuracy,
  bootstrap,
  columnAucs,
  cohenKappa,
  confusionMatrix,
  f1Binary,
  f1Multiclass,
  finiteMean,
  formatEstimate,
  pick,
  recallAtK,
  rocAuc,
  rocCurve,
} from "../lib/eval/metrics.js";

test("AUC: perfect, reversed and hand-counted orderings", (t) => {
  t.is(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]), 1);
  t.is(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]), 0);
  // positives 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5 ✓, 0.8>0.1 ✓, 0.4>0.5 ✗, 0.4>0.1 ✓) = 3/4
  t.is(rocAuc([0.8, 0.5, 0.4, 0.1], [1, 0, 1, 0]), 0.75);
  t.is(rocAuc([0.8, 0.5, 0.4, 0.1], [true, false, true, false]), 0.75);
});

test("AUC: ties count one half", (t) => {
  t.is(rocAuc([0.5, 0.5], [1, 0]), 0.5);
  t.is(rocAuc([1, 1, 1, 1], [1, 0, 1, 0]), 0.5);
  // positives 0.7, 0.3; negatives 0.3, 0.1: (1 + 1 + 0.5 + 1) / 4 = 0.875
  t.is(rocAuc([0.7, 0.3, 0.3, 0.1], [1, 1, 0, 0]), 0.875);
  // three-way tie across classes: positives {2, 2}, negatives {2, 1, 3}
  // per positive: vs 2 → ½, vs 1 → 1, vs 3 → 0 → 1.5 each; 3 / 6 = 0.5
  t.is(rocAuc([2, 2, 2, 1, 3], [1, 1, 0, 0, 0]), 0.5);
});

test("AUC: undefined with one class or a non-finite score; length mismatch named", (t) => {
  t.true(Number.isNaN(rocAuc([0.1, 0.2], [1, 1])));
  t.true(Number.isNaN(rocAuc([0.1, 0.2], [0, 0])));
  t.true(Number.isNaN(rocAuc([Number.NaN, 0.2], [0, 1])));
  t.throws(() => rocAuc([0.1], [0, 1]), { message: /rocAuc: 1 scores but 2 labels/ });
});

test("recall at k from ranks (ties never help: a rank counts the candidates at least as good)", (t) => {
  // ranks 0, 2, 2 (a 3×3 case: target best; two above; all tied)
  t.deepEqual(recallAtK([0, 2, 2], [1, 2, 3]), [1 / 3, 1 / 3, 1]);
  t.deepEqual(recallAtK(Int32Array.from([0, 1, 0, 5]), [1, 2]), [0.5, 0.75]);
  t.true(Number.isNaN(recallAtK([], [1])[0]!));
  t.throws(() => recallAtK([0], [0]), { message: /recallAtK: k must be a whole number ≥ 1, got 0/ });
});

test("per-column AUC with unknown labels left out of their column", (t) => {
  // column 0: positives 0.8, 0.4; negatives 0.5, 0.1 → 3/4; column 1: case 1 unknown, one class only → NaN
  const scores = [0.8, 1, 0.5, 2, 0.4, 3, 0.1, 4];
  const y = [1, 1, 0, Number.NaN, 1, 1, 0, 1];
  t.deepEqual(columnAucs(scores, y, 4, 2), [
    { auc: 0.75, positives: 2, negatives: 2 },
    { auc: Number.NaN, positives: 3, negatives: 0 },
  ]);
  t.throws(() => columnAucs([1], [1, 0], 1, 2), { message: /columnAucs: expected 1×2/ });
});

test("finite mean skips NaN", (t) => {
  t.is(finiteMean([1, Number.NaN, 3]), 2);
  t.true(Number.isNaN(finiteMean([Number.NaN])));
});

// ---- issue 7: AP, classification metrics, kappa, bootstrap --------------------------------------

test("average precision, scikit-learn's step definition, by hand", (t) => {
  // best first: 0.9 (+) → R ½, P 1; 0.8 (−); 0.7 (+) → R 1, P 2/3; AP = ½·1 + ½·⅔ = 5/6
  t.true(Math.abs(averagePrecision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) - 5 / 6) < 1e-12);
  // a tie enters together: {0.5 +, 0.5 −} → R ½, P ½; then 0.2 (+) → R 1, P ⅔: ½·½ + ½·⅔ = 7/12
  t.true(Math.abs(averagePrecision([0.5, 0.5, 0.2], [1, 0, 1]) - 7 / 12) < 1e-12);
  t.is(averagePrecision([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]), 1);
  t.true(Number.isNaN(averagePrecision([0.1, 0.2], [0, 0])));
});

test("ROC curve points, ties make one diagonal step", (t) => {
  // positives 0.8, 0.4; negatives 0.5, 0.1 → (0,0) (0,½) (½,½) (½,1) (1,1)
  t.deepEqual(rocCurve([0.8, 0.5, 0.4, 0.1], [1, 0, 1, 0]), { fpr: [0, 0, 0.5, 0.5, 1], tpr: [0, 0.5, 0.5, 1, 1] });
  t.deepEqual(rocCurve([0.5, 0.5], [1, 0]), { fpr: [0, 1], tpr: [0, 1] });
});

// target = [0,0,1,1,2,2], pred = [0,1,1,1,2,0]; O (rows target, cols pred):
//   [1 1 0]
//   [0 2 0]
//   [1 0 1]     row sums 2,2,2; column sums 2,3,1; n = 6
const target = [0, 0, 1, 1, 2, 2];
const pred = [0, 1, 1, 1, 2, 0];

test("confusion matrix, accuracy, balanced accuracy, F1 by hand", (t) => {
  t.deepEqual(confusionMatrix(pred, target, 3), [
    [1, 1, 0],
    [0, 2, 0],
    [1, 0, 1],
  ]);
  t.is(accuracy(pred, target), 4 / 6);
  // recalls ½, 1, ½ → ⅔
  t.true(Math.abs(balancedAccuracy(pred, target, 3) - 2 / 3) < 1e-12);
  // F1 class 0: TP 1, FP 1, FN 1 → 2/4; class 1: TP 2, FP 1, FN 0 → 4/5; class 2: TP 1, FP 0, FN 1 → 2/3
  const f = f1Multiclass(pred, target, 3);
  t.deepEqual(
    f.perClass.map((x) => Math.round(x * 1e12) / 1e12),
    [0.5, 0.8, Math.round((2 / 3) * 1e12) / 1e12],
  );
  t.true(Math.abs(f.macro - (0.5 + 0.8 + 2 / 3) / 3) < 1e-12);
  // binary: TP 2 (i 0, 3), FP 1 (i 1), FN 1 (i 2) → 4/6
  t.is(f1Binary([1, 1, 0, 1, 0], [1, 0, 1, 1, 0]), 4 / 6);
  t.true(Number.isNaN(f1Binary([0, 0], [0, 0])), "nothing to find and nothing found: undefined, not 0 or 1");
  // a class absent from the targets leaves balanced accuracy's mean
  t.is(balancedAccuracy([0, 1], [0, 0], 3), 0.5);
  t.throws(() => accuracy([0], [0, 1]), { message: /accuracy: 1 predictions but 2 targets/ });
  t.throws(() => confusionMatrix([0, 3], [0, 1], 3), { message: /predictions\[1\] = 3 is not a class index below 3/ });
});

test("Cohen's kappa, unweighted, linear and quadratic, by hand", (t) => {
  // none: p_o = 4/6, p_e = (2·2 + 2·3 + 2·1)/36 = 1/3 → (⅔ − ⅓)/(1 − ⅓) = ½
  t.true(Math.abs(cohenKappa(pred, target, 3) - 0.5) < 1e-12);
  // E_ij = rows_i·cols_j/6 = [⅔, 1, ⅓] in every row.
  // linear w: |i−j|/2. Σ w·O = ½ (O01) + 1 (O20) = 1.5;
  //   Σ w·E = (½·1 + 1·⅓) + (½·⅔ + ½·⅓) + (1·⅔ + ½·1) = 5/6 + 1/2 + 7/6 = 2.5 → 1 − 1.5/2.5 = 0.4
  t.true(Math.abs(cohenKappa(pred, target, 3, "linear") - 0.4) < 1e-12);
  // quadratic w: (i−j)²/4. Σ w·O = ¼ + 1 = 1.25;
  //   Σ w·E = (¼·1 + 1·⅓) + (¼·⅔ + ¼·⅓) + (1·⅔ + ¼·1) = 7/12 + 1/4 + 11/12 = 1.75 → 1 − 1.25/1.75 = 2/7
  t.true(Math.abs(cohenKappa(pred, target, 3, "quadratic") - 2 / 7) < 1e-12);
  t.is(cohenKappa([0, 1, 2], [0, 1, 2], 3, "quadratic"), 1);
  t.true(Number.isNaN(cohenKappa([1, 1], [1, 1], 3)), "one class only: expected disagreement 0");
});

test("bootstrap: seeded, contains the estimate, narrows with n, NaN resamples counted", (t) => {
  // 70% correct in a fixed pattern
  const hits = (n: number) => Float64Array.from({ length: n }, (_, i) => (i % 10 < 7 ? 1 : 0));
  const mean = (xs: Float64Array) => (idx: Int32Array) => {
    let s = 0;
    for (const i of idx) s += xs[i]!;
    return s / idx.length;
  };
  const small = bootstrap(50, mean(hits(50)), { seed: 1 });
  const big = bootstrap(2000, mean(hits(2000)), { seed: 1 });
  for (const e of [small, big]) {
    t.is(e.value, 0.7);
    t.true(e.lo <= e.value && e.value <= e.hi);
    t.is(e.valid, 1000);
  }
  // normal theory: width ≈ 2·1.96·√(0.21/n): 0.254 at n 50, 0.040 at n 2000
  t.true(big.hi - big.lo > 0.032 && big.hi - big.lo < 0.048, `width at n 2000: ${big.hi - big.lo}`);
  t.true(small.hi - small.lo > 0.2 && small.hi - small.lo < 0.31, `width at n 50: ${small.hi - small.lo}`);
  t.deepEqual(bootstrap(50, mean(hits(50)), { seed: 1 }), small, "the same seed, the same interval");
  t.notDeepEqual(bootstrap(50, mean(hits(50)), { seed: 2 }), small);
  // AUC with a single positive among 20: resamples without it are not finite and are left out
  const labels = Float64Array.from({ length: 20 }, (_, i) => (i === 0 ? 1 : 0));
  const scores = Float64Array.from({ length: 20 }, (_, i) => 20 - i);
  const auc = bootstrap(20, (idx) => rocAuc(pick(scores, idx), pick(labels, idx)), { seed: 3, resamples: 400 });
  t.is(auc.value, 1);
  // P(case 0 drawn at least once in 20 draws) = 1 − (19/20)^20 ≈ 0.64
  t.true(auc.valid > 0.55 * 400 && auc.valid < 0.73 * 400, `valid ${auc.valid}`);
  const none = bootstrap(3, () => Number.NaN);
  t.true(Number.isNaN(none.value) && Number.isNaN(none.lo));
  t.is(
    formatEstimate({ value: 0.5, lo: 0.25, hi: 0.75, level: 0.95, resamples: 10, valid: 10 }, 2),
    "0.50 [0.25, 0.75]",
  );
});
