/**
 * The few-shot protocol of the feature-level adapters (Tip-Adapter, Tip-Adapter-F, CLIP-Adapter):
 * for each seed, K images per class drawn from the training split (lib/adapt/shots.ts), the
 * adapter built on them, its hyper-parameters (β and α of Tip-Adapter) chosen on the validation
 * split by mean AUC, and the test split scored. The report holds the first seed's test metrics
 * with bootstrap CIs, every seed's mean AUC, and their mean with a t-interval over the seeds.
 *
 * Classes are scored against their prompt-ensembled text features (lib/eval/zeroshot.ts); a
 * multi-label zero-shot logit is scale · (cos_c − mean over classes), a single-label one
 * scale · cos_c, with the model's logit scale.
 */
import type { ViLReF } from "../model/vilref.js";
import type { EvalDataset, EvalSample } from "../eval/dataset.js";
import { classTargets, DatasetError, multiLabelTargets, splitOf } from "../eval/dataset.js";
import { evaluateScores } from "../eval/evaluate.js";
import type { MetricsReport } from "../eval/evaluate.js";
import { dots, encodeImageSet, logitScaleOf, normalizeRows } from "../eval/features.js";
import type { EncodeImagesOptions, TextEncodeFn } from "../eval/features.js";
import type { BootstrapOptions } from "../eval/metrics.js";
import { goldLabels } from "../eval/predictions.js";
import type { ScoreTable } from "../eval/predictions.js";
import { meanAuc } from "../eval/probe.js";
import {
  buildPrompts,
  DEFAULT_PROMPTS_URL,
  encodeClassPrompts,
  loadPromptBank,
  multiLabelScores,
} from "../eval/zeroshot.js";
import type { PromptBank } from "../eval/zeroshot.js";
import { buildCache, clipAdapterLogits, tipGrid, tipLogits, trainClipAdapter, trainTipF } from "./adapters.js";
import type { Targets, TipCache, TrainSettings } from "./adapters.js";
import { aggregatePatients } from "./patient.js";
import type { PatientAggregation } from "./patient.js";
import { sampleShots } from "./shots.js";
import { seedSummary } from "./summary.js";
import type { SeedSummary } from "./summary.js";

export type FeatureAdapter = "tip" | "tip-f" | "clip-adapter";
export const FEATURE_ADAPTERS: readonly FeatureAdapter[] = ["tip", "tip-f", "clip-adapter"];

/**
 * Tip-Adapter's validation grid. Wide and log-spaced: the cache term (for multi-label sets a share
 * of neighbours in [0, 1]) and the zero-shot logits (the model's logit scale times cosine
 * differences) differ in scale by one to two orders of magnitude depending on the model, so α runs
 * to 256; α = 0 is zero-shot. On the demo's model the narrower grid of the Tip-Adapter paper
 * (β ≤ 10, α ≤ 8) was chosen at its corner on every draw (bench/RESULTS.md).
 */
export const DEFAULT_BETAS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50];
export const DEFAULT_ALPHAS = [0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256];
/** CLIP-Adapter's blend ratios tried (one adapter trained for each), the best on validation kept. */
export const DEFAULT_RATIOS = [0.1, 0.2, 0.4, 0.6];

export interface FewShotOptions extends BootstrapOptions {
  method: FeatureAdapter;
  shots: number;
  /** Draws, with seeds seed, seed+1, … (default 1). */
  draws?: number;
  splits?: { train?: string; val?: string; test?: string };
  prompts?: string | URL | PromptBank;
  images?: EncodeImagesOptions;
  betas?: number[];
  alphas?: number[];
  /** Training of Tip-Adapter-F and CLIP-Adapter. */
  epochs?: number;
  lr?: number;
  batchSize?: number;
  /** CLIP-Adapter's blend ratio (default: chosen on validation from DEFAULT_RATIOS) and bottleneck width (d / 4). */
  ratio?: number;
  hidden?: number;
  /** Also report per-patient metrics, each patient's scores the max or mean over their eyes. */
  patient?: PatientAggregation;
}

export interface SeedResult {
  seed: number;
  /** The validation-chosen β and α (Tip-Adapter). */
  beta?: number;
  alpha?: number;
  /** The blend ratio (CLIP-Adapter): the one given, or the validation-chosen one. */
  ratio?: number;
  valAuc: number;
  testAuc: number;
  /** Training losses per epoch (Tip-Adapter-F, CLIP-Adapter). */
  losses?: number[];
  perClass: Record<string, string[]>;
}

