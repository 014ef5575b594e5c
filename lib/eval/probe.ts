/**
 * Linear probe: L2-regularised logistic regression on frozen image features (the tower's features
 * before the projection), standardised with the training split's mean and deviation, fitted with
 * L-BFGS. Multi-label tasks: one-vs-rest, each class on the cases whose label is known.
 * Single-label and graded tasks: multinomial (softmax) or one-vs-rest. The inverse regularisation
 * strength C (scikit-learn's convention: minimise C·Σ loss + ½‖w‖², bias not penalised) is chosen
 * from a grid by the validation split's log-loss (ties: the smaller C), warm-starting along the grid.
 */
import { patientMetrics } from "../adapt/patient.js";
import type { PatientAggregation, PatientReport } from "../adapt/patient.js";
import type { ViLReF } from "../model/vilref.js";
import type { EvalDataset, EvalSample } from "./dataset.js";
import { classTargets, DatasetError, multiLabelTargets, splitOf } from "./dataset.js";
import { evaluateScores } from "./evaluate.js";
import type { MetricsReport } from "./evaluate.js";
import { encodeImageSet } from "./features.js";
import type { EncodeImagesOptions } from "./features.js";
import { columnAucs, finiteMean } from "./metrics.js";
import { native } from "../native.js";
import { goldLabels } from "./predictions.js";
import type { ScoreTable } from "./predictions.js";
import type { BootstrapOptions } from "./metrics.js";

// ---- logistic regression (native/logistic.h) ---------------------------------------------------

/** Rows of X [n, d] (row-major, float64): the design of a fit. */
export interface Design {
  X: Float64Array;
  n: number;
  d: number;
}

/** A fitted linear model: weights [K, d] and biases [K]; `kind` says how scores become probabilities. */
export interface LinearModel {
  kind: "sigmoid" | "softmax";
  K: number;
  d: number;
  W: Float64Array;
  b: Float64Array;
}

/** Scores [n, K]: probabilities of the model on X [n, d] (sigmoid per class, or softmax over them). */
export async function predictProba(model: LinearModel, X: Float64Array, n: number): Promise<Float64Array> {
  const { K, d, W, b } = model;
  if (X.length !== n * d) throw new RangeError(`predictProba: expected ${n}×${d} features, got ${X.length}`);
  const P = await native().logistic.predict(
    { data: X, shape: [n, d] },
    { kind: model.kind, W: { data: W, shape: [K, d] }, b: { data: b, shape: [K] } },
  );
  return P.data;
}

/** Targets of a probe: multi-label rows (NaN unknown) or class indices. */
export type ProbeTargets =
  { kind: "multilabel"; y: Float32Array; K: number } | { kind: "single"; t: Int32Array; K: number };

/** The L-BFGS defaults: the one place they are set (the addon requires all three). */
export const LBFGS_DEFAULTS: Readonly<Required<LbfgsOptions>> = { maxIter: 500, gradTol: 1e-6, memory: 10 };

export interface LbfgsOptions {
  /** Iterations at most (500). */
  maxIter?: number;
  /** Stop when the largest gradient component (of the mean loss + λ/2‖w‖²) is below this (1e-6). */
  gradTol?: number;
  /** Curvature pairs kept (10). */
  memory?: number;
}

export interface FitOptions extends LbfgsOptions {
  /** Single-label: multinomial (default) or one-vs-rest. */
  multiclass?: "multinomial" | "ovr";
  init?: LinearModel;
}

/** How one L-BFGS problem of a fit ended. */
export interface FitProblem {
  /** The class of a one-vs-rest problem; null for the multinomial problem (all classes). */
  class: number | null;
  iterations: number;
  converged: boolean;
  /** The objective at the end: mean log-loss + λ/2‖w‖², λ = 1/(C·rows). */
  value: number;
}

export interface FittedLinear extends LinearModel {
  problems: FitProblem[];
  /** One-vs-rest classes with one label value only in the data: the constant model of their prior. */
  constant: number[];
}

