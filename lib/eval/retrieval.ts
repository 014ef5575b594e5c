/**
 * Image↔text retrieval on paired data (sample i's image ↔ sample i's report): recall at k both
 * ways, ties never helping, each with a bootstrap CI over the queries (the gallery stays whole),
 * and the median rank.
 */
import type { Sample } from "../data/manifest.js";
import type { ViLReF } from "../model/vilref.js";
import { DatasetError } from "./dataset.js";
import { dots, encodeImageSet, normalizeRows } from "./features.js";
import type { EncodeImagesOptions, TextEncodeFn } from "./features.js";
import { bootstrapMany, quantileSorted, transpose } from "./metrics.js";
import type { BootstrapOptions, Estimate } from "./metrics.js";

/** 0-based rank of each row's target column: candidates scoring at least as well as the target (ties never help). */
export function targetRanks(
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

/** Retrieval metrics from a paired similarity matrix [n images, n texts]. */
export function retrievalFromSimilarity(
  similarity: ArrayLike<number>,
  n: number,
  ks: readonly number[] = [1, 5, 10],
  options: BootstrapOptions = {},
): Omit<RetrievalResult, "notes"> {
  if (similarity.length !== n * n)
    throw new RangeError(`retrieval: expected ${n}×${n} similarities, got ${similarity.length}`);
  const targets = Int32Array.from({ length: n }, (_, i) => i);
  const boot = { resamples: options.resamples ?? 1000, seed: options.seed ?? 0, level: options.level ?? 0.95 };
  const direction = (ranks: Int32Array): DirectionReport => {
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
  return {
    protocol: "retrieval",
    n,
    imageToText: direction(targetRanks(similarity, n, n, targets)),
    textToImage: direction(targetRanks(transpose(similarity, n, n), n, n, targets)),
    bootstrap: boot,
  };
}

/** Encodes the images and reports of paired samples and scores retrieval both ways. */
export async function retrieval(
  model: ViLReF,
  encodeText: TextEncodeFn,
  samples: readonly Sample[],
  options: BootstrapOptions & { ks?: number[]; images?: EncodeImagesOptions } = {},
): Promise<RetrievalResult> {
  const missing = samples.find((s) => s.text === null);
  if (missing)
    throw new DatasetError(
      `${missing.source.file}:${missing.source.line}: sample ${missing.id} has no report text; retrieval needs image–report pairs`,
    );
  if (samples.length < 2) throw new DatasetError(`retrieval: ${samples.length} pairs; at least 2 are needed`);
  const img = await encodeImageSet(model, samples, { ...options.images, features: "projected" });
  const notes =
    img.skipped.length > 0
      ? [
          `${img.skipped.length} images could not be decoded; their pairs were left out (first: ${img.skipped[0]!.id}: ${img.skipped[0]!.reason})`,
        ]
      : [];
  const used = img.used.map((i) => samples[i]!);
  const d = img.d;
  const I = normalizeRows(img.data, img.n, d);
  const T = await encodeText(used.map((s) => s.text!));
  const r = retrievalFromSimilarity(dots(I, img.n, T, img.n, d), img.n, options.ks, options);
  return { ...r, notes };
}
