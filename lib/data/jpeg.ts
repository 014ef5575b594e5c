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
import type { JpegDecodeResult, NativeJpeg } from "../native.js";

export interface JpegInfo {
  width: number;
  height: number;
  components: number;
  /** EXIF orientation (1: as stored), when there is one. */
  orientation: number | null;
  /** Why sharp should decode it instead, or null when the fast path can. */
  fallback: string | null;
}

/** True when the bytes start like a JPEG (SOI then a marker). */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

const u16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!;

/** The orientation tag (0x0112) of an APP1 Exif segment's IFD0, or null. */
export function exifOrientation(seg: Uint8Array): number | null {
  // "Exif\0\0" then a TIFF header: byte order, 42, offset of IFD0.
  if (seg.length < 14 || String.fromCharCode(...seg.subarray(0, 4)) !== "Exif") return null;
  const t = seg.subarray(6);
  const le = t[0] === 0x49 && t[1] === 0x49;
  if (!le && !(t[0] === 0x4d && t[1] === 0x4d)) return null;
  const r16 = (i: number) => (le ? t[i]! | (t[i + 1]! << 8) : (t[i]! << 8) | t[i + 1]!);
  const r32 = (i: number) => (le ? r16(i) + r16(i + 2) * 65536 : r16(i) * 65536 + r16(i + 2));
  const ifd = r32(4);
  if (ifd + 2 > t.length) return null;
  const n = r16(ifd);
  for (let k = 0; k < n; k++) {
    const e = ifd + 2 + 12 * k;
    if (e + 12 > t.length) return null;
    if (r16(e) === 0x0112) return r16(e + 8);
  }
  return null;
}

/** True when an ICC profile chunk names itself sRGB (ASCII or UTF-16 in its description). */
function iccIsSrgb(seg: Uint8Array): boolean {
  const s = Buffer.from(seg.buffer, seg.byteOffset, seg.length);
  return s.includes("sRGB", 0, "latin1") || s.includes("\0s\0R\0G\0B", 0, "latin1");
}

/** What a JPEG's header says, read from its markers up to the first scan; null when it is not a JPEG. */
export function inspectJpeg(b: Uint8Array): JpegInfo | null {
  if (!isJpeg(b)) return null;
  const info: JpegInfo = { width: 0, height: 0, components: 0, orientation: null, fallback: null };
  const refuse = (why: string) => (info.fallback ??= why);
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return { ...info, fallback: info.fallback ?? "malformed marker structure" };
    const m = b[i + 1]!;
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2;
      continue;
    }
    const len = u16(b, i + 2);
    const seg = b.subarray(i + 4, Math.min(b.length, i + 2 + len));
    if (m === 0xda) break; // start of scan: the header is done
    if (m === 0xe1) {
      const o = exifOrientation(seg);
      if (o !== null) info.orientation = o;
      if (o !== null && o !== 1) refuse(`EXIF orientation ${o}`);
    } else if (m === 0xe2 && String.fromCharCode(...seg.subarray(0, 11)) === "ICC_PROFILE") {
      if (!iccIsSrgb(seg)) refuse("an ICC colour profile other than sRGB");
    } else if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      sofInfo(m, seg, info, refuse);
    }
    i += 2 + len;
  }
  if (!info.width || !info.height) refuse("no frame header before the scan");
  return info;
}

function sofInfo(m: number, seg: Uint8Array, info: JpegInfo, refuse: (why: string) => void): void {
  if (m !== 0xc0 && m !== 0xc1 && m !== 0xc2)
    refuse(`coding process SOF${m - 0xc0} (lossless, hierarchical or arithmetic)`);
  if (seg.length < 6) return void refuse("short frame header");
  if (seg[0] !== 8) refuse(`${seg[0]}-bit samples`);
  info.height = u16(seg, 1);
  info.width = u16(seg, 3);
  const nc = seg[5]!;
  info.components = nc;
  if (nc !== 1 && nc !== 3) return void refuse(nc === 4 ? "CMYK/YCCK (4 components)" : `${nc} components`);
  if (nc === 3 && seg.length >= 6 + 9) {
    const hv = (k: number) => [seg[6 + 3 * k + 1]! >> 4, seg[6 + 3 * k + 1]! & 15] as const;
    const [yh, yv] = hv(0);
    const chromaOne = [1, 2].every((k) => hv(k)[0] === 1 && hv(k)[1] === 1);
    const lumaOk = ["1,1", "2,1", "1,2", "2,2", "4,1"].includes(`${yh},${yv}`);
    if (!chromaOne || !lumaOk)
      refuse(
        `chroma sampling ${[0, 1, 2].map((k) => hv(k).join("x")).join(" ")} (not 4:4:4, 4:2:2, 4:4:0, 4:2:0 or 4:1:1)`,
      );
  }
}

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

export type { JpegDecodeResult };