/**
 * Fits the probe's linear model for one C in LibTorch (native/logistic.h): multinomial for
 * single-label targets unless `multiclass: "ovr"`, else one-vs-rest, every class on the rows whose
 * label is known, all classes side by side with one matrix product per evaluation. Classes with
 * one label value only get a constant model of their smoothed prior (listed in `constant`).
 */
export async function fitLinear(
  D: Design,
  targets: ProbeTargets,
  C: number,
  options: FitOptions = {},
): Promise<FittedLinear> {
  const { d, n } = D;
  const K = targets.K;
  if (D.X.length !== n * d) throw new RangeError(`fitLinear: expected ${n}×${d} features, got ${D.X.length}`);
  const lbfgs = {
    maxIter: options.maxIter ?? LBFGS_DEFAULTS.maxIter,
    gradTol: options.gradTol ?? LBFGS_DEFAULTS.gradTol,
    memory: options.memory ?? LBFGS_DEFAULTS.memory,
  };
  const x = { data: D.X, shape: [n, d] };
  if (targets.kind === "single" && (options.multiclass ?? "multinomial") === "multinomial") {
    const init = options.init?.kind === "softmax" ? options.init : undefined;
    const r = await native().logistic.fit({
      x,
      kind: "softmax",
      t: { data: targets.t, shape: [n] },
      classes: K,
      C,
      ...(init ? { init: { W: { data: init.W, shape: [K, d] }, b: { data: init.b, shape: [K] } } } : {}),
      ...lbfgs,
    });
    return {
      kind: "softmax",
      K,
      d,
      W: r.W.data,
      b: r.b.data,
      problems: [{ class: null, ...r.problems[0]! }],
      constant: [],
    };
  }
  return fitOneVsRest(D, targets, C, options.init?.kind === "sigmoid" ? options.init : undefined, lbfgs);
}

/** One-vs-rest: the classes with both label values fitted side by side, the others their prior. */
async function fitOneVsRest(
  D: Design,
  targets: ProbeTargets,
  C: number,
  init: LinearModel | undefined,
  lbfgs: Required<LbfgsOptions>,
): Promise<FittedLinear> {
  const { d, n } = D;
  const K = targets.K;
  const label = (i: number, c: number) =>
    targets.kind === "multilabel" ? targets.y[i * K + c]! : targets.t[i] === c ? 1 : 0;
  const W = new Float64Array(K * d);
  const b = new Float64Array(K);
  const fitted: number[] = [];
  const constant: number[] = [];
  for (let c = 0; c < K; c++) {
    let known = 0;
    let pos = 0;
    for (let i = 0; i < n; i++) {
      const v = label(i, c);
      if (Number.isNaN(v)) continue;
      known++;
      if (v === 1) pos++;
    }
    if (pos > 0 && pos < known) fitted.push(c);
    else {
      // one class only: the constant model of its (smoothed) prior
      const prior = (pos + 0.5) / (known + 1);
      b[c] = Math.log(prior / (1 - prior));
      constant.push(c);
    }
  }
  if (fitted.length === 0) return { kind: "sigmoid", K, d, W, b, problems: [], constant };
  const F = fitted.length;
  const y = new Float64Array(n * F);
  for (let i = 0; i < n; i++) fitted.forEach((c, j) => (y[i * F + j] = label(i, c)));
  const r = await native().logistic.fit({
    x: { data: D.X, shape: [n, d] },
    kind: "sigmoid",
    y: { data: y, shape: [n, F] },
    C,
    ...(init
      ? {
          init: {
            W: {
              data: Float64Array.from(fitted.flatMap((c) => [...init.W.subarray(c * d, (c + 1) * d)])),
              shape: [F, d],
            },
            b: { data: Float64Array.from(fitted, (c) => init.b[c]!), shape: [F] },
          },
        }
      : {}),
    ...lbfgs,
  });
  fitted.forEach((c, j) => {
    W.set(r.W.data.subarray(j * d, (j + 1) * d), c * d);
    b[c] = r.b.data[j]!;
  });
  const problems = fitted.map((c, j) => ({ class: c, ...r.problems[j]! }));
  return { kind: "sigmoid", K, d, W, b, problems, constant };
}

