/**
 * Zero-shot classification — the one implementation (pre-training's held-out evaluation uses it
 * too). Prompts are data (lib/eval/prompts/zh-fundus.json): Chinese templates filled with each
 * class's names, plus expert descriptions per class. Each class's prompts are encoded, normalised
 * and averaged into one feature (prompt ensembling), renormalised. Single-label tasks score a class
 * by the cosine to its positive feature (softmax with the model's logit scale gives probabilities);
 * multi-label tasks by the cosine to the positive feature minus the cosine to the negative one
 * (> 0: the image is closer to "shows X" than to "no X").
 */
import { readFileSync } from "node:fs";
import { LABEL_IDS, isLabelId, loadRules } from "../labels/index.js";
import type { Rules } from "../labels/index.js";
import type { ViLReF } from "../model/vilref.js";
import type { EvalDataset, EvalSample } from "./dataset.js";
import { classTargets, DatasetError, multiLabelTargets } from "./dataset.js";
import { evaluateScores } from "./evaluate.js";
import type { MetricsReport } from "./evaluate.js";
import { dots, encodeImageSet, logitScaleOf, normalizeRows } from "./features.js";
import type { EncodeImagesOptions, ImageFeatures, TextEncodeFn } from "./features.js";
import type { BootstrapOptions } from "./metrics.js";
import { goldLabels } from "./predictions.js";
import type { ScoreTable } from "./predictions.js";
import { parseJsonText } from "../io/json.js";
import { patientMetrics } from "../adapt/patient.js";
import type { PatientAggregation, PatientReport } from "../adapt/patient.js";

export const DEFAULT_PROMPTS_URL = new URL("./prompts/zh-fundus.json", import.meta.url);

export interface ClassEntry {
  names: string[];
  descriptions: string[];
  /** Replace the filled positive / negative templates. */
  positive?: string[];
  negative?: string[];
}

export interface PromptBank {
  source: string;
  templates: { positive: string[]; negative: string[] };
  classes: Map<string, ClassEntry>;
  skip: Set<string>;
}

export interface ClassPrompts {
  positive: string[];
  negative: string[];
}

function strings(v: unknown, where: string, nonEmpty = false): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x.trim() === ""))
    throw new TypeError(`${where}: expected a list of non-empty strings`);
  if (nonEmpty && v.length === 0) throw new TypeError(`${where}: expected at least one string`);
  return v as string[];
}

/**
 * Reads a prompts file. Version 2 (lib/eval/prompts/zh-fundus.json): `templates`, `classes`
 * {id: {names, descriptions, positive?, negative?}}, `skip`. The version-1 file pre-training used
 * (`positive`/`negative` templates with `{zh}`, `names`, `overrides`, `skip`) is read too, with the
 * taxonomy's Chinese names from the rules. Keys of version 1 must be taxonomy ids; version 2 may
 * add a dataset's own class ids.
 */
