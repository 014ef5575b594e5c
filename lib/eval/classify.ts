/**
 * Zero-shot classification of unlabelled images: "which of these findings does each photograph
 * show?". A `ZeroShotClassifier` is made once for a model and a list of classes — each class's
 * prompts encoded and ensembled once (the prompt bank of lib/eval/zeroshot.ts) — and then scores
 * any number of images.
 *
 * Classes: a bank id (`glaucoma`) or one of a class's names (`青光眼`) takes that class's prompts
 * (templates × names + expert descriptions); any other text is a free-text class whose prompts are
 * the bank's templates filled with it. `taxonomy: true` takes every label of the taxonomy
 * (lib/labels/taxonomy.ts) the bank has prompts for.
 *
 * Scores (cosines of L2-normalised features, `scale` = the model's exp(logit_scale)):
 * - single-label (default): softmax over the classes of scale · cos(image, class); the top class is
 *   the prediction.
 * - multi-label: a probability per class, sigmoid(scale · s), where s is cos(image, positive) −
 *   cos(image, negative) ("contrast", the default: the two-way softmax of "可见X" against "未见X")
 *   or cos(image, positive) − the mean over the classes ("relative": above the average class,
 *   robust for weakly trained text towers); every class at or above `threshold` is predicted.
 */
import type { Sample } from "../data/manifest.js";
import { LABEL_IDS } from "../labels/index.js";
import { samplesFromFiles } from "../data/manifest.js";
import type { ViLReF } from "../model/vilref.js";
import type { TensorData } from "../native.js";
import type { BertTokenizer } from "../text/index.js";
import { DatasetError } from "./dataset.js";
import { contextLengthFor, encodeImageSet, logitScaleOf, normalizeRows, textEncoder } from "./features.js";
import type { EncodeImagesOptions } from "./features.js";
import {
  classPrompts,
  DEFAULT_PROMPTS_URL,
  encodeClassPrompts,
  loadPromptBank,
  multiLabelScores,
  singleLabelProbabilities,
} from "./zeroshot.js";
import type { ClassFeatures, ClassPrompts, MultiLabelScoring, PromptBank } from "./zeroshot.js";

export interface ClassifierOptions {
  /** Class names: bank ids, names of bank classes, or free text. */
  classes?: readonly string[];
  /** Every label of the taxonomy the prompt bank has prompts for (taxonomy order), instead of `classes`. */
  taxonomy?: boolean;
  /** A prompts file or a loaded bank (default lib/eval/prompts/zh-fundus.json). */
  prompts?: string | URL | PromptBank;
  /** The tokenizer of the model's vocabulary (tokenizerFor finds it). */
  tokenizer: BertTokenizer;
  /** Tokens per prompt (default: the model's recorded context length, else min(52, positions)). */
  contextLength?: number;
  multiLabel?: boolean;
  /** Multi-label: the probability at which a class is predicted (default 0.5). */
  threshold?: number;
  /** Multi-label scoring (default "contrast"). */
  scoring?: MultiLabelScoring;
}

export interface LabelScore {
  label: string;
  score: number;
}

export interface ImagePrediction {
  id: string;
  /** The image's path, when it was given as a file. */
  image?: string;
  /** The predicted class (single-label) or every class at or above the threshold (multi-label), best first. */
  labels: LabelScore[];
  /** Every class's score, best first. */
  ranked: LabelScore[];
  /** Every class's score in the classifier's class order. */
  scores: Float64Array;
  /** Why the image could not be classified (it could not be decoded); labels and scores are then empty. */
  error?: string;
}

