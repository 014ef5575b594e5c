/**
 * The JavaScript evaluation arithmetic that issue 16 moved to LibTorch and to O(n) bootstraps,
 * kept verbatim as the baselines of bench/eval.ts and as the references of the tests (nothing in
 * lib/ uses it): evaluateScores with a sort per class per resample, retrieval through the full n×n
 * Float64 similarity and its transpose, and the probe's scalar L-BFGS logistic regression.
 */
import type { ClassReport, MetricsReport, ScoreSet } from "../../lib/eval/evaluate.js";
import {
  accuracy,
  argmaxRows,
  averagePrecision,
  balancedAccuracy,
  bootstrapMany,
  cohenKappa,
  confusionMatrix,
  f1Binary,
  f1Multiclass,
  finiteMean,
  quantileSorted,
  rocAuc,
  rocCurve,
} from "../../lib/eval/metrics.js";
import type { BootstrapOptions, Estimate } from "../../lib/eval/metrics.js";
import { DEFAULT_C_GRID } from "../../lib/eval/probe.js";
import type { Standardizer } from "../../lib/eval/probe.js";

// ---- evaluateScores (lib/eval/evaluate.ts before issue 16) ----------------------------------------

function column(scores: Float64Array, n: number, C: number, c: number, idx: ArrayLike<number>): Float64Array {
  const out = new Float64Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = scores[idx[i]! * C + c]!;
  void n;
  return out;
}

/** Metrics of a score set with bootstrap CIs. */
export function evaluateScoresJs(set: ScoreSet, options: BootstrapOptions = {}): MetricsReport {
  const { classes, scores, n, task } = set;
  const C = classes.length;
  if (scores.length !== n * C) throw new RangeError(`evaluateScores: expected ${n}×${C} scores, got ${scores.length}`);
  if (n === 0) throw new RangeError("evaluateScores: no cases");
  const boot = { resamples: options.resamples ?? 1000, seed: options.seed ?? 0, level: options.level ?? 0.95 };
  const notes: string[] = [];
  const perClass: Record<string, ClassReport> = {};
  const roc: MetricsReport["roc"] = {};

  if (task === "multilabel") {
    const y = set.y;
    if (!y || y.length !== n * C) throw new RangeError(`evaluateScores: multi-label targets must be ${n}×${C}`);
    const thr = set.threshold ?? 0.5;
    // per class: the cases with a known label
    const known = classes.map((_, c) => {
      const k: number[] = [];
      for (let i = 0; i < n; i++) if (!Number.isNaN(y[i * C + c]!)) k.push(i);
      return k;
    });
    // statistic layout: [auc_c, ap_c, f1_c, acc_c for each c] + [mean auc, map, mean f1, mean acc]
    const stat = (idx: Int32Array): number[] => {
      const out: number[] = [];
      const count = new Int32Array(n);
      for (const i of idx) count[i]!++;
      const per = classes.map((_, c) => {
        const s: number[] = [];
        const l: number[] = [];
        for (const i of known[c]!)
          for (let r = 0; r < count[i]!; r++) (s.push(scores[i * C + c]!), l.push(y[i * C + c]!));
        const p = s.map((v) => (v > thr ? 1 : 0));
        return [rocAuc(s, l), averagePrecision(s, l), f1Binary(p, l), l.length === 0 ? Number.NaN : accuracy(p, l)];
      });
      for (const v of per) out.push(...v);
      for (let m = 0; m < 4; m++) out.push(finiteMean(per.map((v) => v[m]!)));
      return out;
    };
    const est = bootstrapMany(n, stat, boot);
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
      perClass[name] = {
        auc: est[4 * c]!,
        ap: est[4 * c + 1]!,
        f1: est[4 * c + 2]!,
        accuracy: est[4 * c + 3]!,
        positives: pos,
        negatives: neg,
        unknown: n - l.length,
      };
      roc[name] = rocCurve(s, l);
      if (pos === 0 || neg === 0)
        notes.push(
          `${name}: ${pos === 0 ? "no positives" : "no negatives"} among ${l.length} cases; AUC undefined, ` +
            "left out of the mean AUC",
        );
    });
    const k = 4 * C;
    return {
      task,
      classes,
      n,
      metrics: { auc: est[k]!, map: est[k + 1]!, f1: est[k + 2]!, accuracy: est[k + 3]! },
      perClass,
      confusion,
      roc,
      notes,
      bootstrap: boot,
    };
  }

  // single-label and graded
  const t = set.targets;
  if (!t || t.length !== n) throw new RangeError(`evaluateScores: expected ${n} class targets`);
  const pred = argmaxRows(scores, n, C);
  const graded = task === "graded";
  const stat = (idx: Int32Array): number[] => {
    const p = Int32Array.from(idx, (i) => pred[i]!);
    const tt = Int32Array.from(idx, (i) => t[i]!);
    const per = classes.map((_, c) => {
      const s = column(scores, n, C, c, idx);
      const l = Array.from(tt, (v) => (v === c ? 1 : 0));
      const pc = Array.from(p, (v) => (v === c ? 1 : 0));
      return [rocAuc(s, l), averagePrecision(s, l), f1Binary(pc, l), accuracy(pc, l)];
    });
    const out: number[] = [];
    for (const v of per) out.push(...v);
    out.push(
      accuracy(p, tt),
      balancedAccuracy(p, tt, C),
      f1Multiclass(p, tt, C).macro,
      cohenKappa(p, tt, C),
      finiteMean(per.map((v) => v[0]!)),
      finiteMean(per.map((v) => v[1]!)),
    );
    if (graded) out.push(cohenKappa(p, tt, C, "linear"), cohenKappa(p, tt, C, "quadratic"));
    return out;
  };
  const est = bootstrapMany(n, stat, boot);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  classes.forEach((name, c) => {
    const pos = t.filter((v) => v === c).length;
    perClass[name] = {
      auc: est[4 * c]!,
      ap: est[4 * c + 1]!,
      f1: est[4 * c + 2]!,
      accuracy: est[4 * c + 3]!,
      positives: pos,
      negatives: n - pos,
      unknown: 0,
    };
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

// ---- retrieval (lib/eval/retrieval.ts, features.ts `dots` and metrics.ts `transpose` before issue 16) ----

/** a [na, d] · b [nb, d]^T, row-major [na, nb]. */
export function dots(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number, d: number): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++)
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!;
      out[i * nb + j] = s;
    }
  return out;
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose(m: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

/** 0-based rank of each row's target column: candidates scoring at least as well as the target (ties never help). */
export function targetRanksJs(
  scores: ArrayLike<number>,
  rows: number,
  cols: number,
  targets: ArrayLike<number>,
): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const t = targets[r]!;
    const s = scores[r * cols + t]!;
    let rank = 0;
    for (let c = 0; c < cols; c++) if (c !== t && !(scores[r * cols + c]! < s)) rank++;
    out[r] = rank;
  }
  return out;
}