export interface FewShotResult extends MetricsReport {
  protocol: "fewshot";
  method: FeatureAdapter;
  shots: number;
  seeds: SeedResult[];
  /** Mean test AUC over the seeds with a 95% t-interval. */
  overSeeds: SeedSummary;
  /** Zero-shot test AUC with the same text features (α = 0). */
  zeroShotAuc: number;
  patient?: MetricsReport & { aggregation: PatientAggregation; patients: number };
  /** The first draw's per-image test scores (what --predictions writes; see `logitTable`). */
  predictions: ScoreTable;
}

interface Encoded {
  F: Float32Array;
  n: number;
  samples: EvalSample[];
  targets: Targets;
}

/** The dataset restricted to the classes that have prompts, and their text features [C, d]. */
async function classText(ds: EvalDataset, encodeText: TextEncodeFn, d: number, prompts: FewShotOptions["prompts"]) {
  const bank =
    prompts && typeof prompts === "object" && "classes" in prompts
      ? prompts
      : loadPromptBank((prompts as string | URL | undefined) ?? DEFAULT_PROMPTS_URL);
  const keyOf = (i: number) => ds.promptKeys[i] ?? ds.classes[i]!;
  const chosen = ds.classes.map((_, i) => i).filter((i) => bank.classes.has(keyOf(i)) && !bank.skip.has(keyOf(i)));
  const missing = ds.classes.filter((_, i) => !chosen.includes(i));
  if (chosen.length === 0 || (ds.task !== "multilabel" && missing.length > 0))
    throw new DatasetError(`${ds.name}: no prompts in ${bank.source} for ${missing.join(", ")}`);
  const built = buildPrompts(bank, chosen.map(keyOf));
  const feats = await encodeClassPrompts(encodeText, built, d);
  const restricted: EvalDataset = {
    ...ds,
    classes: chosen.map((i) => ds.classes[i]!),
    promptKeys: chosen.map((i) => ds.promptKeys[i]!),
    samples:
      ds.task === "multilabel"
        ? ds.samples.map((s) => ({ ...s, ...(s.y ? { y: Float32Array.from(chosen, (i) => s.y![i]!) } : {}) }))
        : ds.samples,
  };
  const notes = missing.length ? [`no prompts for ${missing.join(", ")} in ${bank.source}: not scored`] : [];
  return { ds: restricted, feats, notes };
}

/** The samples' targets over the dataset's classes (multi-label rows or class indices). */
export function targetsOf(ds: EvalDataset, samples: readonly EvalSample[]): Targets {
  return ds.task === "multilabel"
    ? { kind: "multilabel", y: multiLabelTargets(samples, ds.classes.length) }
    : { kind: "single", t: classTargets(samples, ds.classes.length) };
}

async function encode(model: ViLReF, ds: EvalDataset, samples: readonly EvalSample[], o: FewShotOptions) {
  const f = await encodeImageSet(model, samples, { ...o.images, features: "projected" });
  if (f.n === 0) throw new DatasetError(`${ds.name}: no image could be decoded`);
  const used = f.used.map((i) => samples[i]!);
  return { F: normalizeRows(f.data, f.n, f.d), n: f.n, samples: used, targets: targetsOf(ds, used) };
}

/** Zero-shot logits [n, C] (see the file header). */
export function zeroShotLogits(
  F: Float32Array,
  n: number,
  text: { positive: Float32Array; negative: Float32Array; classes: string[]; d: number },
  multi: boolean,
  scale: number,
): Float32Array {
  const S = multi ? multiLabelScores(F, n, text, "relative") : dots(F, n, text.positive, text.classes.length, text.d);
  return Float32Array.from(S, (v) => scale * v);
}

const aucOf = (logits: Float32Array, e: Encoded, C: number) =>
  meanAuc(Float64Array.from(logits), e.n, { ...e.targets, K: C } as Parameters<typeof meanAuc>[2]);

