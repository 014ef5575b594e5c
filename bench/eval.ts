/**
 * Evaluation arithmetic at real dataset sizes (issue 16): today's JavaScript (bench/baselines/eval-js.ts)
 * against LibTorch and the O(n) bootstrap, on the same data in the same run, alternating, with the
 * ratios and whether the answers agree.
 *
 *   retrieval  20,000 pairs × 512 dims: ranks both ways + recall@1/5/10 with 1,000-resample CIs.
 *              Each run in a child process of its own, for its peak RSS (the JS path holds the
 *              n×n Float64 similarity and its transpose). Native in float32 (what `eval retrieval`
 *              does) and in float64 (the JS path's precision: ranks identical).
 *   bootstrap  10,000 cases × 31 multi-label classes, 1,000 resamples (evaluateScores): every
 *              interval compared to the bit.
 *   probe      5,000 × 768 training features, 1,000 validation, 1,000 test, 31 one-vs-rest classes,
 *              the default C grid (trainProbe): the selected C, the validation losses and the test
 *              metrics compared.
 *
 * Run: npx tsx bench/eval.ts [retrieval|bootstrap|probe ...] [--rounds N] [--pairs N] [--dim N]
 *      [--native-only] [--cases N] [--classes N] [--resamples N] [--train N] [--features N] [--probe-rounds N]
 * (--native-only: retrieval without the JS path, e.g. --pairs 100000, whose n×n Float64 arrays would
 * need 160 GB.)
 */
import { spawn } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { evaluateScoresJs, retrievalJs, trainProbeJs } from "./baselines/eval-js.js";
import { mulberry32 } from "../lib/data/rng.js";
import { evaluateScores } from "../lib/eval/evaluate.js";
import type { MetricsReport, ScoreSet } from "../lib/eval/evaluate.js";
import { normalizeRows } from "../lib/eval/features.js";
import { predictProba, standardize, trainProbe } from "../lib/eval/probe.js";
import type { ProbeTargets } from "../lib/eval/probe.js";
import { featureMatrix } from "../lib/eval/rank.js";
import { pairedRanks, retrievalFromRanks } from "../lib/eval/retrieval.js";
import { setThreads } from "../lib/native.js";
import { predictProba as predictProbaJs, standardize as standardizeJs } from "./baselines/eval-js.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const rounds = opt("--rounds", 2);
const threads = availableParallelism();
const which = ["retrieval", "bootstrap", "probe"].filter((w) => args.includes(w));
const ks = [1, 5, 10];

// ---- retrieval -----------------------------------------------------------------------------------

/** Paired unit features: texts are their images plus noise (R@1 around one half at 20,000 pairs). */
function pairs(n: number, d: number): { I: Float32Array; T: Float32Array } {
  const r = mulberry32(16);
  const I = normalizeRows(
    Float32Array.from({ length: n * d }, () => r.normal()),
    n,
    d,
  );
  const T = normalizeRows(
    Float32Array.from(I, (v) => v + 0.2 * r.normal()),
    n,
    d,
  );
  return { I, T };
}

interface RetrievalOut {
  seconds: number;
  rankSeconds: number;
  peakMiB: number;
  recall: number[];
  intervals: number[];
  i2t: number[];
  t2i: number[];
}