export interface DirectionReportJs {
  recall: Record<`R@${number}`, Estimate>;
  medianRank: number;
}

/**
 * Retrieval both ways from normalised features (rows i ↔ i): the n×n Float64 similarity, its
 * transpose, the ranks; `rankSeconds` times that part alone (the bootstrap follows it).
 */
export function retrievalJs(
  I: Float32Array,
  T: Float32Array,
  n: number,
  d: number,
  ks: readonly number[] = [1, 5, 10],
  options: BootstrapOptions = {},
): {
  imageToText: DirectionReportJs;
  textToImage: DirectionReportJs;
  ranks: { i2t: Int32Array; t2i: Int32Array };
  rankSeconds: number;
} {
  const t0 = performance.now();
  const similarity = dots(I, n, T, n, d);
  const targets = Int32Array.from({ length: n }, (_, i) => i);
  const boot = { resamples: options.resamples ?? 1000, seed: options.seed ?? 0, level: options.level ?? 0.95 };
  const direction = (ranks: Int32Array): DirectionReportJs => {
    const est = bootstrapMany(
      n,
      (idx) =>
        ks.map((k) => {
          let h = 0;
          for (const i of idx) if (ranks[i]! < k) h++;
          return idx.length === 0 ? Number.NaN : h / idx.length;
        }),
      boot,
    );
    const sorted = Float64Array.from(ranks, (r) => r + 1).sort();
    return {
      recall: Object.fromEntries(ks.map((k, j) => [`R@${k}`, est[j]!])) as Record<`R@${number}`, Estimate>,
      medianRank: quantileSorted(sorted, 0.5),
    };
  };
  const i2t = targetRanksJs(similarity, n, n, targets);
  const t2i = targetRanksJs(transpose(similarity, n, n), n, n, targets);
  const rankSeconds = (performance.now() - t0) / 1000;
  return { imageToText: direction(i2t), textToImage: direction(t2i), ranks: { i2t, t2i }, rankSeconds };
}

// ---- the linear probe (lib/eval/probe.ts before issue 16) -------------------------------------------

export interface LbfgsOptions {
  maxIter?: number;
  /** Stop when the largest gradient component is below this. */
  gradTol?: number;
  memory?: number;
}