/** The classes' prompts: bank classes by id or name, free text through the bank's templates. */
export function resolveClassPrompts(bank: PromptBank, classes: readonly string[]): Map<string, ClassPrompts> {
  const out = new Map<string, ClassPrompts>();
  classes.forEach((raw, i) => {
    const name = raw.trim();
    if (name === "")
      throw new DatasetError(`classes: the class name at position ${i + 1} of ${classes.length} is empty`);
    if (out.has(name)) throw new DatasetError(`classes: ${JSON.stringify(name)} is given twice`);
    const key = bank.classes.has(name) ? name : [...bank.classes].find(([, e]) => e.names.includes(name))?.[0];
    if (key !== undefined) {
      out.set(name, classPrompts(bank, key));
      return;
    }
    const fill = (ts: string[]) => [...new Set(ts.map((t) => t.replaceAll("{name}", name)))];
    out.set(name, { positive: fill(bank.templates.positive), negative: fill(bank.templates.negative) });
  });
  return out;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export class ZeroShotClassifier {
  private constructor(
    readonly model: ViLReF,
    /** The classes, in column order (as given; taxonomy ids with `taxonomy`). */
    readonly classes: string[],
    /** The prompts of each class. */
    readonly prompts: Map<string, ClassPrompts>,
    /** The ensembled, normalised class features. */
    readonly features: ClassFeatures,
    readonly scale: number,
    readonly multiLabel: boolean,
    readonly threshold: number,
    readonly scoring: MultiLabelScoring,
  ) {}

  /** Encodes the classes' prompts once; `classify` then scores images against them. */
  static async create(model: ViLReF, options: ClassifierOptions): Promise<ZeroShotClassifier> {
    const bank =
      options.prompts && typeof options.prompts === "object" && "classes" in options.prompts
        ? options.prompts
        : loadPromptBank((options.prompts as string | URL | undefined) ?? DEFAULT_PROMPTS_URL);
    if (options.taxonomy && options.classes) throw new RangeError("give classes or taxonomy, not both");
    const classes = options.taxonomy
      ? LABEL_IDS.filter((k) => bank.classes.has(k) && !bank.skip.has(k))
      : [...(options.classes ?? [])];
    if (classes.length === 0) throw new DatasetError("classes: no classes to score");
    if (!options.multiLabel && classes.length < 2)
      throw new DatasetError("classes: a single-label classifier needs at least two classes (or use multi-label)");
    const threshold = options.threshold ?? 0.5;
    if (!(threshold >= 0 && threshold <= 1)) throw new RangeError(`threshold: ${threshold} is not between 0 and 1`);
    const prompts = resolveClassPrompts(bank, classes);
    const L = contextLengthFor(model, options.contextLength);
    const feats = await encodeClassPrompts(textEncoder(model, options.tokenizer, L), prompts, model.config.embed_dim);
    const scale = await logitScaleOf(model);
    return new ZeroShotClassifier(
      model,
      [...prompts.keys()],
      prompts,
      feats,
      scale,
      !!options.multiLabel,
      threshold,
      options.scoring ?? "contrast",
    );
  }

  /** Scores [n, C] of image features [n, d] (any scale: they are normalised here). */
  scoreFeatures(features: Float32Array, n: number): Float64Array {
    const I = normalizeRows(features, n, this.features.d);
    if (!this.multiLabel) return singleLabelProbabilities(I, n, this.features, this.scale);
    const s = multiLabelScores(I, n, this.features, this.scoring);
    for (let i = 0; i < s.length; i++) s[i] = sigmoid(this.scale * s[i]!);
    return s;
  }

  /** One prediction from a row of scores. */
  predict(id: string, scores: Float64Array, image?: string): ImagePrediction {
    const ranked = this.classes
      .map((label, c) => ({ label, score: scores[c]! }))
      .sort((a, b) => b.score - a.score || this.classes.indexOf(a.label) - this.classes.indexOf(b.label));
    const labels = this.multiLabel ? ranked.filter((r) => r.score >= this.threshold) : ranked.slice(0, 1);
    return { id, ...(image !== undefined ? { image } : {}), labels, ranked, scores };
  }

  /**
   * Classifies images: preprocessed pixels ([N, 3, R, R], normalised), or image files / samples
   * (decoded with the evaluation transform at the model's resolution). One prediction per input, in
   * order; an image that cannot be decoded gets `error` and no scores.
   */
  async classify(
    images: TensorData<Float32Array> | readonly (string | Sample)[],
    options: Omit<EncodeImagesOptions, "features"> = {},
  ): Promise<ImagePrediction[]> {
    const C = this.classes.length;
    if (!Array.isArray(images)) {
      const t = images as TensorData<Float32Array>;
      const f = await this.model.encodeImages(t);
      const n = f.shape[0]!;
      const s = this.scoreFeatures(f.data as Float32Array, n);
      return Array.from({ length: n }, (_, i) => this.predict(String(i), s.slice(i * C, (i + 1) * C)));
    }
    const list = images as readonly (string | Sample)[];
    const samples = list.map((x) => (typeof x === "string" ? samplesFromFiles([x])[0]! : x));
    samples.forEach((s, i) => {
      if (typeof list[i] === "string") s.id = list[i] as string;
    });
    const enc = await encodeImageSet(this.model, samples, { ...options, features: "projected" });
    const s = this.scoreFeatures(enc.data, enc.n);
    const out: ImagePrediction[] = samples.map((x) => ({
      id: x.id,
      image: x.image,
      labels: [],
      ranked: [],
      scores: new Float64Array(0),
    }));
    enc.used.forEach(
      (idx, row) => (out[idx] = this.predict(samples[idx]!.id, s.slice(row * C, (row + 1) * C), samples[idx]!.image)),
    );
    for (const k of enc.skipped) {
      const idx = samples.findIndex((x) => x.id === k.id);
      if (idx >= 0) out[idx]!.error = k.reason;
    }
    return out;
  }
}