async function retrievalChild(mode: string): Promise<RetrievalOut> {
  const n = opt("--pairs", 20000);
  const d = opt("--dim", 512);
  const { I, T } = pairs(n, d);
  const boot = { resamples: 1000, seed: 1 };
  const flat = (r: { imageToText: { recall: object }; textToImage: { recall: object } }) =>
    [r.imageToText, r.textToImage].flatMap((x) =>
      Object.values(x.recall as Record<string, { value: number; lo: number; hi: number }>).map((e) => [
        e.value,
        e.lo,
        e.hi,
      ]),
    );
  if (mode === "js") {
    const t0 = performance.now();
    const r = retrievalJs(I, T, n, d, ks, boot);
    const seconds = (performance.now() - t0) / 1000;
    const e = flat(r);
    return {
      seconds,
      rankSeconds: r.rankSeconds,
      peakMiB: process.resourceUsage().maxRSS / 1024,
      recall: e.map((x) => x[0]!),
      intervals: e.flat(),
      i2t: [...r.ranks.i2t],
      t2i: [...r.ranks.t2i],
    };
  }
  setThreads(threads);
  const f64 = mode === "native64";
  const mat = (x: Float32Array) => (f64 ? featureMatrix(Float64Array.from(x), n, d) : featureMatrix(x, n, d));
  const A = mat(I);
  const B = mat(T);
  await pairedRanks(featureMatrix(I.subarray(0, 2 * d), 2, d), featureMatrix(T.subarray(0, 2 * d), 2, d)); // load
  const t0 = performance.now();
  const ranks = await pairedRanks(A, B);
  const rankSeconds = (performance.now() - t0) / 1000;
  const r = retrievalFromRanks(ranks, ks, boot);
  const seconds = (performance.now() - t0) / 1000;
  const e = flat(r);
  return {
    seconds,
    rankSeconds,
    peakMiB: process.resourceUsage().maxRSS / 1024,
    recall: e.map((x) => x[0]!),
    intervals: e.flat(),
    i2t: [...ranks.imageToText],
    t2i: [...ranks.textToImage],
  };
}

function child(mode: string): Promise<RetrievalOut> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ["--import=tsx", fileURLToPath(import.meta.url), ...args], {
      env: { ...process.env, VILREF_BENCH_RETRIEVAL: mode },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let text = "";
    c.stdout.on("data", (b: Buffer) => (text += b.toString()));
    c.on("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(text.trim().split("\n").at(-1)!) as RetrievalOut)
        : reject(new Error(`${mode}: exit ${code}`)),
    );
  });
}

/** CPU seconds of this process (all its threads) since `from`. */
const cpuSince = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const differing = (a: number[], b: number[]) => a.filter((v, i) => v !== b[i]).length;

async function benchRetrieval(): Promise<void> {
  const n = opt("--pairs", 20000);
  console.log(`\n## retrieval: ${n} pairs × ${opt("--dim", 512)} dims, recall@1/5/10 both ways, 1,000-resample CIs`);
  const modes = args.includes("--native-only") ? ["native"] : ["js", "native", "native64"];
  const runs: Record<string, RetrievalOut[]> = { js: [], native: [], native64: [] };
  for (let round = 0; round < rounds; round++)
    for (const mode of modes) {
      const o = await child(mode);
      runs[mode]!.push(o);
      console.log(
        `  round ${round + 1} ${mode.padEnd(8)} ${o.seconds.toFixed(2)} s (ranks ` +
          `${o.rankSeconds.toFixed(2)} s), peak RSS ${o.peakMiB.toFixed(0)} MiB`,
      );
    }
  const js = runs.js!;
  console.log(
    "| path | median s (ranks + CIs) | median s (ranks) | × faster | peak RSS MiB | ranks ≠ JS (of 2n) " +
      "| recall = JS | CIs = JS |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---|---|");
  for (const mode of ["js", "native", "native64"]) {
    const o = runs[mode]!;
    const ref = js[0]!;
    const diff = differing(o[0]!.i2t, ref.i2t) + differing(o[0]!.t2i, ref.t2i);
    console.log(
      `| ${mode} | ${median(o.map((x) => x.seconds)).toFixed(2)} | ` +
        `${median(o.map((x) => x.rankSeconds)).toFixed(2)} | ` +
        `${(median(js.map((x) => x.seconds)) / median(o.map((x) => x.seconds))).toFixed(1)} | ` +
        `${Math.max(...o.map((x) => x.peakMiB)).toFixed(0)} | ${diff} | ` +
        `${differing(o[0]!.recall, ref.recall) === 0 ? "yes" : "no"} | ` +
        `${differing(o[0]!.intervals, ref.intervals) === 0 ? "yes" : "no"} |`,
    );
  }
}

// ---- bootstrap -----------------------------------------------------------------------------------

function scoreSet(n: number, C: number): ScoreSet {
  const r = mulberry32(31);
  const y = new Float32Array(n * C);
  const scores = new Float64Array(n * C);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < C; c++) {
      const prevalence = 0.02 + (0.3 * c) / C;
      const v = r.chance(0.05) ? Number.NaN : r.chance(prevalence) ? 1 : 0;
      y[i * C + c] = v;
      // scores rounded to 3 decimals: ties, as probabilities written to a file have
      scores[i * C + c] = Math.round(1000 / (1 + Math.exp(-(r.normal() + (v === 1 ? 1.2 : 0))))) / 1000;
    }
  return { task: "multilabel", classes: Array.from({ length: C }, (_, c) => `c${c}`), scores, n, y, threshold: 0.5 };
}

