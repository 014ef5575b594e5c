// The O(n) bootstrap of evaluateScores (each class sorted once, resamples from multiplicities)
// against the sort-per-resample code it replaced (bench/baselines/eval-js.ts): the same intervals
// to the bit, on the existing test cases and on random ones with ties, unknown labels, classes
// without positives and non-finite scores.
import test from "ava";
import { evaluateScoresJs } from "../bench/baselines/eval-js.js";
import { mulberry32 } from "../lib/data/rng.js";
import { evaluateScores } from "../lib/eval/evaluate.js";
import type { MetricsReport, ScoreSet } from "../lib/eval/evaluate.js";
import { averagePrecision, multiplicities, pick, rocAuc, SortedScores } from "../lib/eval/metrics.js";

/** Every Estimate of a report, by name, as [value, lo, hi, valid] (Object.is-comparable numbers). */
function estimates(r: MetricsReport): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, e] of Object.entries(r.metrics)) out[k] = [e.value, e.lo, e.hi, e.valid];
  for (const [c, p] of Object.entries(r.perClass))
    for (const m of ["auc", "ap", "f1", "accuracy"] as const)
      out[`${c}.${m}`] = [p[m].value, p[m].lo, p[m].hi, p[m].valid];
  return out;
}

function sameBits(
  t: import("ava").ExecutionContext,
  a: Record<string, number[]>,
  b: Record<string, number[]>,
  what: string,
) {
  t.deepEqual(Object.keys(a), Object.keys(b), what);
  for (const k of Object.keys(a))
    a[k]!.forEach((v, i) => {
      if (!Object.is(v, b[k]![i])) t.fail(`${what}: ${k}[${i}] is ${v}, the reference gives ${b[k]![i]}`);
    });
}

test("bootstrap intervals of the existing test cases: the values they had, to the bit", (t) => {
  // test/eval-protocols.test.ts: the graded case (values recorded before the O(n) bootstrap)
  const preds = [0, 1, 1, 1, 2, 0];
  const scores = Float64Array.from(preds.flatMap((p) => [0, 1, 2].map((c) => (c === p ? 0.8 : 0.1))));
  const g = evaluateScores(
    { task: "graded", classes: ["0", "1", "2"], scores, n: 6, targets: Int32Array.from([0, 0, 1, 1, 2, 2]) },
    { resamples: 100 },
  );
  const e = (k: string) => [g.metrics[k]!.value, g.metrics[k]!.lo, g.metrics[k]!.hi, g.metrics[k]!.valid];
  t.deepEqual(e("balancedAccuracy"), [0.6666666666666666, 0.18250000000000008, 1, 100]);
  t.deepEqual(e("f1"), [0.6555555555555556, 0.12916666666666682, 1, 100]);
  t.deepEqual(e("kappa"), [0.5, -0.14862637362637351, 1, 100]);
  t.deepEqual(e("auc"), [0.75, 0.34125, 1, 100]);
  t.deepEqual(e("map"), [0.5833333333333334, 0.368425925925926, 1, 100]);
  t.deepEqual(e("kappaLinear"), [0.4, -0.3107142857142856, 1, 100]);
  t.deepEqual(e("kappaQuadratic"), [0.2857142857142857, -0.6666666666666669, 1, 100]);
  // a multi-label case with tied scores and unknown labels (values recorded the same way)
  const r = mulberry32(5);
  const n = 40;
  const s = Float64Array.from({ length: n * 3 }, () => Math.round(r.next() * 8) / 8);
  const y = Float32Array.from({ length: n * 3 }, (_, i) => (i % 7 === 3 ? Number.NaN : r.next() < 0.4 ? 1 : 0));
  const m = evaluateScores(
    { task: "multilabel", classes: ["a", "b", "c"], scores: s, n, y, threshold: 0.5 },
    { resamples: 200, seed: 3 },
  );
  const f = (k: string) => [m.metrics[k]!.value, m.metrics[k]!.lo, m.metrics[k]!.hi];
  t.deepEqual(f("auc"), [0.5461728700043916, 0.4647316485973607, 0.6285694583588353]);
  t.deepEqual(f("map"), [0.4896278485555956, 0.41587826211739337, 0.6032654854031614]);
  t.deepEqual(f("f1"), [0.4584500466853408, 0.34280431457850813, 0.5473829331316569]);
  t.deepEqual(f("accuracy"), [0.5238095238095238, 0.44677238637390443, 0.6004314857256033]);
  const b = m.perClass.b!;
  t.deepEqual([b.auc.value, b.auc.lo, b.auc.hi], [0.5158102766798419, 0.3154318181818182, 0.7295649509803922]);
  t.deepEqual([b.ap.value, b.ap.lo, b.ap.hi], [0.33184451466537024, 0.21276242830965475, 0.5914127832951364]);
});

function randomSet(seed: number, task: ScoreSet["task"], n: number, C: number): ScoreSet {
  const r = mulberry32(seed);
  const levels = 1 + (seed % 5) * 3; // few levels: many ties
  const scores = Float64Array.from({ length: n * C }, () => Math.round(r.next() * levels) / levels);
  const classes = Array.from({ length: C }, (_, c) => `c${c}`);
  if (task === "multilabel") {
    const y = Float32Array.from({ length: n * C }, (_, i) =>
      i % C === C - 1 ? 0 : r.next() < 0.15 ? Number.NaN : r.next() < 0.3 ? 1 : 0,
    ); // the last class has no positives
    if (seed % 2 === 0) scores[7] = Number.NaN; // a non-finite score
    return { task, classes, scores, n, y, threshold: 0.5 };
  }
  const targets = Int32Array.from({ length: n }, () => Math.floor(r.next() * (C - 1))); // class C−1 never occurs
  return { task, classes, scores, n, targets };
}

test("random score sets: every estimate equals the sort-per-resample reference to the bit", (t) => {
  for (let seed = 1; seed <= 12; seed++) {
    const task = (["multilabel", "multiclass", "graded"] as const)[seed % 3]!;
    const set = randomSet(seed, task, 30 + seed * 7, 2 + (seed % 4));
    const opts = { resamples: 150, seed, level: seed % 2 ? 0.9 : 0.95 };
    sameBits(t, estimates(evaluateScores(set, opts)), estimates(evaluateScoresJs(set, opts)), `${task} seed ${seed}`);
  }
});

test("SortedScores: AUC and AP of multiplicities equal rocAuc and averagePrecision on the sample written out", (t) => {
  const r = mulberry32(11);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(r.next() * 25);
    const s = Float64Array.from({ length: n }, () => Math.round(r.next() * 4) / 4);
    const l = Float64Array.from({ length: n }, () => (r.next() < 0.4 ? 1 : 0));
    if (trial % 17 === 0) s[0] = Number.POSITIVE_INFINITY;
    const ids = Int32Array.from({ length: n }, (_, i) => i);
    const sorted = new SortedScores(s, l, ids);
    const idx = Int32Array.from({ length: n }, () => Math.floor(r.next() * n));
    const [auc, ap] = sorted.aucAp(multiplicities(idx, n));
    t.true(Object.is(auc, rocAuc(pick(s, idx), pick(l, idx))), `trial ${trial}: AUC`);
    t.true(Object.is(ap, averagePrecision(pick(s, idx), pick(l, idx))), `trial ${trial}: AP`);
  }
  t.throws(() => new SortedScores([1, 2], [1], [0, 1]), { message: /2 cases but 2 scores and 1 labels/ });
});