/** Mean log-loss of probabilities on targets (multi-label: binary cross-entropy averaged over the
 * known labels of each class, then classes). */
export function logLoss(P: Float64Array, n: number, targets: ProbeTargets): number {
  const K = targets.K;
  const eps = 1e-12;
  if (targets.kind === "single") {
    let s = 0;
    for (let i = 0; i < n; i++) s -= Math.log(Math.max(P[i * K + targets.t[i]!]!, eps));
    return s / n;
  }
  const per: number[] = [];
  for (let c = 0; c < K; c++) {
    let s = 0;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const v = targets.y[i * K + c]!;
      if (Number.isNaN(v)) continue;
      const p = Math.min(Math.max(P[i * K + c]!, eps), 1 - eps);
      s -= v * Math.log(p) + (1 - v) * Math.log(1 - p);
      m++;
    }
    if (m > 0) per.push(s / m);
  }
  return finiteMean(per);
}

/** Mean one-vs-rest AUC of probabilities (metrics.ts columnAucs; NaN classes left out). */
export function meanAuc(P: Float64Array, n: number, targets: ProbeTargets): number {
  const K = targets.K;
  const y =
    targets.kind === "multilabel"
      ? targets.y
      : Float64Array.from({ length: n * K }, (_, i) => (targets.t[Math.floor(i / K)] === i % K ? 1 : 0));
  return finiteMean(columnAucs(P, y, n, K).map((r) => r.auc));
}

export const DEFAULT_C_GRID: readonly number[] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10, 30, 100];

export interface Standardizer {
  mean: Float64Array;
  std: Float64Array;
}

/** Mean and deviation of each column (a constant column gets deviation 1). */
export function fitStandardizer(X: ArrayLike<number>, n: number, d: number): Standardizer {
  const mean = new Float64Array(d);
  const std = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) mean[k]! += X[i * d + k]! / n;
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) std[k]! += (X[i * d + k]! - mean[k]!) ** 2 / n;
  for (let k = 0; k < d; k++) std[k] = std[k]! > 1e-12 ? Math.sqrt(std[k]!) : 1;
  return { mean, std };
}

export function standardize(X: ArrayLike<number>, n: number, d: number, s: Standardizer): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) out[i * d + k] = (X[i * d + k]! - s.mean[k]!) / s.std[k]!;
  return out;
}

export interface SelectionRow {
  C: number;
  valLogLoss: number;
  valAuc: number;
  /** Whether every L-BFGS problem of this C's fit converged, and the most iterations one took. */
  converged: boolean;
  iterations: number;
}

/** A fit whose L-BFGS stopped before convergence (its result is used all the same). */
export interface NonConvergence {
  /** "selection": fitting a C of the grid; "final": the model reported. */
  stage: "selection" | "final";
  C: number;
  /** Classes of the problems that did not converge (null: the multinomial problem). */
  classes: (number | null)[];
  iterations: number;
}

export interface TrainedProbe {
  model: LinearModel;
  standardizer: Standardizer;
  C: number;
  selection: SelectionRow[];
  /** Classes that had only one label value in training (a constant model). */
  constantClasses: number[];
  nonConverged: NonConvergence[];
}

function nonConvergence(stage: NonConvergence["stage"], C: number, m: FittedLinear): NonConvergence | null {
  const bad = m.problems.filter((p) => !p.converged);
  if (bad.length === 0) return null;
  return { stage, C, classes: bad.map((p) => p.class), iterations: Math.max(...bad.map((p) => p.iterations)) };
}

