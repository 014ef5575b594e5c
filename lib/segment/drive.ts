/**
 * A DRIVE-layout segmentation set: `images/` (fundus photos, TIFF in DRIVE), `1st_manual/`
 * (vessel annotations, GIF) and `mask/` (field-of-view masks, GIF), matched by the leading
 * number of the file name (`21_training.tif` ↔ `21_manual1.gif` ↔ `21_training_mask.gif`).
 * The DRIVE root holds `training/` and `test/` in that layout. Decoding is sharp's.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, extname, join } from "node:path";
import sharp from "sharp";
import { IMAGE_EXTENSIONS } from "../data/manifest.js";

/** One annotated image at full resolution. */
export interface SegImage {
  name: string;
  path: string;
  width: number;
  height: number;
  /** [H, W, 3] 8-bit RGB, row-major. */
  rgb: Uint8Array;
  /** [H, W] 0/1 vessel annotation. */
  target: Uint8Array;
  /** [H, W] 0/1 field of view. */
  fov: Uint8Array;
}

export class SegmentationDataError extends Error {
  override name = "SegmentationDataError";
}

/** The id a file is matched by: its name up to the first "_" (or the whole stem). */
export function sampleId(file: string): string {
  const stem = basename(file, extname(file));
  const i = stem.indexOf("_");
  return i > 0 ? stem.slice(0, i) : stem;
}

function listDir(dir: string, what: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new SegmentationDataError(`${dir}: no such directory (the ${what} of a DRIVE-layout set)`);
  return readdirSync(dir)
    .filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()))
    .sort();
}

function byId(files: string[], dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files) {
    const id = sampleId(f);
    if (out.has(id))
      throw new SegmentationDataError(`${join(dir, f)}: a second file for id "${id}" (${out.get(id)} is the first)`);
    out.set(id, join(dir, f));
  }
  return out;
}

async function decodeRgb(path: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  try {
    const { data, info } = await sharp(path)
      .removeAlpha()
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels === 3)
      return {
        data: new Uint8Array(data.buffer, data.byteOffset, data.length),
        width: info.width,
        height: info.height,
      };
    const out = new Uint8Array(info.width * info.height * 3);
    for (let i = 0; i < info.width * info.height; i++)
      for (let c = 0; c < 3; c++) out[3 * i + c] = data[i * info.channels + Math.min(c, info.channels - 1)]!;
    return { data: out, width: info.width, height: info.height };
  } catch (e) {
    throw new SegmentationDataError(`${path}: cannot decode (${(e as Error).message})`);
  }
}

/** A binary mask: a pixel is 1 when its first channel is above 127. */
export async function decodeMask(path: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  let raw;
  try {
    raw = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new SegmentationDataError(`${path}: cannot decode (${(e as Error).message})`);
  }
  const { data, info } = raw;
  const out = new Uint8Array(info.width * info.height);
  for (let i = 0; i < out.length; i++) out[i] = data[i * info.channels]! > 127 ? 1 : 0;
  return { data: out, width: info.width, height: info.height };
}

/** Reads one folder in the DRIVE layout; every image needs an annotation and a mask of its size. */
export async function readSegmentationDir(dir: string): Promise<SegImage[]> {
  const imagesDir = join(dir, "images"),
    manualDir = join(dir, "1st_manual"),
    maskDir = join(dir, "mask");
  const images = listDir(imagesDir, "images");
  const manuals = byId(listDir(manualDir, "vessel annotations"), manualDir);
  const masks = byId(listDir(maskDir, "field-of-view masks"), maskDir);
  if (images.length === 0) throw new SegmentationDataError(`${imagesDir}: no images`);
  const out: SegImage[] = [];
  for (const f of images) {
    const path = join(imagesDir, f);
    const id = sampleId(f);
    const manual = manuals.get(id),
      mask = masks.get(id);
    if (!manual) throw new SegmentationDataError(`${path}: no vessel annotation for id "${id}" in ${manualDir}`);
    if (!mask) throw new SegmentationDataError(`${path}: no field-of-view mask for id "${id}" in ${maskDir}`);
    const [rgb, target, fov] = await Promise.all([decodeRgb(path), decodeMask(manual), decodeMask(mask)]);
    for (const [what, m, p] of [
      ["annotation", target, manual],
      ["mask", fov, mask],
    ] as const) {
      if (m.width !== rgb.width || m.height !== rgb.height)
        throw new SegmentationDataError(
          `${p}: ${what} is ${m.width}×${m.height}, the image ${path} is ${rgb.width}×${rgb.height}`,
        );
    }
    out.push({
      name: id,
      path,
      width: rgb.width,
      height: rgb.height,
      rgb: rgb.data,
      target: target.data,
      fov: fov.data,
    });
  }
  return out;
}

/** DRIVE: `<root>/training` and `<root>/test`, each in the layout above. */
export async function readDrive(root: string): Promise<{ training: SegImage[]; test: SegImage[] }> {
  if (!existsSync(root))
    throw new SegmentationDataError(`${root}: no such directory (a DRIVE root holds training/ and test/)`);
  const [training, test] = [
    await readSegmentationDir(join(root, "training")),
    await readSegmentationDir(join(root, "test")),
  ];
  return { training, test };
}
