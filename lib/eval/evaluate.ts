/**
 * Scores → metrics, the same for every protocol (zero-shot, linear probe, fine-tuning): per-class
 * and mean AUC, AP, F1 and accuracy for multi-label tasks; accuracy, balanced accuracy, macro F1,
 * kappa, one-vs-rest AUC and mAP for single-label tasks, and linear and quadratic-weighted kappa
 * for graded ones; every number with a percentile bootstrap CI over cases (one pass of resamples
 * for all of them; each class sorted once, each resample O(n) per class from the cases'
 * multiplicities, giving the same values as the metric functions on the resample written out). A
 * class without positives (or negatives) has AUC NaN: it is reported, left out of the means, and
 * named in a note.
 */
import type { Task } from "./dataset.js";
import {
  argmaxRows,
  balancedAccuracyFromConfusion,
  bootstrapMany,
  confusionMatrix,
  f1FromConfusion,
  f1FromCounts,
  finiteMean,
  kappaFromConfusion,
  multiplicities,
  rocCurve,
  SortedScores,
} from "./metrics.js";
import type { BootstrapOptions, Estimate } from "./metrics.js";

export interface ScoreSet {
  task: Task;
  classes: string[];
  /** [n, C] row-major: probabilities, or any score that grows with the class's likelihood. */
  scores: Float64Array;
  n: number;
  /** Multi-label targets [n, C] (1 / 0 / NaN unknown). */
  y?: Float32Array;
  /** Single-label / graded targets. */
  targets?: Int32Array;
  /** Multi-label: a class is predicted when its score is above this (F1, accuracy). */
  threshold?: number;
}

export interface ClassReport {
  auc: Estimate;
  ap: Estimate;
  f1: Estimate;
  accuracy: Estimate;
  positives: number;
  negatives: number;
  /** Multi-label: cases whose label for this class is unknown (left out for this class). */
  unknown: number;
}

export interface MetricsReport {
  task: Task;
  classes: string[];
  n: number;
  /** Means over classes (multi-label) or whole-task metrics (single-label). */
  metrics: Record<string, Estimate>;
  perClass: Record<string, ClassReport>;
  /** Single-label: [true class][predicted class]; multi-label: per class [[TN, FP], [FN, TP]]. */
  confusion: number[][] | Record<string, number[][]>;
  /** ROC curve points per class (one-vs-rest for single-label tasks). */
  roc: Record<string, { fpr: number[]; tpr: number[] }>;
  notes: string[];
  bootstrap: { resamples: number; seed: number; level: number };
}

function column(scores: Float64Array, n: number, C: number, c: number, idx: ArrayLike<number>): Float64Array {
  const out = new Float64Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = scores[idx[i]! * C + c]!;
  void n;
  return out;
}

/**
 * The multi-label bootstrap statistic: per class AUC, AP, F1 and accuracy over the known cases of
 * a resample, then their means. Each class is sorted once (SortedScores); a resample costs O(n)
 * per class and gives the same bits as rocAuc / averagePrecision / f1Binary / accuracy on the
 * resample written out.
 */
function multiLabelStatistic(
  scores: Float64Array,
  y: Float32Array,
  n: number,
  C: number,
  known: number[][],
  thr: number,
): (idx: Int32Array) => number[] {
  const classes = known.map((ids, c) => {
    const s = ids.map((i) => scores[i * C + c]!);
    const l = ids.map((i) => y[i * C + c]!);
    const pred = Uint8Array.from(s, (v) => (v > thr ? 1 : 0));
    // f1Binary's truthiness; accuracy's strict equality of the 0/1 prediction with the label
    const pos = Uint8Array.from(l, (v) => (v ? 1 : 0));
    const hit = Uint8Array.from(l, (v, j) => (v === pred[j] ? 1 : 0));
    return { ids: Int32Array.from(ids), sorted: new SortedScores(s, l, ids), pred, pos, hit };
  });
  return (idx) => {
    const counts = multiplicities(idx, n);
    const per = classes.map(({ ids, sorted, pred, pos, hit }) => {
      let tp = 0;
      let fp = 0;
      let fn = 0;
      let hits = 0;
      let m = 0;
      for (let j = 0; j < ids.length; j++) {
        const c = counts[ids[j]!]!;
        if (c === 0) continue;
        m += c;
        if (pred[j] && pos[j]) tp += c;
        else if (pred[j]) fp += c;
        else if (pos[j]) fn += c;
        if (hit[j]) hits += c;
      }
      const [auc, ap] = sorted.aucAp(counts);
      return [auc, ap, f1FromCounts(tp, fp, fn), m === 0 ? Number.NaN : hits / m];
    });
    const out: number[] = [];
    for (const v of per) out.push(...v);
    for (let k = 0; k < 4; k++) out.push(finiteMean(per.map((v) => v[k]!)));
    return out;
  };
}