/** Training and validation data put together (refit: "train+val"). */
function joined(
  Dtr: Design,
  Xva: Float64Array,
  tr: ProbeTargets,
  va: ProbeTargets,
  nva: number,
): { D: Design; targets: ProbeTargets } {
  const { d } = Dtr;
  const X = new Float64Array((Dtr.n + nva) * d);
  X.set(Dtr.X);
  X.set(Xva, Dtr.n * d);
  const targets: ProbeTargets =
    tr.kind === "multilabel" && va.kind === "multilabel"
      ? { kind: "multilabel", K: tr.K, y: concatF32(tr.y, va.y) }
      : tr.kind === "single" && va.kind === "single"
        ? { kind: "single", K: tr.K, t: concatI32(tr.t, va.t) }
        : tr;
  return { D: { X, n: Dtr.n + nva, d }, targets };
}

/**
 * Chooses C on the validation split (lowest log-loss; ties within 1e-9 keep the smaller C) and
 * fits the final model on training (+ validation with `refit: "train+val"`, the default) data.
 * Features are raw [n, d] rows; they are standardised with the training split's statistics. Fits
 * whose L-BFGS did not converge are listed in `nonConverged`.
 */
export async function trainProbe(
  train: { X: ArrayLike<number>; n: number; targets: ProbeTargets },
  val: { X: ArrayLike<number>; n: number; targets: ProbeTargets },
  d: number,
  options: FitOptions & { cGrid?: readonly number[]; refit?: "train" | "train+val" } = {},
): Promise<TrainedProbe> {
  const grid = [...(options.cGrid ?? DEFAULT_C_GRID)].sort((a, b) => a - b);
  if (grid.length === 0 || grid.some((c) => !(c > 0 && Number.isFinite(c))))
    throw new RangeError(`C grid: expected positive numbers, got ${grid.join(", ")}`);
  const st = fitStandardizer(train.X, train.n, d);
  const Dtr = { X: standardize(train.X, train.n, d, st), n: train.n, d };
  const Xva = standardize(val.X, val.n, d, st);
  const selection: SelectionRow[] = [];
  const nonConverged: NonConvergence[] = [];
  let prev: LinearModel | undefined;
  let best = { C: grid[0]!, loss: Infinity };
  for (const C of grid) {
    const m = await fitLinear(Dtr, train.targets, C, { ...options, ...(prev ? { init: prev } : {}) });
    prev = m;
    const P = await predictProba(m, Xva, val.n);
    const bad = nonConvergence("selection", C, m);
    if (bad) nonConverged.push(bad);
    selection.push({
      C,
      valLogLoss: logLoss(P, val.n, val.targets),
      valAuc: meanAuc(P, val.n, val.targets),
      converged: bad === null,
      iterations: Math.max(0, ...m.problems.map((p) => p.iterations)),
    });
    if (selection.at(-1)!.valLogLoss < best.loss - 1e-9) best = { C, loss: selection.at(-1)!.valLogLoss };
  }
  const fin =
    (options.refit ?? "train+val") === "train+val"
      ? joined(Dtr, Xva, train.targets, val.targets, val.n)
      : { D: Dtr, targets: train.targets };
  const final = await fitLinear(fin.D, fin.targets, best.C, options);
  const bad = nonConvergence("final", best.C, final);
  if (bad) nonConverged.push(bad);
  const { problems: _p, constant, ...model } = final;
  return { model, standardizer: st, C: best.C, selection, constantClasses: constant, nonConverged };
}

