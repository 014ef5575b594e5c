/**
 * Training tiles for the segmenter: a random image, a random tile whose centre lies in the field
 * of view, then the same random flip and quarter turn applied to image, target and weights (the
 * field of view, so that the loss ignores the black border).
 */
import type { Rng } from "../data/rng.js";
import type { SegmentBatch } from "../native.js";
import type { Plane } from "./window.js";

/** A prepared training image: the normalised plane and the 0/1 target and field of view. */
export interface Prepared {
  name: string;
  plane: Plane;
  target: Uint8Array;
  fov: Uint8Array;
}

/** Source coordinates of output pixel (y, x) after `turns` quarter turns and an optional horizontal flip. */
export function augmentIndex(y: number, x: number, T: number, turns: number, flip: boolean): [number, number] {
  let sy = y,
    sx = flip ? T - 1 - x : x;
  for (let k = 0; k < turns; k++) [sy, sx] = [sx, T - 1 - sy];
  return [sy, sx];
}

export function sampleBatch(
  items: readonly Prepared[],
  count: number,
  tile: number,
  rng: Rng,
  augment = true,
): SegmentBatch {
  if (items.length === 0) throw new RangeError("sampleBatch: no training images");
  const C = items[0]!.plane.channels;
  const T = tile,
    TT = T * T;
  const images = new Float32Array(count * C * TT),
    targets = new Float32Array(count * TT),
    weights = new Float32Array(count * TT);
  const map = new Int32Array(TT);
  for (let b = 0; b < count; b++) {
    const it = items[rng.int(0, items.length - 1)]!;
    const { height: H, width: W, data } = it.plane;
    let y0 = 0,
      x0 = 0;
    for (let attempt = 0; attempt < 20; attempt++) {
      y0 = rng.int(0, Math.max(0, H - T));
      x0 = rng.int(0, Math.max(0, W - T));
      const cy = Math.min(H - 1, y0 + (T >> 1)),
        cx = Math.min(W - 1, x0 + (T >> 1));
      if (it.fov[cy * W + cx]) break;
    }
    const turns = augment ? rng.int(0, 3) : 0,
      flip = augment ? rng.next() < 0.5 : false;
    for (let y = 0; y < T; y++) {
      for (let x = 0; x < T; x++) {
        const [sy, sx] = augmentIndex(y, x, T, turns, flip);
        const py = y0 + sy,
          px = x0 + sx;
        map[y * T + x] = py < H && px < W ? py * W + px : -1;
      }
    }
    for (let i = 0; i < TT; i++) {
      const p = map[i]!;
      if (p < 0) continue;
      targets[b * TT + i] = it.target[p]!;
      weights[b * TT + i] = it.fov[p]!;
      for (let c = 0; c < C; c++) images[(b * C + c) * TT + i] = data[c * H * W + p]!;
    }
  }
  return {
    images: { data: images, shape: [count, C, T, T] },
    targets: { data: targets, shape: [count, 1, T, T] },
    weights: { data: weights, shape: [count, 1, T, T] },
  };
}
