/**
 * The JPEG fast path: which JPEGs native/jpeg.cc (TurboJPEG + LibTorch's antialiased bicubic)
 * decodes, and the call that renders one sample's plan with it straight into the batch.
 *
 * A JPEG takes the fast path when the addon was built with TurboJPEG and the file is a baseline,
 * extended or progressive 8-bit JPEG with 1 or 3 components in a common chroma sampling, no EXIF
 * orientation other than "top-left" and no ICC profile other than sRGB. Everything else goes to
 * sharp (`inspectJpeg` says why): CMYK/YCCK, 12-bit, lossless, arithmetic or hierarchical coding,
 * odd sampling factors, an EXIF rotation or mirror, a non-sRGB colour profile. A file that
 * TurboJPEG refuses for another reason also goes to sharp; data that libjpeg warns about (corrupt
 * entropy-coded data, a premature end) is reported as a bad image with TurboJPEG's own message for
 * that image, never rendered.
 */
import { nativeAddon } from "../native.js";
import type { JpegDecodeResult, JpegGeometry, JpegInspection, JpegJitter, NativeJpeg } from "../native.js";

/** True when the bytes start like a JPEG (SOI then a marker). */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * What a JPEG's header says and whether the fast path takes it (native/jpeg_inspect.cc); null
 * when it is not a JPEG or the fast path is not there.
 */
export function inspectJpeg(bytes: Uint8Array): JpegInspection | null {
  const jpeg = jpegFastPath().jpeg;
  if (!jpeg) return null;
  const info = jpeg.inspect(bytes);
  return info.jpeg ? info : null;
}

/** The neutral geometry: the whole image, not mirrored, DCT scaling on, the native resampler. */
export const WHOLE_IMAGE: Readonly<JpegGeometry> = Object.freeze({
  left: 0,
  top: 0,
  width: 0,
  height: 0,
  flip: false,
  shrink: true,
  resampler: "native",
});

/** No colour jitter. */
export const NO_JITTER: Readonly<JpegJitter> = Object.freeze({
  brightness: 1,
  contrast: 1,
  saturation: 1,
  order: [0, 1, 2] as [number, number, number],
});

let cached: { jpeg: NativeJpeg | null; reason: string | null } | null = null;

/**
 * The native JPEG path, or null with the reason: the addon could not load, was built without
 * TurboJPEG, or VILREF_JPEG=sharp turned it off.
 */
export function jpegFastPath(): { jpeg: NativeJpeg | null; reason: string | null } {
  if (cached) return cached;
  if (process.env.VILREF_JPEG === "sharp") return (cached = { jpeg: null, reason: "VILREF_JPEG=sharp" });
  try {
    const { jpeg } = nativeAddon().addon;
    cached = jpeg.available ? { jpeg, reason: null } : { jpeg: null, reason: jpeg.reason };
  } catch (e) {
    cached = { jpeg: null, reason: `the native addon did not load: ${(e as Error).message}` };
  }
  return cached;
}

export type { JpegDecodeResult, JpegGeometry, JpegInspection, JpegJitter };
