/**
 * What `embed` needs from a model, and a small real encoder for tests and the demo until the
 * ViLReF towers are plugged in: per-image pooled statistics (channel means and standard
 * deviations, 3×3 grid means) computed in TypeScript, then a LibTorch `Head`.
 */
import type { TensorData } from "../native.js";
import { Head } from "../head.js";

export interface ImageEncoder {
  /** Side of the square input the encoder expects. */
  readonly imageSize: number;
  /** A name for the output's fingerprint (a change of model restarts a resumed run). */
  readonly name?: string;
  /**
   * What the output's provenance record says about the encoder (the model's file sha256 or preset,
   * the feature kind, ...): outputs and finished chunks are reused only when it is equal. Default
   * `{ name }`.
   */
  readonly provenance?: unknown;
  /**
   * [N, 3, S, S] normalised images → [N, D] embeddings. `batch` is valid until the promise settles
   * (the loader then reuses its memory): copy anything kept from it.
   */
  encodeImages(batch: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
}

export interface TextEncoder {
  readonly name?: string;
  /** As ImageEncoder.provenance (with the tokenizer's vocabulary and context length). */
  readonly provenance?: unknown;
  /** N report texts → [N, D] embeddings. */
  encodeTexts(texts: string[]): Promise<TensorData<Float32Array>>;
}

/** Features per image of `pooledFeatures`: 3 means, 3 standard deviations, 27 grid means. */
export const POOLED_FEATURES = 33;

/** [N, 3, S, S] → [N, 33]: channel means, channel standard deviations, 3×3 grid means per channel. */
export function pooledFeatures(batch: TensorData<Float32Array>): TensorData<Float32Array> {
  const [N, C, H, W] = batch.shape;
  if (batch.shape.length !== 4 || C !== 3 || N === undefined || H === undefined || W === undefined)
    throw new RangeError(`images: expected shape [N, 3, S, S], got [${batch.shape.join(", ")}]`);
  const out = new Float32Array(N * POOLED_FEATURES);
  const plane = H * W;
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      let s = 0;
      let s2 = 0;
      const grid = new Float64Array(9);
      const cnt = new Float64Array(9);
      for (let y = 0; y < H; y++) {
        const gy = Math.min(2, Math.floor((3 * y) / H));
        for (let x = 0; x < W; x++) {
          const v = batch.data[base + y * W + x]!;
          s += v;
          s2 += v * v;
          const g = gy * 3 + Math.min(2, Math.floor((3 * x) / W));
          grid[g]! += v;
          cnt[g]!++;
        }
      }
      const mean = s / plane;
      const o = n * POOLED_FEATURES;
      out[o + c] = mean;
      out[o + 3 + c] = Math.sqrt(Math.max(0, s2 / plane - mean * mean));
      for (let g = 0; g < 9; g++) out[o + 6 + c * 9 + g] = grid[g]! / Math.max(1, cnt[g]!);
    }
  }
  return { data: out, shape: [N, POOLED_FEATURES] };
}

/** Pooled statistics → Head: a real, deterministic, cheap image encoder. */
export class PooledHeadEncoder implements ImageEncoder {
  readonly imageSize: number;
  readonly name: string;
  readonly head: Head;

  constructor(options: { dim?: number; seed?: number; imageSize?: number; hidden?: number[] } = {}) {
    const dim = options.dim ?? 64;
    const seed = options.seed ?? 0;
    this.imageSize = options.imageSize ?? 224;
    this.head = new Head({ inFeatures: POOLED_FEATURES, hidden: options.hidden ?? [], outFeatures: dim, seed });
    this.name = `pool-head:${dim}:${seed}:${this.imageSize}`;
  }

  encodeImages(batch: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    if (batch.shape[0] === 0)
      return Promise.resolve({ data: new Float32Array(0), shape: [0, this.head.config.outFeatures] });
    return this.head.forward(pooledFeatures(batch));
  }
}
