// A random pre-training batch for the tiny-vit preset: 32-px images, 8-token texts ([CLS] ids
// [SEP]) and label rows over C = 5 labels (a fixed pattern unless given).
import { mulberry32 } from "../../lib/data/rng.js";
import type { TrainBatch } from "../../lib/train/trainer.js";

export const C = 5;

export function batch(n: number, seed: number, labelRows?: number[][]): TrainBatch {
  const r = mulberry32(seed);
  const images = Float32Array.from({ length: n * 3 * 32 * 32 }, () => r.next() * 2 - 1);
  const ids = new BigInt64Array(n * 8);
  for (let i = 0; i < n; i++) {
    ids[i * 8] = 101n;
    for (let k = 1; k < 7; k++) ids[i * 8 + k] = BigInt(200 + Math.floor(r.next() * 5000));
    ids[i * 8 + 7] = 102n;
  }
  const labels = Float32Array.from(
    labelRows ? labelRows.flat() : Array.from({ length: n * C }, (_, k) => (k % C === k % n ? 1 : 0)),
  );
  return {
    images: { data: images, shape: [n, 3, 32, 32] },
    ids: { data: ids, shape: [n, 8] },
    labels: { data: labels, shape: [n, C] },
  };
}