/**
 * The single-label bootstrap statistic: per class one-vs-rest AUC, AP, F1 and accuracy, then
 * accuracy, balanced accuracy, macro F1, kappa, mean AUC, mAP (and the weighted kappas of graded
 * tasks), all from the resample's multiplicities and confusion matrix in O(n) per class.
 */
function singleLabelStatistic(
  scores: Float64Array,
  t: Int32Array,
  pred: Int32Array,
  n: number,
  C: number,
  graded: boolean,
): (idx: Int32Array) => number[] {
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const sorted = Array.from(
    { length: C },
    (_, c) =>
      new SortedScores(
        column(scores, n, C, c, all),
        Array.from(t, (v) => (v === c ? 1 : 0)),
        all,
      ),
  );
  return (idx) => {
    const counts = multiplicities(idx, n);
    const m = Array.from({ length: C }, () => new Array<number>(C).fill(0));
    for (const i of idx) m[t[i]!]![pred[i]!]!++;
    const N = idx.length;
    const per = sorted.map((s, c) => {
      const tp = m[c]![c]!;
      const fn = m[c]!.reduce((a, b) => a + b, 0) - tp;
      const fp = m.reduce((a, r) => a + r[c]!, 0) - tp;
      const [auc, ap] = s.aucAp(counts);
      return [auc, ap, f1FromCounts(tp, fp, fn), N === 0 ? Number.NaN : (N - fp - fn) / N];
    });
    const out: number[] = [];
    for (const v of per) out.push(...v);
    let hits = 0;
    for (let c = 0; c < C; c++) hits += m[c]![c]!;
    out.push(
      N === 0 ? Number.NaN : hits / N,
      balancedAccuracyFromConfusion(m),
      f1FromConfusion(m).macro,
      kappaFromConfusion(m),
      finiteMean(per.map((v) => v[0]!)),
      finiteMean(per.map((v) => v[1]!)),
    );
    if (graded) out.push(kappaFromConfusion(m, "linear"), kappaFromConfusion(m, "quadratic"));
    return out;
  };
}

type Boot = MetricsReport["bootstrap"];

/** Metrics of a score set with bootstrap CIs. */
export function evaluateScores(set: ScoreSet, options: BootstrapOptions = {}): MetricsReport {
  const { classes, scores, n } = set;
  const C = classes.length;
  if (scores.length !== n * C) throw new RangeError(`evaluateScores: expected ${n}×${C} scores, got ${scores.length}`);
  if (n === 0) throw new RangeError("evaluateScores: no cases");
  const boot = { resamples: options.resamples ?? 1000, seed: options.seed ?? 0, level: options.level ?? 0.95 };
  return set.task === "multilabel" ? multiLabelReport(set, boot) : singleLabelReport(set, boot);
}

/** Class c's report: its AUC, AP, F1 and accuracy estimates (4 per class in `est`) and its counts. */
function classReport(est: Estimate[], c: number, positives: number, negatives: number, unknown: number): ClassReport {
  return {
    auc: est[4 * c]!,
    ap: est[4 * c + 1]!,
    f1: est[4 * c + 2]!,
    accuracy: est[4 * c + 3]!,
    positives,
    negatives,
    unknown,
  };
}