function concatF32(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
function concatI32(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// ---- the protocol --------------------------------------------------------------------------------

export interface ProbeOptions extends BootstrapOptions, FitOptions {
  cGrid?: readonly number[];
  refit?: "train" | "train+val";
  splits?: { train?: string; val?: string; test?: string };
  images?: EncodeImagesOptions;
  /** Where warnings go besides the result's `warnings` (default: a "vilref: warning:" line on stderr). */
  onWarning?: (message: string) => void;
  /** Also per-patient metrics: each patient's probabilities the max or mean over their images. */
  patient?: PatientAggregation;
}

export interface ProbeResult extends MetricsReport {
  protocol: "probe";
  C: number;
  selection: SelectionRow[];
  featureDim: number;
  splits: { train: number; val: number; test: number };
  /** Per-image probabilities on the test split (what --predictions writes; leave it out of a metrics JSON). */
  predictions: ScoreTable;
  /** Fits that stopped before convergence (their models are used all the same). */
  warnings: string[];
  patient?: PatientReport;
}

/** A readable warning for a fit that did not converge. */
export function convergenceWarning(nc: NonConvergence, classes: readonly string[]): string {
  const which = nc.classes.map((c) => (c === null ? "all classes (multinomial)" : (classes[c] ?? `class ${c}`)));
  const what = nc.stage === "final" ? "the final fit" : "the fit for choosing C";
  return (
    `${what} at C = ${nc.C} did not converge for ${which.join(", ")} (L-BFGS stopped after ` +
    `${nc.iterations} iteration${nc.iterations === 1 ? "" : "s"}); the result may be less accurate`
  );
}

function targetsOf(ds: EvalDataset, samples: readonly EvalSample[]): ProbeTargets {
  const K = ds.classes.length;
  return ds.task === "multilabel"
    ? { kind: "multilabel", y: multiLabelTargets(samples, K), K }
    : { kind: "single", t: classTargets(samples, K), K };
}

/** The linear probe on a dataset's train / val / test splits, with frozen pre-projection features. */
export async function linearProbe(model: ViLReF, ds: EvalDataset, options: ProbeOptions = {}): Promise<ProbeResult> {
  const names = {
    train: options.splits?.train ?? "train",
    val: options.splits?.val ?? "val",
    test: options.splits?.test ?? "test",
  };
  const notes: string[] = [...ds.notes];
  const enc = async (split: string) => {
    const samples = splitOf(ds, split);
    const f = await encodeImageSet(model, samples, { ...options.images, features: "pre" });
    if (f.n === 0) throw new DatasetError(`${ds.name}: no image of split "${split}" could be decoded`);
    if (f.skipped.length > 0)
      notes.push(
        `${split}: ${f.skipped.length} images could not be decoded and were left out (first: ` +
          `${f.skipped[0]!.id}: ${f.skipped[0]!.reason})`,
      );
    const used = f.used.map((i) => samples[i]!);
    return { X: f.data, n: f.n, d: f.d, targets: targetsOf(ds, used), used };
  };
  const tr = await enc(names.train);
  const va = await enc(names.val);
  const te = await enc(names.test);
  const probe = await trainProbe(tr, va, tr.d, options);
  for (const c of probe.constantClasses)
    notes.push(`${ds.classes[c]}: only one label value in the training data; the probe predicts its prior`);
  const warnings = probe.nonConverged.map((nc) => convergenceWarning(nc, ds.classes));
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`vilref: warning: ${m}\n`));
  for (const w of warnings) warn(w);
  const P = await predictProba(probe.model, standardize(te.X, te.n, te.d, probe.standardizer), te.n);
  const boot: BootstrapOptions = {
    ...(options.resamples !== undefined ? { resamples: options.resamples } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.level !== undefined ? { level: options.level } : {}),
  };
  const report =
    te.targets.kind === "multilabel"
      ? evaluateScores(
          { task: "multilabel", classes: ds.classes, scores: P, n: te.n, y: te.targets.y, threshold: 0.5 },
          boot,
        )
      : evaluateScores({ task: ds.task, classes: ds.classes, scores: P, n: te.n, targets: te.targets.t }, boot);
  return {
    ...report,
    protocol: "probe",
    notes: [...notes, ...report.notes],
    C: probe.C,
    selection: probe.selection,
    featureDim: tr.d,
    splits: { train: tr.n, val: va.n, test: te.n },
    predictions: {
      ids: te.used.map((s) => s.id),
      images: te.used.map((s) => s.image),
      classes: ds.classes,
      scores: P,
      multiLabel: te.targets.kind === "multilabel",
      threshold: 0.5,
      gold: goldLabels(
        ds.classes,
        te.n,
        te.targets.kind === "multilabel" ? { y: te.targets.y } : { targets: te.targets.t },
      ),
    },
    warnings,
    ...(options.patient ? { patient: patientMetrics(ds, te.used, ds.classes, P, options.patient, boot) } : {}),
  };
}
