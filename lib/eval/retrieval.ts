/**
 * Image↔text retrieval on paired data (sample i's image ↔ sample i's report): recall at k both
 * ways, ties never helping, each with a bootstrap CI over the queries (the gallery stays whole),
 * and the median rank. The ranks come from lib/eval/rank.ts (LibTorch, block by block: 100,000
 * pairs need no 100,000² matrix); the pre-training held-out evaluation uses the same functions.
 */
import type { Sample } from "../data/manifest.js";
import type { ViLReF } from "../model/vilref.js";
import { DatasetError } from "./dataset.js";
import { encodeImageSet, normalizeRows } from "./features.js";
import type { EncodeImagesOptions, TextEncodeFn } from "./features.js";
import { bootstrapMany, quantileSorted, recallAtK } from "./metrics.js";
import type { BootstrapOptions, Estimate } from "./metrics.js";
import { featureMatrix, targetRanks } from "./rank.js";
import type { BlockOptions, FeatureMatrix } from "./rank.js";

export interface DirectionReport {
  recall: Record<`R@${number}`, Estimate>;
  medianRank: number;
}

export interface RetrievalResult {
  protocol: "retrieval";
  n: number;
  imageToText: DirectionReport;
  textToImage: DirectionReport;
  notes: string[];
  bootstrap: { resamples: number; seed: number; level: number };
}

/** 0-based ranks of each pair's partner, both ways (see rank.ts for the definition). */
export interface PairedRanks {
  imageToText: Int32Array;
  textToImage: Int32Array;
}

/**
 * Ranks of paired features (row i of `images` ↔ row i of `texts`, both [n, d], normalised by the
 * caller for cosine similarity): for image i, the texts other than i scoring at least as high as
 * text i; and the same for each text among the images.
 */
export async function pairedRanks(
  images: FeatureMatrix,
  texts: FeatureMatrix,
  options: BlockOptions = {},
): Promise<PairedRanks> {
  const n = images.shape[0]!;
  if (texts.shape[0] !== n)
    throw new RangeError(`pairedRanks: ${n} images but ${texts.shape[0]} texts; pairs need one of each`);
  const self = Int32Array.from({ length: n }, (_, i) => i);
  return {
    imageToText: await targetRanks(images, texts, self, options),
    textToImage: await targetRanks(texts, images, self, options),
  };
}

/** Recall at each k as a record { "R@k": value }. */
export function namedRecall(ranks: ArrayLike<number>, ks: readonly number[]): Record<`R@${number}`, number> {
  const v = recallAtK(ranks, ks);
  return Object.fromEntries(ks.map((k, i) => [`R@${k}`, v[i]!])) as Record<`R@${number}`, number>;
}

/** Recall at k (with bootstrap CIs over the queries) and the median 1-based rank of one direction. */
export function directionReport(
  ranks: Int32Array,
  ks: readonly number[],
  boot: { resamples: number; seed: number; level: number },
): DirectionReport {
  const est = bootstrapMany(
    ranks.length,
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
}

/** Retrieval metrics from the paired ranks of n pairs. */
export function retrievalFromRanks(
  ranks: PairedRanks,
  ks: readonly number[] = [1, 5, 10],
  options: BootstrapOptions = {},
): Omit<RetrievalResult, "notes"> {
  const n = ranks.imageToText.length;
  if (ranks.textToImage.length !== n)
    throw new RangeError(`retrieval: ${n} image ranks but ${ranks.textToImage.length} text ranks`);
  const boot = { resamples: options.resamples ?? 1000, seed: options.seed ?? 0, level: options.level ?? 0.95 };
  return {
    protocol: "retrieval",
    n,
    imageToText: directionReport(ranks.imageToText, ks, boot),
    textToImage: directionReport(ranks.textToImage, ks, boot),
    bootstrap: boot,
  };
}

/** Encodes the images and reports of paired samples and scores retrieval both ways. */
export async function retrieval(
  model: ViLReF,
  encodeText: TextEncodeFn,
  samples: readonly Sample[],
  options: BootstrapOptions & BlockOptions & { ks?: number[]; images?: EncodeImagesOptions } = {},
): Promise<RetrievalResult> {
  const missing = samples.find((s) => s.text === null);
  if (missing)
    throw new DatasetError(
      `${missing.source.file}:${missing.source.line}: sample ${missing.id} has no report text; ` +
        "retrieval needs image–report pairs",
    );
  if (samples.length < 2) throw new DatasetError(`retrieval: ${samples.length} pairs; at least 2 are needed`);
  const img = await encodeImageSet(model, samples, { ...options.images, features: "projected" });
  const notes =
    img.skipped.length > 0
      ? [
          `${img.skipped.length} images could not be decoded; their pairs were left out (first: ` +
            `${img.skipped[0]!.id}: ${img.skipped[0]!.reason})`,
        ]
      : [];
  const used = img.used.map((i) => samples[i]!);
  const d = img.d;
  const I = featureMatrix(normalizeRows(img.data, img.n, d), img.n, d);
  const T = featureMatrix(await encodeText(used.map((s) => s.text!)), img.n, d);
  const ranks = await pairedRanks(I, T, options.block !== undefined ? { block: options.block } : {});
  return { ...retrievalFromRanks(ranks, options.ks, options), notes };
}