function estimates(r: MetricsReport): number[] {
  const out: number[] = [];
  for (const e of Object.values(r.metrics)) out.push(e.value, e.lo, e.hi, e.valid);
  for (const p of Object.values(r.perClass))
    for (const e of [p.auc, p.ap, p.f1, p.accuracy]) out.push(e.value, e.lo, e.hi, e.valid);
  return out;
}

function benchBootstrap(): void {
  const n = opt("--cases", 10000);
  const C = opt("--classes", 31);
  const B = opt("--resamples", 1000);
  console.log(`\n## bootstrap: evaluateScores, ${n} cases × ${C} multi-label classes, ${B} resamples`);
  const set = scoreSet(n, C);
  const times: Record<string, number[]> = { js: [], new: [] };
  const cpu: Record<string, number[]> = { js: [], new: [] };
  let same = true;
  let ref: number[] | undefined;
  for (let round = 0; round < rounds; round++)
    for (const [name, f] of [
      ["js", evaluateScoresJs],
      ["new", evaluateScores],
    ] as const) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const r = f(set, { resamples: B, seed: round });
      const s = (performance.now() - t0) / 1000;
      times[name]!.push(s);
      cpu[name]!.push(cpuSince(c0));
      const e = estimates(r);
      if (name === "js") ref = e;
      else same &&= e.length === ref!.length && e.every((v, i) => Object.is(v, ref![i]));
      console.log(`  round ${round + 1} ${name.padEnd(3)} ${s.toFixed(2)} s (CPU ${cpu[name]!.at(-1)!.toFixed(2)} s)`);
    }
  const js = median(times.js!);
  const nw = median(times.new!);
  const [cj, cn] = [median(cpu.js!), median(cpu.new!)];
  console.log(
    "| path | median s | × faster | median CPU s | × less CPU | intervals identical (Object.is, every estimate) |",
  );
  console.log("|---|---:|---:|---:|---:|---|");
  console.log(`| JS (a sort per class per resample) | ${js.toFixed(2)} | 1.0 | ${cj.toFixed(2)} | 1.0 | |`);
  console.log(
    `| O(n) from multiplicities | ${nw.toFixed(2)} | ${(js / nw).toFixed(1)} | ${cn.toFixed(2)} | ` +
      `${(cj / cn).toFixed(1)} | ${same ? "yes" : "NO"} |`,
  );
}

// ---- probe ---------------------------------------------------------------------------------------

/** Features from 40 latent factors (plus noise) and 31 labels, each from a few factors. */
function probeData(n: number, d: number, K: number, seed: number, A: Float64Array, V: Float64Array) {
  const r = mulberry32(seed);
  const L = 40;
  const X = new Float32Array(n * d);
  const y = new Float32Array(n * K);
  const z = new Float64Array(L);
  for (let i = 0; i < n; i++) {
    for (let l = 0; l < L; l++) z[l] = r.normal();
    for (let k = 0; k < d; k++) {
      let s = 0.5 * r.normal();
      for (let l = 0; l < L; l++) s += z[l]! * A[l * d + k]!;
      X[i * d + k] = s;
    }
    for (let c = 0; c < K; c++) {
      let s = -1.5 + (c % 5) * 0.3;
      for (let l = 0; l < L; l++) s += z[l]! * V[c * L + l]!;
      y[i * K + c] = r.chance(0.03) ? Number.NaN : r.chance(1 / (1 + Math.exp(-s))) ? 1 : 0;
    }
  }
  return { X, y };
}