/** The (β, α) of the grid with the best validation mean AUC (the first of equals). */
async function chooseTip(cache: TipCache, val: Encoded, zsVal: Float32Array, o: FewShotOptions) {
  const betas = o.betas ?? DEFAULT_BETAS;
  const alphas = o.alphas ?? DEFAULT_ALPHAS;
  const grid = await tipGrid(val.F, val.n, cache, zsVal, betas, alphas);
  let best = { beta: betas[0]!, alpha: alphas[0]!, auc: -Infinity };
  betas.forEach((beta, b) =>
    alphas.forEach((alpha, a) => {
      const auc = aucOf(grid[b]![a]!, val, cache.C);
      if (auc > best.auc) best = { beta, alpha, auc };
    }),
  );
  return best;
}

interface SeedContext {
  model: ViLReF;
  ds: EvalDataset;
  train: EvalSample[];
  val: Encoded;
  test: Encoded;
  text: Awaited<ReturnType<typeof classText>>["feats"];
  scale: number;
  o: FewShotOptions;
}

/** CLIP-Adapter on one draw: an adapter trained per blend ratio, the best on validation kept. */
async function clipAdapterSeed(
  c: SeedContext,
  seed: number,
  perClass: Record<string, string[]>,
  shots: Encoded,
  train: TrainSettings,
): Promise<{ result: SeedResult; logits: Float32Array }> {
  const { ds, o, val, test, text, scale } = c;
  const C = ds.classes.length;
  const task = ds.task === "multilabel" ? "multilabel" : "single";
  const hidden = o.hidden ?? Math.max(1, Math.floor(text.d / 4));
  let best: { ratio: number; valAuc: number; w: Awaited<ReturnType<typeof trainClipAdapter>> } | undefined;
  for (const ratio of o.ratio !== undefined ? [o.ratio] : DEFAULT_RATIOS) {
    const s = { ...train, ratio, scale, hidden };
    const w = await trainClipAdapter(shots.F, shots.n, text.d, text.positive, C, shots.targets, s);
    const valAuc = aucOf(await clipAdapterLogits(val.F, val.n, text.d, text.positive, C, task, w, s), val, C);
    if (!best || valAuc > best.valAuc) best = { ratio, valAuc, w };
  }
  const { ratio, valAuc, w } = best!;
  const out = await clipAdapterLogits(test.F, test.n, text.d, text.positive, C, task, w, { ratio, scale });
  const result = { seed, ratio, valAuc, testAuc: aucOf(out, test, C), losses: w.losses, perClass };
  return { result, logits: out };
}

/** One draw: the adapter built and chosen, and its test logits. */
async function runSeed(c: SeedContext, seed: number): Promise<{ result: SeedResult; logits: Float32Array }> {
  const { ds, o, val, test, text, scale } = c;
  const C = ds.classes.length;
  const multi = ds.task === "multilabel";
  const draw = sampleShots(ds, c.train, o.shots, seed, { exclude: test.samples });
  const shots = await encode(c.model, ds, draw.samples, o);
  const zs = (e: Encoded) => zeroShotLogits(e.F, e.n, text, multi, scale);
  const train = { epochs: o.epochs ?? 50, batchSize: o.batchSize ?? 32, lr: o.lr ?? 1e-3, seed };
  if (o.method === "clip-adapter") return clipAdapterSeed(c, seed, draw.perClass, shots, train);
  let cache = buildCache(shots.F, shots.n, text.d, shots.targets, C);
  let best = await chooseTip(cache, val, zs(val), o);
  let bias: Float32Array | undefined;
  let losses: number[] | undefined;
  if (o.method === "tip-f") {
    const f = await trainTipF(cache, shots.targets, zs(shots), best, { ...train, lr: o.lr ?? 1e-3 });
    ({ cache, bias, losses } = f);
    best = await chooseTip(cache, val, zs(val), o);
  }
  const p = { beta: best.beta, alpha: best.alpha, ...(bias && multi ? { bias } : {}) };
  const out = await tipLogits(test.F, test.n, cache, zs(test), p);
  const result: SeedResult = {
    seed,
    beta: best.beta,
    alpha: best.alpha,
    valAuc: best.auc,
    testAuc: aucOf(out, test, C),
    perClass: draw.perClass,
  };
  if (losses) result.losses = losses;
  return { result, logits: out };
}

function softmaxRows(logits: Float32Array, n: number, C: number): Float64Array {
  const out = new Float64Array(n * C);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[i * C + c]!);
    let z = 0;
    for (let c = 0; c < C; c++) z += out[i * C + c] = Math.exp(logits[i * C + c]! - m);
    for (let c = 0; c < C; c++) out[i * C + c]! /= z;
  }
  return out;
}