/** Minimises f (which writes its gradient into `grad` and returns the value) from x0 (updated in place). */
export function lbfgs(
  f: (x: Float64Array, grad: Float64Array) => number,
  x: Float64Array,
  options: LbfgsOptions = {},
): { value: number; iterations: number; converged: boolean } {
  const maxIter = options.maxIter ?? 500;
  const tol = options.gradTol ?? 1e-6;
  const m = options.memory ?? 10;
  const n = x.length;
  const g = new Float64Array(n);
  let fx = f(x, g);
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  const d = new Float64Array(n);
  const xNew = new Float64Array(n);
  const gNew = new Float64Array(n);
  const alpha = new Float64Array(m);
  const dot = (a: Float64Array, b: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i]! * b[i]!;
    return s;
  };
  const maxAbs = (a: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) s = Math.max(s, Math.abs(a[i]!));
    return s;
  };
  for (let it = 0; it < maxIter; it++) {
    if (maxAbs(g) < tol) return { value: fx, iterations: it, converged: true };
    // two-loop recursion: d = −H·g
    d.set(g);
    for (let k = S.length - 1; k >= 0; k--) {
      alpha[k] = rho[k]! * dot(S[k]!, d);
      const yk = Y[k]!;
      for (let i = 0; i < n; i++) d[i]! -= alpha[k]! * yk[i]!;
    }
    const gamma =
      S.length > 0 ? dot(S.at(-1)!, Y.at(-1)!) / dot(Y.at(-1)!, Y.at(-1)!) : 1 / Math.max(1, Math.sqrt(dot(g, g)));
    for (let i = 0; i < n; i++) d[i]! *= gamma;
    for (let k = 0; k < S.length; k++) {
      const beta = rho[k]! * dot(Y[k]!, d);
      const sk = S[k]!;
      for (let i = 0; i < n; i++) d[i]! += sk[i]! * (alpha[k]! - beta);
    }
    for (let i = 0; i < n; i++) d[i] = -d[i]!;
    let slope = dot(g, d);
    if (!(slope < 0)) {
      // not a descent direction: restart from steepest descent
      S.length = Y.length = rho.length = 0;
      for (let i = 0; i < n; i++) d[i] = -g[i]!;
      slope = -dot(g, g);
    }
    // backtracking line search (Armijo)
    let step = 1;
    let fNew = Number.NaN;
    for (let ls = 0; ls < 40; ls++) {
      for (let i = 0; i < n; i++) xNew[i] = x[i]! + step * d[i]!;
      fNew = f(xNew, gNew);
      if (Number.isFinite(fNew) && fNew <= fx + 1e-4 * step * slope) break;
      step *= 0.5;
    }
    if (!(Number.isFinite(fNew) && fNew <= fx)) return { value: fx, iterations: it, converged: false };
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = xNew[i]! - x[i]!;
      y[i] = gNew[i]! - g[i]!;
    }
    const sy = dot(s, y);
    if (sy > 1e-12) {
      if (S.length === m) (S.shift(), Y.shift(), rho.shift());
      S.push(s);
      Y.push(y);
      rho.push(1 / sy);
    }
    const change = fx - fNew;
    x.set(xNew);
    g.set(gNew);
    fx = fNew;
    if (change <= 1e-12 * Math.max(1, Math.abs(fx)))
      return { value: fx, iterations: it + 1, converged: maxAbs(g) < Math.sqrt(tol) };
  }
  return { value: fx, iterations: maxIter, converged: maxAbs(g) < tol };
}

// ---- logistic regression -------------------------------------------------------------------------

const log1pexp = (z: number) => (z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z)));
const sigmoid = (z: number) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** Rows of X [n, d] (row-major) to use: all, or the listed ones. */
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

/** Binary L2 logistic regression on rows `rows` of X with 0/1 labels y (aligned with rows). params: [w (d), b]. */
export function fitBinary(
  D: Design,
  rows: ArrayLike<number>,
  y: ArrayLike<number>,
  C: number,
  init?: Float64Array,
  options?: LbfgsOptions,
): Float64Array {
  const { X, d } = D;
  const m = rows.length;
  const lambda = 1 / (C * Math.max(m, 1));
  const x = init ? Float64Array.from(init) : new Float64Array(d + 1);
  lbfgs(
    (p, g) => {
      g.fill(0);
      let loss = 0;
      for (let r = 0; r < m; r++) {
        const o = rows[r]! * d;
        let z = p[d]!;
        for (let k = 0; k < d; k++) z += p[k]! * X[o + k]!;
        const t = y[r]!;
        loss += log1pexp(z) - t * z;
        const e = (sigmoid(z) - t) / m;
        for (let k = 0; k < d; k++) g[k]! += e * X[o + k]!;
        g[d]! += e;
      }
      let reg = 0;
      for (let k = 0; k < d; k++) {
        reg += p[k]! * p[k]!;
        g[k]! += lambda * p[k]!;
      }
      return loss / m + 0.5 * lambda * reg;
    },
    x,
    options,
  );
  return x;
}