function multiLabelReport(set: ScoreSet, boot: Boot): MetricsReport {
  const { classes, scores, n, task } = set;
  const C = classes.length;
  const y = set.y;
  if (!y || y.length !== n * C) throw new RangeError(`evaluateScores: multi-label targets must be ${n}×${C}`);
  const thr = set.threshold ?? 0.5;
  const notes: string[] = [];
  const perClass: Record<string, ClassReport> = {};
  const roc: MetricsReport["roc"] = {};
  // per class: the cases with a known label
  const known = classes.map((_, c) => {
    const k: number[] = [];
    for (let i = 0; i < n; i++) if (!Number.isNaN(y[i * C + c]!)) k.push(i);
    return k;
  });
  // statistic layout: [auc_c, ap_c, f1_c, acc_c for each c] + [mean auc, map, mean f1, mean acc]
  const est = bootstrapMany(n, multiLabelStatistic(scores, y, n, C, known, thr), boot);
  const confusion: Record<string, number[][]> = {};
  classes.forEach((name, c) => {
    const s = known[c]!.map((i) => scores[i * C + c]!);
    const l = known[c]!.map((i) => y[i * C + c]!);
    const pos = l.filter((v) => v === 1).length;
    const neg = l.length - pos;
    const m = [
      [0, 0],
      [0, 0],
    ];
    s.forEach((v, i) => m[l[i]! === 1 ? 1 : 0]![v > thr ? 1 : 0]!++);
    confusion[name] = m;
    perClass[name] = classReport(est, c, pos, neg, n - l.length);
    roc[name] = rocCurve(s, l);
    if (pos === 0 || neg === 0)
      notes.push(
        `${name}: ${pos === 0 ? "no positives" : "no negatives"} among ${l.length} cases; AUC undefined, ` +
          "left out of the mean AUC",
      );
  });
  const k = 4 * C;
  const metrics = { auc: est[k]!, map: est[k + 1]!, f1: est[k + 2]!, accuracy: est[k + 3]! };
  return { task, classes, n, metrics, perClass, confusion, roc, notes, bootstrap: boot };
}

function singleLabelReport(set: ScoreSet, boot: Boot): MetricsReport {
  const { classes, scores, n, task } = set;
  const C = classes.length;
  const t = set.targets;
  if (!t || t.length !== n) throw new RangeError(`evaluateScores: expected ${n} class targets`);
  const notes: string[] = [];
  const perClass: Record<string, ClassReport> = {};
  const roc: MetricsReport["roc"] = {};
  const pred = argmaxRows(scores, n, C);
  const graded = task === "graded";
  const est = bootstrapMany(n, singleLabelStatistic(scores, t, pred, n, C, graded), boot);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  classes.forEach((name, c) => {
    const pos = t.filter((v) => v === c).length;
    perClass[name] = classReport(est, c, pos, n - pos, 0);
    roc[name] = rocCurve(
      column(scores, n, C, c, all),
      Array.from(t, (v) => (v === c ? 1 : 0)),
    );
    if (pos === 0) notes.push(`${name}: no cases of this class; its AUC is undefined and left out of the mean AUC`);
  });
  const k = 4 * C;
  const metrics: Record<string, Estimate> = {
    accuracy: est[k]!,
    balancedAccuracy: est[k + 1]!,
    f1: est[k + 2]!,
    kappa: est[k + 3]!,
    auc: est[k + 4]!,
    map: est[k + 5]!,
  };
  if (graded) Object.assign(metrics, { kappaLinear: est[k + 6]!, kappaQuadratic: est[k + 7]! });
  return { task, classes, n, metrics, perClass, confusion: confusionMatrix(pred, t, C), roc, notes, bootstrap: boot };
}

/** A readable table of a report: the task's metrics, then one line per class. */
export function formatReport(r: MetricsReport, title: string): string {
  const f = (e: Estimate) =>
    !Number.isFinite(e.value)
      ? "n/a".padEnd(21)
      : Number.isFinite(e.lo)
        ? `${e.value.toFixed(3)} [${e.lo.toFixed(3)}, ${e.hi.toFixed(3)}]`
        : e.value.toFixed(3).padEnd(21);
  const lines = [
    `${title}: ${r.task}, ${r.n} cases, ${r.classes.length} classes (95% bootstrap CIs, ` +
      `${r.bootstrap.resamples} resamples)`,
  ];
  for (const [k, e] of Object.entries(r.metrics)) lines.push(`  ${k.padEnd(18)} ${f(e)}`);
  const w = Math.max(8, ...r.classes.map((c) => c.length));
  lines.push(`  ${"class".padEnd(w)}  ${"AUC".padEnd(21)}  ${"AP".padEnd(21)}  ${"F1".padEnd(21)}  pos/neg`);
  for (const c of r.classes) {
    const p = r.perClass[c]!;
    lines.push(
      `  ${c.padEnd(w)}  ${f(p.auc)}  ${f(p.ap)}  ${f(p.f1)}  ` +
        `${p.positives}/${p.negatives}${p.unknown ? ` (${p.unknown} unknown)` : ""}`,
    );
  }
  for (const note of r.notes) lines.push(`  note: ${note}`);
  return lines.join("\n");
}