export function loadPromptBank(file: string | URL = DEFAULT_PROMPTS_URL, rules?: Rules): PromptBank {
  const where = file instanceof URL ? file.pathname : file;
  let raw: unknown;
  try {
    raw = parseJsonText(readFileSync(file, "utf8"));
  } catch (e) {
    throw new TypeError(`${where}: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new TypeError(`${where}: expected a JSON object`);
  const p = raw as Record<string, unknown>;
  const skip = new Set(p.skip === undefined ? [] : strings(p.skip, `${where}: skip`));
  const classes = new Map<string, ClassEntry>();
  if (p.templates !== undefined || p.classes !== undefined) {
    const t = p.templates as Record<string, unknown> | undefined;
    if (!t || typeof t !== "object") throw new TypeError(`${where}: templates: expected {positive, negative}`);
    const templates = {
      positive: strings(t.positive, `${where}: templates.positive`, true),
      negative: strings(t.negative, `${where}: templates.negative`, true),
    };
    if (!p.classes || typeof p.classes !== "object" || Array.isArray(p.classes))
      throw new TypeError(`${where}: classes: expected an object keyed by class id`);
    for (const [id, v] of Object.entries(p.classes as Record<string, unknown>)) {
      const w = `${where}: classes.${id}`;
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new TypeError(`${w}: expected {names, descriptions}`);
      const e = v as Record<string, unknown>;
      for (const k of Object.keys(e))
        if (!["names", "descriptions", "positive", "negative", "$comment"].includes(k))
          throw new TypeError(`${w}.${k}: unknown key (names, descriptions, positive, negative)`);
      const entry: ClassEntry = {
        names: strings(e.names, `${w}.names`, true),
        descriptions: e.descriptions === undefined ? [] : strings(e.descriptions, `${w}.descriptions`),
      };
      if (e.positive !== undefined) entry.positive = strings(e.positive, `${w}.positive`, true);
      if (e.negative !== undefined) entry.negative = strings(e.negative, `${w}.negative`, true);
      classes.set(id, entry);
    }
    return { source: where, templates, classes, skip };
  }
  // version 1
  const positive = strings(p.positive, `${where}: positive`, true).map((s) => s.replaceAll("{zh}", "{name}"));
  const negative = strings(p.negative, `${where}: negative`, true).map((s) => s.replaceAll("{zh}", "{name}"));
  const names = (p.names ?? {}) as Record<string, string>;
  const overrides = (p.overrides ?? {}) as Record<string, { positive?: string[]; negative?: string[] }>;
  for (const key of ["names", "overrides"] as const)
    for (const id of Object.keys((p[key] ?? {}) as object))
      if (!isLabelId(id)) throw new TypeError(`${where}: ${key}.${id}: not a label id`);
  const zh = new Map((rules ?? loadRules()).labels.map((l) => [l.id, (l as unknown as { zh?: string }).zh ?? l.id]));
  for (const id of LABEL_IDS) {
    const entry: ClassEntry = { names: [names[id] ?? zh.get(id) ?? id], descriptions: [] };
    const o = overrides[id];
    if (o?.positive) entry.positive = strings(o.positive, `${where}: overrides.${id}.positive`, true);
    if (o?.negative) entry.negative = strings(o.negative, `${where}: overrides.${id}.negative`, true);
    classes.set(id, entry);
  }
  return { source: where, templates: { positive, negative }, classes, skip };
}

/** The prompts of one class; a class the bank does not know is an error naming it and the file. */
export function classPrompts(bank: PromptBank, key: string): ClassPrompts {
  const e = bank.classes.get(key);
  if (!e)
    throw new DatasetError(
      `unknown class name ${JSON.stringify(key)}: no prompts for it in ${bank.source} (known: ` +
        `${[...bank.classes.keys()].join(", ")}); add it under "classes" in a copy of the file and pass it with ` +
        "--prompts",
    );
  const fill = (ts: string[]) => e.names.flatMap((name) => ts.map((t) => t.replaceAll("{name}", name)));
  const uniq = (xs: string[]) => [...new Set(xs)];
  return {
    positive: uniq([...(e.positive ?? fill(bank.templates.positive)), ...e.descriptions]),
    negative: uniq(e.negative ?? fill(bank.templates.negative)),
  };
}

/** Prompts of every class the bank has and does not skip (taxonomy order first), as pre-training evaluates them. */
export function buildPrompts(bank: PromptBank, keys: readonly string[] = [...LABEL_IDS]): Map<string, ClassPrompts> {
  const out = new Map<string, ClassPrompts>();
  for (const k of keys) if (!bank.skip.has(k) && bank.classes.has(k)) out.set(k, classPrompts(bank, k));
  return out;
}

export interface ClassFeatures {
  classes: string[];
  d: number;
  /** [C, d], each row the renormalised mean of the class's normalised prompt features. */
  positive: Float32Array;
  negative: Float32Array;
}

/** Prompt ensembling: every prompt encoded once; per class and side, the mean of normalised features, renormalised. */
export async function encodeClassPrompts(
  encode: TextEncodeFn,
  prompts: Map<string, ClassPrompts>,
  d: number,
): Promise<ClassFeatures> {
  const all: string[] = [];
  for (const p of prompts.values()) all.push(...p.positive, ...p.negative);
  const T = await encode(all);
  const classes = [...prompts.keys()];
  const C = classes.length;
  const positive = new Float32Array(C * d);
  const negative = new Float32Array(C * d);
  let row = 0;
  classes.forEach((c, ci) => {
    const p = prompts.get(c)!;
    for (const [side, count] of [
      [positive, p.positive.length],
      [negative, p.negative.length],
    ] as const) {
      for (let r = 0; r < count; r++, row++) for (let k = 0; k < d; k++) side[ci * d + k]! += T[row * d + k]! / count;
    }
  });
  return { classes, d, positive: normalizeRows(positive, C, d), negative: normalizeRows(negative, C, d) };
}

/**
 * How a multi-label zero-shot score is made from the class prompt features:
 * - "relative" (default): cos(image, positive_c) − the mean over the scored classes of
 *   cos(image, positive_c'). Centering removes what every prompt shares (its style, the image's
 *   general affinity to short prompts), leaving what tells the classes apart; it is the linear
 *   analogue of CLIP's softmax over classes and needs no understanding of negation.
 * - "contrast": cos(image, positive_c) − cos(image, negative_c), i.e. the logit of a softmax over
 *   a "present" and an "absent" prompt (CheXzero's scoring). It relies on the text tower telling
 *   "可见X" from "未见X"; a weakly trained text tower can get the sign of a whole class wrong.
 */
export type MultiLabelScoring = "relative" | "contrast";
export const MULTI_LABEL_SCORINGS: readonly MultiLabelScoring[] = ["relative", "contrast"];

/** Multi-label scores [n, C] (see MultiLabelScoring). `images`: normalised [n, d]. */
export function multiLabelScores(
  images: Float32Array,
  n: number,
  f: ClassFeatures,
  scoring: MultiLabelScoring = "relative",
): Float64Array {
  const C = f.classes.length;
  const P = dots(images, n, f.positive, C, f.d);
  if (scoring === "contrast") {
    const N = dots(images, n, f.negative, C, f.d);
    for (let i = 0; i < P.length; i++) P[i]! -= N[i]!;
    return P;
  }
  if (scoring !== "relative")
    throw new RangeError(`scoring: expected ${MULTI_LABEL_SCORINGS.join(" or ")}, got ${String(scoring)}`);
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += P[i * C + c]! / C;
    for (let c = 0; c < C; c++) P[i * C + c]! -= m;
  }
  return P;
}

/** Single-label probabilities [n, C]: softmax over classes of scale · cos(image, positive). */
export function singleLabelProbabilities(
  images: Float32Array,
  n: number,
  f: ClassFeatures,
  logitScale = 100,
): Float64Array {
  const C = f.classes.length;
  const S = dots(images, n, f.positive, C, f.d);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logitScale * S[i * C + c]!);
    let z = 0;
    for (let c = 0; c < C; c++) z += S[i * C + c] = Math.exp(logitScale * S[i * C + c]! - m);
    for (let c = 0; c < C; c++) S[i * C + c]! /= z;
  }
  return S;
}

export interface ZeroShotOptions extends BootstrapOptions {
  /** Prompts file or a loaded bank (default lib/eval/prompts/zh-fundus.json). */
  prompts?: string | URL | PromptBank;
  /** Classes to score (default: the dataset's classes that have prompts; the others are noted). */
  classes?: string[];
  /** Multi-label scoring (default "relative"; see MultiLabelScoring). */
  scoring?: MultiLabelScoring;
  images?: EncodeImagesOptions;
  /** Also per-patient metrics: each patient's scores the max or mean over their images (lib/adapt/patient.ts). */
  patient?: PatientAggregation;
}

export interface ZeroShotResult extends MetricsReport {
  protocol: "zeroshot";
  patient?: PatientReport;
  prompts: Record<string, ClassPrompts>;
  skipped: { id: string; reason: string }[];
  /** Per-image scores (what --predictions writes; leave it out of a metrics JSON). */
  predictions: ScoreTable;
}

/**
 * Step 1: the dataset's class indices to score. Classes given explicitly must have prompts (an
 * error names the first that has none); by default classes without prompts are left out with a note.
 */
function chooseClasses(ds: EvalDataset, bank: PromptBank, requested: string[] | undefined, notes: string[]): number[] {
  let chosen: number[];
  if (requested) {
    chosen = requested.map((c) => {
      const i = ds.classes.indexOf(c);
      if (i < 0)
        throw new DatasetError(`unknown class name ${JSON.stringify(c)}: ${ds.name} has ${ds.classes.join(", ")}`);
      classPrompts(bank, ds.promptKeys[i] ?? c); // throws naming the class when it has no prompts
      return i;
    });
  } else {
    chosen = [];
    const left: string[] = [];
    ds.classes.forEach((c, i) =>
      bank.classes.has(ds.promptKeys[i] ?? c) && !bank.skip.has(ds.promptKeys[i] ?? c) ? chosen.push(i) : left.push(c),
    );
    if (left.length > 0) notes.push(`no prompts for ${left.join(", ")} in ${bank.source}: not scored`);
    if (chosen.length === 0)
      throw new DatasetError(
        `${ds.name}: none of its classes (${ds.classes.join(", ")}) has prompts in ${bank.source}`,
      );
  }
  if (ds.task !== "multilabel" && chosen.length !== ds.classes.length)
    throw new DatasetError(
      `${ds.name}: a single-label zero-shot evaluation needs prompts for every class ` +
        `(${ds.classes.filter((_, i) => !chosen.includes(i)).join(", ")} have none)`,
    );
  return chosen;
}

/** Step 2: the projected image features; an error when none decodes, a note when some do not. */
async function encodeImages(
  model: ViLReF,
  ds: EvalDataset,
  samples: readonly EvalSample[],
  options: EncodeImagesOptions | undefined,
  notes: string[],
): Promise<ImageFeatures> {
  const img = await encodeImageSet(model, samples, { ...options, features: "projected" });
  if (img.n === 0)
    throw new DatasetError(
      `${ds.name}: no image could be decoded (${img.skipped
        .slice(0, 3)
        .map((s) => `${s.id}: ${s.reason}`)
        .join("; ")})`,
    );
  if (img.skipped.length > 0)
    notes.push(
      `${img.skipped.length} images could not be decoded and were left out (first: ${img.skipped[0]!.id}: ` +
        `${img.skipped[0]!.reason})`,
    );
  return img;
}

/** What step 3 scores: the normalised image features [n, d] of the used samples and the class features. */
interface ZeroShotInputs {
  ds: EvalDataset;
  used: EvalSample[];
  /** The dataset's class indices scored, in the order scored. */
  chosen: number[];
  names: string[];
  images: Float32Array;
  n: number;
  feats: ClassFeatures;
  boot: BootstrapOptions;
}

interface ZeroShotScores {
  report: MetricsReport;
  predictions: ScoreTable;
}

function rowsOf({ used, names }: ZeroShotInputs): Pick<ScoreTable, "ids" | "images" | "classes"> {
  return { ids: used.map((s) => s.id), images: used.map((s) => s.image), classes: names };
}

/** Step 3 (multi-label): a score per class (see MultiLabelScoring), thresholded at 0. */
function scoreMultiLabel(z: ZeroShotInputs, scoring: MultiLabelScoring): ZeroShotScores {
  const { ds, chosen, names, n } = z;
  const all = multiLabelTargets(z.used, ds.classes.length);
  const C = chosen.length;
  const y = new Float32Array(n * C);
  for (let i = 0; i < n; i++) chosen.forEach((ci, c) => (y[i * C + c] = all[i * ds.classes.length + ci]!));
  const scores = multiLabelScores(z.images, n, z.feats, scoring);
  const report = evaluateScores({ task: "multilabel", classes: names, scores, n, y, threshold: 0 }, z.boot);
  return {
    report,
    predictions: { ...rowsOf(z), scores, multiLabel: true, threshold: 0, gold: goldLabels(names, n, { y }) },
  };
}

/** Step 3 (single-label): a softmax over the classes at the model's own temperature. */
async function scoreSingleLabel(z: ZeroShotInputs, model: ViLReF): Promise<ZeroShotScores> {
  const { ds, chosen, names, n } = z;
  // the model's own temperature
  const scores = singleLabelProbabilities(z.images, n, z.feats, await logitScaleOf(model));
  // in the order of the scored classes (--classes may list them in another order than the dataset)
  const targets = Int32Array.from(classTargets(z.used, ds.classes.length), (t) => chosen.indexOf(t));
  const report = evaluateScores({ task: ds.task, classes: names, scores, n, targets }, z.boot);
  return {
    report,
    predictions: { ...rowsOf(z), scores, multiLabel: false, threshold: 0.5, gold: goldLabels(names, n, { targets }) },
  };
}

/**
 * Zero-shot evaluation of `samples` of a dataset. Classes given explicitly must have prompts (an
 * error names the first that has none); by default classes without prompts are left out with a note.
 */
export async function zeroShot(
  model: ViLReF,
  encodeText: TextEncodeFn,
  ds: EvalDataset,
  samples: readonly EvalSample[],
  options: ZeroShotOptions = {},
): Promise<ZeroShotResult> {
  const bank =
    options.prompts && typeof options.prompts === "object" && "classes" in options.prompts
      ? options.prompts
      : loadPromptBank((options.prompts as string | URL | undefined) ?? DEFAULT_PROMPTS_URL);
  const notes: string[] = [];
  const chosen = chooseClasses(ds, bank, options.classes, notes);
  const names = chosen.map((i) => ds.classes[i]!);
  const prompts = new Map(chosen.map((i) => [ds.classes[i]!, classPrompts(bank, ds.promptKeys[i] ?? ds.classes[i]!)]));
  const d = model.config.embed_dim;
  const feats = await encodeClassPrompts(encodeText, prompts, d);
  const img = await encodeImages(model, ds, samples, options.images, notes);
  const used = img.used.map((i) => samples[i]!);
  const boot: BootstrapOptions = {
    ...(options.resamples !== undefined ? { resamples: options.resamples } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.level !== undefined ? { level: options.level } : {}),
  };
  const inputs: ZeroShotInputs = {
    ds,
    used,
    chosen,
    names,
    images: normalizeRows(img.data, img.n, img.d),
    n: img.n,
    feats,
    boot,
  };
  const { report, predictions } =
    ds.task === "multilabel"
      ? scoreMultiLabel(inputs, options.scoring ?? "relative")
      : await scoreSingleLabel(inputs, model);
  return {
    ...report,
    protocol: "zeroshot",
    notes: [...ds.notes, ...notes, ...report.notes],
    prompts: Object.fromEntries(prompts),
    skipped: img.skipped,
    predictions,
    ...(options.patient
      ? { patient: patientMetrics(ds, used, names, predictions.scores, options.patient, boot, 0) }
      : {}),
  };
}