/** Multinomial L2 logistic regression: classes t[r] in 0..K−1. params: [W (K·d), b (K)]. */
export function fitSoftmax(
  D: Design,
  rows: ArrayLike<number>,
  t: ArrayLike<number>,
  K: number,
  C: number,
  init?: Float64Array,
  options?: LbfgsOptions,
): Float64Array {
  const { X, d } = D;
  const m = rows.length;
  const lambda = 1 / (C * Math.max(m, 1));
  const x = init ? Float64Array.from(init) : new Float64Array(K * d + K);
  const z = new Float64Array(K);
  lbfgs(
    (p, g) => {
      g.fill(0);
      let loss = 0;
      for (let r = 0; r < m; r++) {
        const o = rows[r]! * d;
        let mx = -Infinity;
        for (let c = 0; c < K; c++) {
          let s = p[K * d + c]!;
          for (let k = 0; k < d; k++) s += p[c * d + k]! * X[o + k]!;
          z[c] = s;
          mx = Math.max(mx, s);
        }
        let sum = 0;
        for (let c = 0; c < K; c++) sum += Math.exp(z[c]! - mx);
        const lse = mx + Math.log(sum);
        loss += lse - z[t[r]!]!;
        for (let c = 0; c < K; c++) {
          const e = (Math.exp(z[c]! - lse) - (c === t[r] ? 1 : 0)) / m;
          for (let k = 0; k < d; k++) g[c * d + k]! += e * X[o + k]!;
          g[K * d + c]! += e;
        }
      }
      let reg = 0;
      for (let k = 0; k < K * d; k++) {
        reg += p[k]! * p[k]!;
        g[k]! += lambda * p[k]!;
      }
      return loss / m + 0.5 * lambda * reg;
    },
    x,
    options,
  );
  return x;
}

/** Scores [n, K]: probabilities of the model on X [n, d]. */
export function predictProba(model: LinearModel, X: Float64Array, n: number): Float64Array {
  const { K, d, W, b } = model;
  const out = new Float64Array(n * K);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < K; c++) {
      let s = b[c]!;
      for (let k = 0; k < d; k++) s += W[c * d + k]! * X[i * d + k]!;
      out[i * K + c] = s;
    }
    if (model.kind === "sigmoid") for (let c = 0; c < K; c++) out[i * K + c] = sigmoid(out[i * K + c]!);
    else {
      let mx = -Infinity;
      for (let c = 0; c < K; c++) mx = Math.max(mx, out[i * K + c]!);
      let z = 0;
      for (let c = 0; c < K; c++) z += out[i * K + c] = Math.exp(out[i * K + c]! - mx);
      for (let c = 0; c < K; c++) out[i * K + c]! /= z;
    }
  }
  return out;
}

/** Targets of a probe: multi-label rows (NaN unknown) or class indices. */
export type ProbeTargets =
  { kind: "multilabel"; y: Float32Array; K: number } | { kind: "single"; t: Int32Array; K: number };

export interface FitOptions extends LbfgsOptions {
  /** Single-label: multinomial (default) or one-vs-rest. */
  multiclass?: "multinomial" | "ovr";
  init?: LinearModel;
}

/** Fits the probe's linear model for one C. Classes without both labels in training get a constant
 * model (noted by the caller). */
export function fitLinear(D: Design, targets: ProbeTargets, C: number, options: FitOptions = {}): LinearModel {
  const { d, n } = D;
  const K = targets.K;
  const all = Int32Array.from({ length: n }, (_, i) => i);
  if (targets.kind === "single" && (options.multiclass ?? "multinomial") === "multinomial") {
    const init = options.init && options.init.kind === "softmax" ? concat(options.init.W, options.init.b) : undefined;
    const p = fitSoftmax(D, all, targets.t, K, C, init, options);
    return { kind: "softmax", K, d, W: p.slice(0, K * d), b: p.slice(K * d) };
  }
  const W = new Float64Array(K * d);
  const b = new Float64Array(K);
  for (let c = 0; c < K; c++) {
    const rows: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < n; i++) {
      const v = targets.kind === "multilabel" ? targets.y[i * K + c]! : targets.t[i] === c ? 1 : 0;
      if (Number.isNaN(v)) continue;
      rows.push(i);
      y.push(v);
    }
    const pos = y.filter((v) => v === 1).length;
    if (pos === 0 || pos === y.length) {
      // one class only: the constant model of its (smoothed) prior
      const prior = (pos + 0.5) / (y.length + 1);
      b[c] = Math.log(prior / (1 - prior));
      continue;
    }
    const init =
      options.init && options.init.kind === "sigmoid"
        ? concat(options.init.W.subarray(c * d, (c + 1) * d), options.init.b.subarray(c, c + 1))
        : undefined;
    const p = fitBinary(D, rows, y, C, init, options);
    W.set(p.subarray(0, d), c * d);
    b[c] = p[d]!;
  }
  return { kind: "sigmoid", K, d, W, b };
}

