/**
 * Features for evaluation: images through the loader (evaluation transform, no augmentation) and
 * the image tower; texts through the tokenizer and the text tower. Rows can be L2-normalised.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Loader } from "../data/loader.js";
import type { Sample } from "../data/manifest.js";
import type { TransformOptions } from "../data/transforms.js";
import { sha256Hex } from "../model/vilref.js";
import type { ViLReF } from "../model/vilref.js";
import type { TensorData } from "../native.js";
import { progress } from "../progress.js";
import type { ProgressSpec } from "../progress.js";
import { BertTokenizer, Vocab } from "../text/index.js";

export interface ImageFeatures {
  /** [n, d] row-major, rows in the order of `used`. */
  data: Float32Array;
  n: number;
  d: number;
  /** Indices (into the given samples) of the images that decoded; the others were skipped. */
  used: number[];
  skipped: { id: string; reason: string }[];
}

export interface EncodeImagesOptions {
  features?: "projected" | "pre";
  batchSize?: number;
  /** Evaluation transform options (size defaults to the model's resolution). */
  transform?: Omit<TransformOptions, "train">;
  concurrency?: number;
  /** A progress bar over the images (lib/progress.ts); default none. */
  progress?: ProgressSpec;
}

/** Encodes the images of `samples`; undecodable images are skipped and listed. */
export async function encodeImageSet(
  model: ViLReF,
  samples: readonly Sample[],
  options: EncodeImagesOptions = {},
): Promise<ImageFeatures> {
  const skipped: { id: string; reason: string }[] = [];
  const loader = new Loader(samples, {
    batchSize: options.batchSize ?? 64,
    shuffle: false,
    transform: { ...options.transform, size: options.transform?.size ?? model.config.image_resolution, train: false },
    log: () => {},
    recycleImages: true, // each batch is encoded before the next is asked for; only features are kept
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
  });
  const chunks: Float32Array[] = [];
  const used: number[] = [];
  let d = 0;
  const bar = progress(
    options.progress === false || options.progress === undefined
      ? false
      : { total: samples.length, label: "encoding images", unit: "img", ...options.progress },
  );
  for await (const b of loader.epoch(0)) {
    for (const s of b.skipped) skipped.push({ id: s.id, reason: s.reason });
    if (b.skipped.length > 0) bar.tick(b.skipped.length);
    if (b.samples.length === 0) continue;
    const f = await model.encodeImages(b.images, { features: options.features ?? "projected" });
    d = f.shape[1]!;
    chunks.push(Float32Array.from(f.data as Float32Array));
    used.push(...b.indices);
    bar.tick(b.samples.length);
  }
  bar.done();
  const data = new Float32Array(used.length * d);
  let o = 0;
  for (const c of chunks) (data.set(c, o), (o += c.length));
  return { data, n: used.length, d, used, skipped };
}

/** L2-normalises the rows of a row-major [n, d] matrix (a copy). */
export function normalizeRows(x: ArrayLike<number>, n: number, d: number): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[i * d + k]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < d; k++) out[i * d + k] = x[i * d + k]! * inv;
  }
  return out;
}

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

/** Text features of `texts`, L2-normalised, [texts.length, embed_dim]. */
export type TextEncodeFn = (texts: string[]) => Promise<Float32Array>;

/** A TextEncodeFn over a model and tokenizer, in batches. */
export function textEncoder(
  model: ViLReF,
  tokenizer: BertTokenizer,
  contextLength: number,
  batchSize = 256,
): TextEncodeFn {
  return async (texts) => {
    const d = model.config.embed_dim;
    const out = new Float32Array(texts.length * d);
    for (let i = 0; i < texts.length; i += batchSize) {
      const part = texts.slice(i, i + batchSize);
      const f: TensorData = await model.encodeTexts(tokenizer.encodeBatch(part, contextLength));
      out.set(normalizeRows(f.data as Float32Array, part.length, d), i * d);
    }
    return out;
  };
}

/** What a model says about its vocabulary: the recorded sha256, the text itself, the file it came from. */
export interface VocabSource {
  vocabSha256?: string | undefined;
  vocab?: string | undefined;
  file?: string | undefined;
}

/**
 * The tokenizer of a checkpoint: `vocab` (--vocab) when given; else the vocabulary the checkpoint
 * carries (a vilref safetensors written with one: `vilref convert --vocab`, `vilref models add`,
 * pre-training's final model); else a vocab.txt beside the checkpoint or up to two folders above
 * it (where `vilref pretrain` writes it). A vocabulary whose sha256 differs from the one the
 * checkpoint records is refused, naming both. `model` is the loaded model (or, as before, just the
 * sha256 it records).
 */
export function tokenizerFor(
  modelSpec: string,
  model: VocabSource | string | undefined,
  vocab?: string,
): { tokenizer: BertTokenizer; file: string } {
  const src: VocabSource = typeof model === "string" ? { vocabSha256: model } : (model ?? {});
  const sha = src.vocabSha256;
  let file = vocab;
  if (!file && src.vocab !== undefined)
    return { tokenizer: new BertTokenizer(Vocab.fromText(src.vocab)), file: `${src.file ?? modelSpec} (inside)` };
  if (!file) {
    if (modelSpec.startsWith("preset:"))
      throw new Error(`--model ${modelSpec}: a preset has no vocabulary; give one with --vocab`);
    let dir = path.dirname(path.resolve(src.file ?? modelSpec));
    for (let up = 0; up < 3 && !file; up++, dir = path.dirname(dir))
      if (existsSync(path.join(dir, "vocab.txt"))) file = path.join(dir, "vocab.txt");
    if (!file)
      throw new Error(
        `--model ${modelSpec}: no vocabulary: the checkpoint carries none and there is no vocab.txt beside it ` +
          `or up to two folders above; give one with --vocab${sha ? ` (sha256 ${sha.slice(0, 12)}…)` : ""}, ` +
          `or put it inside the checkpoint once with \`vilref convert CHECKPOINT OUT.safetensors --vocab ` +
          `vocab.txt\``,
      );
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`--vocab ${file}: ${(e as Error).message}`);
  }
  // the hash of the vocabulary's tokens as pretrain records it (Vocab.toText), not of the file's bytes:
  // the same vocabulary with a BOM, CRLF or stray spaces is the same vocabulary
  const parsed = Vocab.fromText(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  const got = sha256Hex(parsed.toText());
  if (sha && got !== sha)
    throw new Error(
      `--vocab ${file}: sha256 ${got.slice(0, 12)}… is not the vocabulary the checkpoint was trained with ` +
        `(${sha.slice(0, 12)}…)`,
    );
  return { tokenizer: new BertTokenizer(parsed), file };
}

/** Tokens per text: the option when given, else what the model records, else min(52, the model's positions). */
export function contextLengthFor(
  model: { contextLength?: number | undefined; config: { text_max_position_embeddings: number } },
  option?: number,
): number {
  return option ?? model.contextLength ?? Math.min(52, model.config.text_max_position_embeddings);
}

/** The model's temperature exp(logit_scale): the similarity of a unit vector with itself. */
export async function logitScaleOf(model: ViLReF): Promise<number> {
  const d = model.config.embed_dim;
  const unit = new Float32Array(d);
  unit[0] = 1;
  const s = await model.similarity({ data: unit, shape: [1, d] }, { data: unit, shape: [1, d] });
  return s.data[0] as number;
}
