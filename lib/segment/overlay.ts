/** Overlay PNGs for reports: the photo dimmed, true positives white, false positives red, false negatives blue. */
import { mkdir } from "node:fs/promises";
import { atomicWriteFile } from "../io/atomic.js";
import { dirname } from "node:path";
import sharp from "sharp";
import type { SegImage } from "./drive.js";

export async function writeOverlay(
  path: string,
  image: SegImage,
  prob: ArrayLike<number>,
  threshold = 0.5,
): Promise<void> {
  const { width: W, height: H, rgb, target, fov } = image;
  const out = Buffer.alloc(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    const p = fov[i] && prob[i]! >= threshold,
      t = fov[i] && target[i]! > 0;
    const px =
      p && t
        ? [255, 255, 255]
        : p
          ? [255, 40, 40]
          : t
            ? [40, 90, 255]
            : [rgb[3 * i]! * 0.4, rgb[3 * i + 1]! * 0.4, rgb[3 * i + 2]! * 0.4];
    out[3 * i] = px[0]!;
    out[3 * i + 1] = px[1]!;
    out[3 * i + 2] = px[2]!;
  }
  await mkdir(dirname(path), { recursive: true });
  await atomicWriteFile(
    path,
    await sharp(out, { raw: { width: W, height: H, channels: 3 } })
      .png()
      .toBuffer(),
  );
}