function concat(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
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

/** Mean one-vs-rest AUC of probabilities (NaN classes left out). */
export function meanAuc(P: Float64Array, n: number, targets: ProbeTargets): number {
  const K = targets.K;
  const aucs: number[] = [];
  for (let c = 0; c < K; c++) {
    const s: number[] = [];
    const l: number[] = [];
    for (let i = 0; i < n; i++) {
      const v = targets.kind === "multilabel" ? targets.y[i * K + c]! : targets.t[i] === c ? 1 : 0;
      if (Number.isNaN(v)) continue;
      s.push(P[i * K + c]!);
      l.push(v);
    }
    aucs.push(rocAuc(s, l));
  }
  return finiteMean(aucs);
}

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

export interface SelectionRowJs {
  C: number;
  valLogLoss: number;
  valAuc: number;
}

export interface TrainedProbeJs {
  model: LinearModel;
  standardizer: Standardizer;
  C: number;
  selection: SelectionRowJs[];
  /** Classes that had only one label value in training (a constant model). */
  constantClasses: number[];
}

/**
 * Chooses C on the validation split (lowest log-loss; ties within 1e-9 keep the smaller C) and
 * fits the final model on training (+ validation with `refit: "train+val"`, the default) data.
 * Features are raw [n, d] rows; they are standardised with the training split's statistics.
 */
export function trainProbeJs(
  train: { X: ArrayLike<number>; n: number; targets: ProbeTargets },
  val: { X: ArrayLike<number>; n: number; targets: ProbeTargets },
  d: number,
  options: FitOptions & { cGrid?: readonly number[]; refit?: "train" | "train+val" } = {},
): TrainedProbeJs {
  const grid = [...(options.cGrid ?? DEFAULT_C_GRID)].sort((a, b) => a - b);
  if (grid.length === 0 || grid.some((c) => !(c > 0 && Number.isFinite(c))))
    throw new RangeError(`C grid: expected positive numbers, got ${grid.join(", ")}`);
  const st = fitStandardizer(train.X, train.n, d);
  const Dtr = { X: standardize(train.X, train.n, d, st), n: train.n, d };
  const Xva = standardize(val.X, val.n, d, st);
  const selection: SelectionRowJs[] = [];
  let prev: LinearModel | undefined;
  let best = { C: grid[0]!, loss: Infinity };
  for (const C of grid) {
    const m = fitLinear(Dtr, train.targets, C, { ...options, ...(prev ? { init: prev } : {}) });
    prev = m;
    const P = predictProba(m, Xva, val.n);
    const row = { C, valLogLoss: logLoss(P, val.n, val.targets), valAuc: meanAuc(P, val.n, val.targets) };
    selection.push(row);
    if (row.valLogLoss < best.loss - 1e-9) best = { C, loss: row.valLogLoss };
  }
  let final: LinearModel;
  let Dfin = Dtr;
  let tfin = train.targets;
  if ((options.refit ?? "train+val") === "train+val") {
    const X = new Float64Array((train.n + val.n) * d);
    X.set(Dtr.X);
    X.set(Xva, train.n * d);
    Dfin = { X, n: train.n + val.n, d };
    tfin =
      train.targets.kind === "multilabel" && val.targets.kind === "multilabel"
        ? { kind: "multilabel", K: train.targets.K, y: concatF32(train.targets.y, val.targets.y) }
        : train.targets.kind === "single" && val.targets.kind === "single"
          ? { kind: "single", K: train.targets.K, t: concatI32(train.targets.t, val.targets.t) }
          : train.targets;
  }
  final = fitLinear(Dfin, tfin, best.C, options);
  const constantClasses: number[] = [];
  for (let c = 0; c < final.K; c++)
    if (final.kind === "sigmoid" && final.W.subarray(c * d, (c + 1) * d).every((w) => w === 0)) constantClasses.push(c);
  return { model: final, standardizer: st, C: best.C, selection, constantClasses };
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