/**
 * Per-image scores of adapter logits [n, C] as a score table (what --predictions writes), scored as
 * the metrics score them: multi-label, the sigmoid of each logit (a class is predicted at 0.5, i.e.
 * logit 0); single-label, the softmax probabilities.
 */
export function logitTable(
  ds: EvalDataset,
  e: { samples: readonly EvalSample[]; targets: Targets },
  logits: Float32Array,
): ScoreTable {
  const { samples, targets: t } = e;
  const n = samples.length;
  const C = ds.classes.length;
  if (logits.length !== n * C) throw new RangeError(`logits: expected ${n}×${C} values, got ${logits.length}`);
  const rows = { ids: samples.map((s) => s.id), images: samples.map((s) => s.image), classes: ds.classes };
  if (t.kind === "multilabel") {
    const scores = Float64Array.from(logits, (z) => 1 / (1 + Math.exp(-z)));
    return { ...rows, scores, multiLabel: true, threshold: 0.5, gold: goldLabels(ds.classes, n, { y: t.y }) };
  }
  const scores = softmaxRows(logits, n, C);
  return { ...rows, scores, multiLabel: false, threshold: 0.5, gold: goldLabels(ds.classes, n, { targets: t.t }) };
}

/** Test metrics of logits: multi-label on the logits (threshold 0), single-label on softmax probabilities. */
export function reportLogits(
  ds: EvalDataset,
  logits: Float32Array,
  e: { n: number; targets: Targets },
  boot: BootstrapOptions,
): MetricsReport {
  const C = ds.classes.length;
  return e.targets.kind === "multilabel"
    ? evaluateScores(
        {
          task: "multilabel",
          classes: ds.classes,
          scores: Float64Array.from(logits),
          n: e.n,
          y: e.targets.y,
          threshold: 0,
        },
        boot,
      )
    : evaluateScores(
        { task: ds.task, classes: ds.classes, scores: softmaxRows(logits, e.n, C), n: e.n, targets: e.targets.t },
        boot,
      );
}

/** The few-shot protocol of a feature-level adapter (see the file header). */
export async function fewShotAdapter(
  model: ViLReF,
  encodeText: TextEncodeFn,
  dataset: EvalDataset,
  o: FewShotOptions,
): Promise<FewShotResult> {
  const draws = o.draws ?? 1;
  if (!Number.isInteger(draws) || draws < 1) throw new RangeError(`draws: expected an integer ≥ 1, got ${draws}`);
  const { ds, feats: text, notes } = await classText(dataset, encodeText, model.config.embed_dim, o.prompts);
  const split = { train: o.splits?.train ?? "train", val: o.splits?.val ?? "val", test: o.splits?.test ?? "test" };
  const test = await encode(model, ds, splitOf(ds, split.test), o);
  const val = await encode(model, ds, splitOf(ds, split.val), o);
  const ctx: SeedContext = {
    model,
    ds,
    train: splitOf(ds, split.train),
    val,
    test,
    text,
    scale: await logitScaleOf(model),
    o,
  };
  const seeds: SeedResult[] = [];
  let first: Float32Array | undefined;
  for (let k = 0; k < draws; k++) {
    const r = await runSeed(ctx, (o.seed ?? 0) + k);
    seeds.push(r.result);
    first ??= r.logits;
  }
  const boot: BootstrapOptions = { resamples: o.resamples ?? 1000, seed: o.seed ?? 0, level: o.level ?? 0.95 };
  const report = reportLogits(ds, first!, test, boot);
  const zeroShotAuc = aucOf(
    zeroShotLogits(test.F, test.n, text, ds.task === "multilabel", ctx.scale),
    test,
    ds.classes.length,
  );
  const result: FewShotResult = {
    ...report,
    protocol: "fewshot",
    method: o.method,
    shots: o.shots,
    seeds,
    overSeeds: seedSummary(seeds.map((s) => s.testAuc)),
    zeroShotAuc,
    notes: [...ds.notes, ...notes, ...report.notes],
    predictions: logitTable(ds, test, first!),
  };
  if (o.patient) {
    const agg = aggregatePatients(ds, test.samples, first!, o.patient);
    result.patient = { ...reportLogits(agg.ds, agg.scores, agg, boot), aggregation: o.patient, patients: agg.n };
  }
  return result;
}
