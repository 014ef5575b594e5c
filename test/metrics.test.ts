// Evaluation metrics against hand-computed values.
import test from "ava";
import { finiteMean, pairedRetrieval, recallAtK, rocAuc, transpose } from "../lib/eval/metrics.js";

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

test("recall at k, ties never help", (t) => {
  // 3×3, targets on the diagonal
  const s = [
    0.9, 0.1, 0.2, // row 0: target best → rank 0
    0.5, 0.4, 0.6, // row 1: two above → rank 2
    0.3, 0.3, 0.3, // row 2: all tied → rank 2
  ];
  t.deepEqual(recallAtK(s, 3, 3, [0, 1, 2], [1, 2, 3]), [1 / 3, 1 / 3, 1]);
  t.throws(() => recallAtK(s, 3, 3, [0, 1, 3], [1]), { message: /targets\[2\] = 3/ });
  t.throws(() => recallAtK(s, 2, 3, [0, 1], [1]), { message: /expected 2×3 scores/ });
});

test("paired retrieval both ways", (t) => {
  // images (rows) × texts (cols)
  const s = [
    1, 0, 0.5,
    0.2, 0.1, 0.9,
    0, 0.3, 0.8,
  ];
  const r = pairedRetrieval(s, 3, [1, 2]);
  // i→t: row0 rank0, row1 rank2 (0.2, 0.9 above 0.1), row2 rank0
  t.deepEqual(r.imageToText, { "R@1": 2 / 3, "R@2": 2 / 3 });
  // t→i: col0 [1,0.2,0] rank0; col1 [0,0.1,0.3] target 0.1 rank1; col2 [0.5,0.9,0.8] target 0.8 rank1
  t.deepEqual(r.textToImage, { "R@1": 1 / 3, "R@2": 1 });
  t.deepEqual(Array.from(transpose([1, 2, 3, 4, 5, 6], 2, 3)), [1, 4, 2, 5, 3, 6]);
});

test("finite mean skips NaN", (t) => {
  t.is(finiteMean([1, Number.NaN, 3]), 2);
  t.true(Number.isNaN(finiteMean([Number.NaN])));
});