async function benchProbe(): Promise<void> {
  const ntr = opt("--train", 5000);
  const d = opt("--features", 768);
  const K = opt("--classes", 31);
  const nva = Math.round(ntr / 5);
  console.log(
    `\n## probe: ${ntr} × ${d} training, ${nva} validation and test, ${K} one-vs-rest classes, default C grid`,
  );
  setThreads(threads);
  const r = mulberry32(5);
  const A = Float64Array.from({ length: 40 * d }, () => r.normal() / Math.sqrt(40));
  const V = Float64Array.from({ length: K * 40 }, () => (r.chance(0.15) ? r.normal() : 0));
  const [tr, va, te] = [ntr, nva, nva].map((n, s) => probeData(n, d, K, 100 + s, A, V));
  const T = (y: Float32Array): ProbeTargets => ({ kind: "multilabel", K, y });
  const times: Record<string, number[]> = { js: [], native: [] };
  const cpu: Record<string, number[]> = { js: [], native: [] };
  const out: Record<string, { C: number; val: number[]; test: number[]; warnings: number }> = {};
  for (let round = 0; round < Math.min(rounds, opt("--probe-rounds", 1)); round++) {
    for (const name of ["js", "native"] as const) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      let C: number;
      let val: number[];
      let P: Float64Array;
      let warnings = 0;
      if (name === "js") {
        const p = trainProbeJs({ X: tr!.X, n: ntr, targets: T(tr!.y) }, { X: va!.X, n: nva, targets: T(va!.y) }, d);
        P = predictProbaJs(p.model, standardizeJs(te!.X, nva, d, p.standardizer), nva);
        C = p.C;
        val = p.selection.flatMap((s) => [s.valLogLoss, s.valAuc]);
      } else {
        const p = await trainProbe({ X: tr!.X, n: ntr, targets: T(tr!.y) }, { X: va!.X, n: nva, targets: T(va!.y) }, d);
        P = await predictProba(p.model, standardize(te!.X, nva, d, p.standardizer), nva);
        C = p.C;
        val = p.selection.flatMap((s) => [s.valLogLoss, s.valAuc]);
        warnings = p.nonConverged.length;
      }
      const s = (performance.now() - t0) / 1000;
      times[name]!.push(s);
      cpu[name]!.push(cpuSince(c0));
      const m = evaluateScores(
        {
          task: "multilabel",
          classes: Array.from({ length: K }, (_, c) => `c${c}`),
          scores: P,
          n: nva,
          y: te!.y,
          threshold: 0.5,
        },
        { resamples: 0 },
      );
      out[name] = { C, val, test: estimates(m).filter((_, i) => i % 4 === 0), warnings };
      console.log(
        `  round ${round + 1} ${name.padEnd(6)} ${s.toFixed(1)} s (CPU ${cpu[name]!.at(-1)!.toFixed(1)} s), C = ${C}`,
      );
    }
  }
  const maxDiff = (a: number[], b: number[]) =>
    Math.max(...a.map((v, i) => (Number.isNaN(v) && Number.isNaN(b[i]!) ? 0 : Math.abs(v - b[i]!))));
  const js = median(times.js!);
  const nt = median(times.native!);
  const [cj, cn] = [median(cpu.js!), median(cpu.native!)];
  console.log(
    `CPU seconds (all threads): JS ${cj.toFixed(1)}, LibTorch ${cn.toFixed(1)}: ${(cj / cn).toFixed(1)}× less CPU`,
  );
  console.log(
    "| path | median s | × faster | selected C | max |Δ| validation log-loss/AUC | max |Δ| test metrics | " +
      "non-converged fits |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  console.log(`| JS (scalar L-BFGS per class) | ${js.toFixed(1)} | 1.0 | ${out.js!.C} | | | |`);
  console.log(
    `| LibTorch (classes side by side) | ${nt.toFixed(1)} | ${(js / nt).toFixed(1)} | ${out.native!.C} | ` +
      `${maxDiff(out.native!.val, out.js!.val).toExponential(1)} | ` +
      `${maxDiff(out.native!.test, out.js!.test).toExponential(1)} | ${out.native!.warnings} |`,
  );
}

// ---- main ----------------------------------------------------------------------------------------

if (process.env.VILREF_BENCH_RETRIEVAL) {
  process.stdout.write(JSON.stringify(await retrievalChild(process.env.VILREF_BENCH_RETRIEVAL)) + "\n");
} else {
  console.log(`${threads} cores (${cpus()[0]?.model ?? "?"}), Node ${process.version}, ${rounds} alternating rounds`);
  const all = which.length === 0;
  if (all || which.includes("retrieval")) await benchRetrieval();
  if (all || which.includes("bootstrap")) benchBootstrap();
  if (all || which.includes("probe")) await benchProbe();
}
