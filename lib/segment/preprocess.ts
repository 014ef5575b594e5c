/**
 * Fundus images → CHW float32 planes for the segmenter, at full resolution. Two normalisations:
 *
 *   "fov-standard" (default): each RGB channel standardised by its mean and standard deviation
 *                  inside the field of view; 0 outside.
 *   "green-lcn":   the green channel (where vessels contrast most) with local contrast
 *                  normalisation — subtract a box-blurred mean and divide by the local standard
 *                  deviation over a (2r+1)² window, a cheap stand-in for CLAHE — copied into
 *                  the three channels the ViT expects; 0 outside the field of view.
 */
import type { SegImage } from "./drive.js";
import type { Plane } from "./window.js";

export type Normalisation = "fov-standard" | "green-lcn";
export const NORMALISATIONS: readonly Normalisation[] = ["fov-standard", "green-lcn"];

/** Mean over a (2r+1)² window clipped at the borders (integral image). */
export function boxMean(src: Float32Array, H: number, W: number, r: number): Float32Array {
  const I = new Float64Array((H + 1) * (W + 1));
  for (let y = 0; y < H; y++) {
    let row = 0;
    for (let x = 0; x < W; x++) {
      row += src[y * W + x]!;
      I[(y + 1) * (W + 1) + x + 1] = I[y * (W + 1) + x + 1]! + row;
    }
  }
  const out = new Float32Array(H * W);
  for (let y = 0; y < H; y++) {
    const y0 = Math.max(0, y - r),
      y1 = Math.min(H, y + r + 1);
    for (let x = 0; x < W; x++) {
      const x0 = Math.max(0, x - r),
        x1 = Math.min(W, x + r + 1);
      const s = I[y1 * (W + 1) + x1]! - I[y0 * (W + 1) + x1]! - I[y1 * (W + 1) + x0]! + I[y0 * (W + 1) + x0]!;
      out[y * W + x] = s / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}

export function normalise(image: SegImage, mode: Normalisation = "fov-standard"): Plane {
  const { width: W, height: H, rgb, fov } = image;
  const n = W * H;
  const data = new Float32Array(3 * n);
  if (mode === "fov-standard") {
    for (let c = 0; c < 3; c++) {
      let s = 0,
        s2 = 0,
        k = 0;
      for (let i = 0; i < n; i++) {
        if (!fov[i]) continue;
        const v = rgb[3 * i + c]! / 255;
        s += v;
        s2 += v * v;
        k++;
      }
      const mean = k ? s / k : 0;
      const std = Math.sqrt(Math.max(k ? s2 / k - mean * mean : 0, 1e-8));
      for (let i = 0; i < n; i++) data[c * n + i] = fov[i] ? (rgb[3 * i + c]! / 255 - mean) / std : 0;
    }
    return { data, channels: 3, height: H, width: W };
  }
  // green-lcn: outside the field of view takes the field's mean, so the border does not ring
  const g = new Float32Array(n);
  let s = 0,
    k = 0;
  for (let i = 0; i < n; i++) if (fov[i]) ((s += rgb[3 * i + 1]! / 255), k++);
  const mean = k ? s / k : 0;
  for (let i = 0; i < n; i++) g[i] = fov[i] ? rgb[3 * i + 1]! / 255 : mean;
  const r = 12;
  const m = boxMean(g, H, W, r);
  const d2 = Float32Array.from(g, (v, i) => (v - m[i]!) ** 2);
  const v = boxMean(d2, H, W, r);
  for (let i = 0; i < n; i++) {
    const x = fov[i] ? (g[i]! - m[i]!) / Math.sqrt(v[i]! + 1e-4) : 0;
    data[i] = x;
    data[n + i] = x;
    data[2 * n + i] = x;
  }
  return { data, channels: 3, height: H, width: W };
}
