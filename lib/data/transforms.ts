/**
 * Fundus image preprocessing: decode (JPEG, PNG, TIFF, GIF, WebP; 8- or 16-bit; grayscale, RGB or
 * RGBA, all to 8-bit sRGB RGB), optional crop to the circular field of view, then
 *
 *   training:   random resized crop (scale 0.9–1.0, ratio 3/4–4/3, bicubic), horizontal flip 0.5,
 *               brightness/contrast/saturation jitter 0.1 (torchvision ColorJitter semantics)
 *   evaluation: squash-resize to size×size, bicubic
 *
 * then CLIP mean/std normalisation into CHW float32. Every random choice comes from a seed per
 * sample (`sampleSeed(seed, epoch, index)`), so an epoch is reproducible whatever the decode
 * order or the number of ranks.
 *
 * JPEGs take the native fast path (lib/data/jpeg.ts: TurboJPEG at a DCT scale, LibTorch's
 * antialiased bicubic, jitter and normalisation in C++, written straight into the batch) when the
 * addon has it and the file is a kind it covers; everything else goes through sharp (libvips).
 * Decoder errors are read per image: the native path has one decoder per call, and a sharp failure
 * is decoded once more alone (libvips keeps one error buffer per process, so a message read while
 * other images fail at the same time can be theirs). JPEGs whose data libjpeg warns about (corrupt
 * entropy-coded data, a premature end) are errors on both paths (sharp: `failOn: "warning"`).
 */
import { readFile } from "node:fs/promises";
import sharp, { type Sharp } from "sharp";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import { isJpeg, jpegFastPath, NO_JITTER, WHOLE_IMAGE } from "./jpeg.js";
import type { JpegDecodeResult, NativeJpeg } from "../native.js";
import { hashSeed, mulberry32, type Rng } from "./rng.js";

export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

const unitPair = z
  .tuple([z.number().positive(), z.number().positive()])
  .refine(([a, b]) => a <= b, "lower bound above upper bound");

export const fovSchema = z
  .object({
    /** Side of the thumbnail the border is detected on. */
    probe: z.number().int().min(16).max(2048).default(128),
    /** A pixel is inside the field of view when its brightest channel exceeds max(absolute,
     * relative × 98th percentile). */
    absolute: z.number().min(0).max(255).default(12),
    relative: z.number().min(0).max(1).default(0.12),
    /** A row/column belongs to the field of view when at least this fraction of it is inside. */
    minFraction: z.number().min(0).max(1).default(0.02),
  })
  .strict();
export type FovOptions = z.infer<typeof fovSchema>;

export const transformSchema = z
  .object({
    size: z.number().int().min(8).max(4096).default(224),
    train: z.boolean().default(false),
    scale: unitPair.default([0.9, 1.0]),
    ratio: unitPair.default([3 / 4, 4 / 3]),
    hflip: z.number().min(0).max(1).default(0.5),
    brightness: z.number().min(0).max(1).default(0.1),
    contrast: z.number().min(0).max(1).default(0.1),
    saturation: z.number().min(0).max(1).default(0.1),
    /**
     * JPEG: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the output is at least that much
     * smaller (DCT-domain downscaling, what PIL's `Image.draft` does), then resize bicubic from there;
     * false: always decode at full size (slower; the closest to torchvision on a full PIL decode).
     */
    shrinkOnLoad: z.boolean().default(true),
    /** JPEGs through the native TurboJPEG path when the addon has it (false: always sharp). */
    fastJpeg: z.boolean().default(true),
    /** Crop to the circular field of view first (true: default detection settings). */
    fov: z.union([z.boolean(), fovSchema]).default(false),
    mean: z.tuple([z.number(), z.number(), z.number()]).default([...CLIP_MEAN]),
    std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]).default([...CLIP_STD]),
  })
  .strict();
export type TransformOptions = z.input<typeof transformSchema>;
export type Transform = z.output<typeof transformSchema>;

/** Validates transform options (defaults filled in); errors name the key. */
export function parseTransform(options: TransformOptions = {}): Transform {
  const r = transformSchema.safeParse(options);
  if (!r.success) throw new TypeError(`transform: ${formatIssues(r.error)}`);
  return r.data;
}

/** The seed of one sample's augmentation in one epoch. */
export function sampleSeed(seed: number, epoch: number, index: number): number {
  return hashSeed(seed, epoch, index);
}

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface Plan {
  /** Source rectangle in image pixels (may reach past the image: the outside is black). */
  rect: Rect;
  flip: boolean;
  /** Jitter factors (1 = unchanged) and the order they apply in (0 brightness, 1 contrast, 2 saturation). */
  brightness: number;
  contrast: number;
  saturation: number;
  order: [number, number, number];
}

/** torchvision RandomResizedCrop.get_params over a region (the whole image or the field of view). */
export function randomResizedCrop(
  rng: Rng,
  region: Rect,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): Rect {
  const W = region.width;
  const H = region.height;
  const area = W * H;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const ar = Math.exp(rng.uniform(logLo, logHi));
    const w = Math.round(Math.sqrt(target * ar));
    const h = Math.round(Math.sqrt(target / ar));
    if (w > 0 && h > 0 && w <= W && h <= H) {
      const top = rng.int(0, H - h);
      const left = rng.int(0, W - w);
      return { left: region.left + left, top: region.top + top, width: w, height: h };
    }
  }
  // Fallback: central crop at the nearest allowed ratio.
  const inRatio = W / H;
  let w = W;
  let h = H;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return {
    left: region.left + Math.floor((W - w) / 2),
    top: region.top + Math.floor((H - h) / 2),
    width: w,
    height: h,
  };
}

/** Every random decision for one sample, from its seed. Evaluation plans use no randomness. */
export function planSample(t: Transform, region: Rect, seed: number): Plan {
  if (!t.train) return { rect: region, flip: false, brightness: 1, contrast: 1, saturation: 1, order: [0, 1, 2] };
  const rng = mulberry32(seed);
  const rect = randomResizedCrop(rng, region, t.scale, t.ratio);
  const flip = rng.next() < t.hflip;
  const order: [number, number, number] = [0, 1, 2];
  for (let i = 2; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const x = order[i]!;
    order[i] = order[j]!;
    order[j] = x;
  }
  const factor = (j: number) => (j > 0 ? rng.uniform(Math.max(0, 1 - j), 1 + j) : 1);
  return {
    rect,
    flip,
    brightness: factor(t.brightness),
    contrast: factor(t.contrast),
    saturation: factor(t.saturation),
    order,
  };
}

/** Input for sharp: a path or the encoded bytes. */
export type ImageSource = string | Buffer;

const JPEG_EXT = /\.(jpe?g|jpe|jfif)$/i;

/** sharp on a source, failing on what the decoders report (see below). */
export function openImage(src: ImageSource) {
  return open(src);
}

function open(src: ImageSource) {
  // failOn 'truncated' rejects truncated JPEG/PNG instead of returning a grey-filled image; JPEGs
  // fail on any libjpeg warning too (corrupt entropy-coded data would otherwise decode as grey
  // blocks). Other formats keep 'truncated': libtiff and libpng warn about harmless things.
  const jpeg = typeof src === "string" ? JPEG_EXT.test(src) : isJpeg(src);
  return sharp(src, { failOn: jpeg ? "warning" : "truncated", limitInputPixels: 1 << 28 });
}

/**
 * Shared/exclusive turns for sharp pipelines (FIFO). Decodes run shared; the retry of a failed
 * decode runs alone, so the message libvips leaves in its process-wide error buffer is its own.
 */
class DecodeGate {
  #shared = 0;
  #exclusive = false;
  readonly #queue: { exclusive: boolean; go: () => void }[] = [];

  async run<T>(fn: () => Promise<T>, exclusive = false): Promise<T> {
    if (this.#queue.length === 0 && this.#free(exclusive)) this.#take(exclusive);
    else await new Promise<void>((go) => this.#queue.push({ exclusive, go }));
    try {
      return await fn();
    } finally {
      if (exclusive) this.#exclusive = false;
      else this.#shared--;
      while (this.#queue.length > 0 && this.#free(this.#queue[0]!.exclusive)) {
        const w = this.#queue.shift()!;
        this.#take(w.exclusive);
        w.go();
      }
    }
  }

  #free(exclusive: boolean): boolean {
    return !this.#exclusive && (!exclusive || this.#shared === 0);
  }

  #take(exclusive: boolean): void {
    if (exclusive) this.#exclusive = true;
    else this.#shared++;
  }
}

const gate = new DecodeGate();

/**
 * Runs a sharp pipeline on a source with the others (shared); if it fails, runs it once more
 * alone, so the error it ends with is its own (or it succeeds, when the first message was another
 * image's). The retry reads a fresh copy of the source: libvips' operation cache keys a load on
 * the buffer (or file name), and a cached load whose pixels already failed fails again with
 * "Unknown error".
 */
export async function withSharp<T>(src: ImageSource, fn: (src: ImageSource) => Promise<T>): Promise<T> {
  try {
    return await gate.run(() => fn(src));
  } catch {
    const fresh = () => (typeof src === "string" ? readFile(src).catch(() => src) : Promise.resolve(Buffer.from(src)));
    const first = await fresh();
    try {
      return await gate.run(() => fn(first), true);
    } catch (e) {
      // sharp work outside the gate (elsewhere in the process) can still clear the buffer: once more
      if (!/unknown error/i.test((e as Error).message)) throw e;
      const second = await fresh();
      return gate.run(() => fn(second), true);
    }
  }
}

/**
 * The bounding square of the circular field of view, in image pixels, from a thumbnail of the
 * brightest channel. The square may reach past the image where the camera clipped the circle.
 * Returns the whole image when nothing is found.
 */
export async function detectFov(
  src: ImageSource,
  width: number,
  height: number,
  options: Partial<FovOptions> | true = {},
): Promise<Rect & { found: boolean }> {
  const o = fovSchema.parse(options === true ? {} : options);
  const P = o.probe;
  const { data } = await open(src)
    .flatten({ background: "#000000" })
    .toColourspace("srgb")
    .resize(P, P, { fit: "fill", kernel: "linear" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const n = P * P;
  const lum = new Uint8Array(n);
  const hist = new Uint32Array(256);
  for (let i = 0; i < n; i++) {
    const r = data[3 * i]!;
    const g = data[3 * i + 1]!;
    const b = data[3 * i + 2]!;
    const m = r > g ? (r > b ? r : b) : g > b ? g : b;
    lum[i] = m;
    hist[m]!++;
  }
  let acc = 0;
  let p98 = 255;
  for (let v = 0; v < 256; v++) {
    acc += hist[v]!;
    if (acc >= 0.98 * n) {
      p98 = v;
      break;
    }
  }
  const thr = Math.max(o.absolute, o.relative * p98);
  const rows = new Uint32Array(P);
  const cols = new Uint32Array(P);
  for (let y = 0; y < P; y++)
    for (let x = 0; x < P; x++)
      if (lum[y * P + x]! > thr) {
        rows[y]!++;
        cols[x]!++;
      }
  const need = Math.max(1, Math.ceil(o.minFraction * P));
  const first = (a: Uint32Array) => a.findIndex((c) => c >= need);
  const last = (a: Uint32Array) => {
    for (let i = a.length - 1; i >= 0; i--) if (a[i]! >= need) return i;
    return -1;
  };
  const y0 = first(rows);
  const y1 = last(rows);
  const x0 = first(cols);
  const x1 = last(cols);
  if (y0 < 0 || x0 < 0 || y1 <= y0 || x1 <= x0) return { left: 0, top: 0, width, height, found: false };
  const sx = width / P;
  const sy = height / P;
  const left = x0 * sx;
  const right = (x1 + 1) * sx;
  const top = y0 * sy;
  const bottom = (y1 + 1) * sy;
  // A circle clipped at the top and bottom is wider than tall: the square side is the larger extent.
  const side = Math.round(Math.max(right - left, bottom - top));
  const cx = (left + right) / 2;
  const cy = (top + bottom) / 2;
  return { left: Math.round(cx - side / 2), top: Math.round(cy - side / 2), width: side, height: side, found: true };
}

export interface Decoded {
  /** Source width and height (null for plain evaluation through sharp, which resizes without
   * reading the header first). */
  width: number | null;
  height: number | null;
  /** The region used (field of view or whole image; null where width is) and the plan applied. */
  region: Rect | null;
  plan: Plan;
  /** Which decoder rendered it, and why sharp did when the image was a JPEG (null otherwise). */
  decoder: "turbojpeg" | "sharp";
  fallback: string | null;
  /** The DCT scaling factor the native path decoded at (M/8); null through sharp. */
  dctScale: number | null;
}

/**
 * Decodes and preprocesses one image into `out` at `offset` (3×size×size floats, CHW, normalised).
 * Throws on missing, unreadable, corrupt or truncated input, with that image's own decoder message.
 */
export async function preprocessInto(
  src: ImageSource,
  t: Transform,
  seed: number,
  out: Float32Array,
  offset = 0,
): Promise<Decoded> {
  const S = t.size;
  if (offset < 0 || offset + 3 * S * S > out.length)
    throw new RangeError(`preprocessInto: out has ${out.length} floats, needs ${offset + 3 * S * S}`);
  let fallback: string | null = null;
  const jpeg = jpegFastPath().jpeg;
  if (jpeg && (typeof src !== "string" || JPEG_EXT.test(src))) {
    const r =
      !t.train && !t.fov && t.fastJpeg
        ? await fastEval(jpeg, src, t, out, offset)
        : await fastJpeg(jpeg, typeof src === "string" ? await readFile(src) : src, t, seed, out, offset);
    if ("plan" in r) return r;
    fallback = r.fallback;
    src = r.src;
  }
  const decoded = await withSharp(src, (s) => sharpInto(s, t, seed, out, offset));
  return { ...decoded, decoder: "sharp", fallback, dctScale: null };
}

type Fallback = { fallback: string | null; src: ImageSource };

/** A failed read of the file as the error fs would have thrown (its code classifies it: missing, unreadable). */
export function readError(r: JpegDecodeResult): Error {
  return Object.assign(new Error(r.message ?? "cannot read the file"), { code: r.code });
}

/**
 * Evaluation (the whole image, no augmentation): the native path reads the file itself on the
 * worker thread and checks its header there; JPEGs it leaves to sharp are still checked for
 * corrupt data (libjpeg's warnings), which libvips does not see.
 */
async function fastEval(
  jpeg: NativeJpeg,
  src: ImageSource,
  t: Transform,
  out: Float32Array,
  offset: number,
): Promise<Decoded | Fallback> {
  const r = await jpeg.decodeInto(src, out, offset, {
    ...WHOLE_IMAGE,
    ...NO_JITTER,
    size: t.size,
    shrink: t.shrinkOnLoad,
    table: normTable(t.mean, t.std),
  });
  const whole = { left: 0, top: 0, width: r.width, height: r.height };
  if (r.status === "ok") {
    const plan = planSample(t, whole, 0);
    return {
      width: r.width,
      height: r.height,
      region: whole,
      plan,
      decoder: "turbojpeg",
      fallback: null,
      dctScale: r.scale,
    };
  }
  if (r.status === "corrupt") throw new Error(`corrupt JPEG: ${r.message ?? "libjpeg warning"}`);
  if (r.code) throw readError(r);
  if (r.status === "fallback" && r.width > 0) {
    const bytes = typeof src === "string" ? await readFile(src) : src;
    await validateJpeg(jpeg, bytes);
    return { fallback: r.message ?? "fallback", src: bytes };
  }
  return { fallback: r.status === "error" ? `TurboJPEG: ${r.message ?? "error"}` : null, src };
}

/** Throws when libjpeg reports the JPEG's data corrupt (what sharp's decoder does not see). */
export async function validateJpeg(jpeg: NativeJpeg, bytes: Buffer): Promise<void> {
  const v = await jpeg.validate(bytes);
  if (v.status === "corrupt") throw new Error(`corrupt JPEG: ${v.message ?? "libjpeg warning"}`);
}

/** The native path for a JPEG in memory: the decoded sample, or why sharp should take it (not a JPEG: null). */
async function fastJpeg(
  jpeg: NativeJpeg,
  bytes: Buffer,
  t: Transform,
  seed: number,
  out: Float32Array,
  offset: number,
): Promise<Decoded | Fallback> {
  const info = jpeg.inspect(bytes);
  if (!info.jpeg) return { fallback: null, src: bytes };
  const why =
    info.fallback ?? (t.fov ? "field-of-view crop (sharp detects it)" : !t.fastJpeg ? "fastJpeg: false" : null);
  if (why) {
    // sharp renders it; libjpeg's warnings about its data are still reported (libvips misses them).
    await validateJpeg(jpeg, bytes);
    return { fallback: why, src: bytes };
  }
  const region: Rect = { left: 0, top: 0, width: info.width, height: info.height };
  const plan = planSample(t, region, seed);
  const r = await jpeg.decodeInto(bytes, out, offset, {
    ...WHOLE_IMAGE,
    size: t.size,
    ...plan.rect,
    flip: plan.flip,
    shrink: t.shrinkOnLoad,
    brightness: plan.brightness,
    contrast: plan.contrast,
    saturation: plan.saturation,
    order: plan.order,
    table: normTable(t.mean, t.std),
  });
  if (r.status === "ok")
    return { width: r.width, height: r.height, region, plan, decoder: "turbojpeg", fallback: null, dctScale: r.scale };
  if (r.status === "corrupt") throw new Error(`corrupt JPEG: ${r.message ?? "libjpeg warning"}`);
  return { fallback: `TurboJPEG: ${r.message ?? r.status}`, src: bytes };
}

/** The sharp (libvips) path: any format sharp reads. */
async function sharpInto(
  src: ImageSource,
  t: Transform,
  seed: number,
  out: Float32Array,
  offset: number,
): Promise<Omit<Decoded, "decoder" | "fallback" | "dctScale">> {
  const S = t.size;
  if (!t.train && !t.fov && t.shrinkOnLoad) {
    // Evaluation: one libvips pass (decode, squash-resize), no header read beforehand.
    const plan = planSample(t, { left: 0, top: 0, width: 0, height: 0 }, seed);
    const { data, info } = await open(src)
      .flatten({ background: "#000000" })
      .toColourspace("srgb")
      .resize(S, S, { fit: "fill", kernel: "cubic" })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== S || info.height !== S)
      throw new Error(`decoder returned ${info.width}×${info.height}×${info.channels}, expected ${S}×${S}×3`);
    writeNormalized(data, S, plan, t, out, offset);
    return { width: null, height: null, region: null, plan };
  }
  const meta = await open(src).metadata();
  const W = meta.width;
  const H = meta.height;
  if (!W || !H) throw new Error("image has no dimensions");
  const whole: Rect = { left: 0, top: 0, width: W, height: H };
  const region = t.fov ? await detectFov(src, W, H, t.fov) : whole;
  const plan = planSample(t, region, seed);
  const rgb = await renderRect(src, plan.rect, W, H, S, plan.flip, t.shrinkOnLoad);
  writeNormalized(rgb, S, plan, t, out, offset);
  return { width: W, height: H, region, plan };
}

/** Preprocesses one image into a new Float32Array [3, size, size]. */
export async function preprocess(
  src: ImageSource,
  options: TransformOptions | Transform = {},
  seed = 0,
): Promise<Float32Array> {
  const t = parseTransform(options as TransformOptions);
  const out = new Float32Array(3 * t.size * t.size);
  await preprocessInto(src, t, seed, out, 0);
  return out;
}

/**
 * The 8-bit RGB pixels (HWC, size×size) of a source rectangle squashed to size×size. The part of
 * the rectangle outside the image is black. One decode: libvips streams the file through the crop
 * and resize (JPEGs shrink while decoding unless `shrinkOnLoad` is false).
 */
export async function renderRect(
  src: ImageSource,
  rect: Rect,
  W: number,
  H: number,
  S: number,
  flip: boolean,
  shrinkOnLoad = true,
): Promise<Buffer> {
  let img = open(src).flatten({ background: "#000000" }).toColourspace("srgb");
  const c = clipRect(rect, W, H);
  if (c.x1 <= c.x0 || c.y1 <= c.y0) throw new RangeError("crop rectangle lies outside the image");
  const whole = c.x0 === 0 && c.y0 === 0 && c.x1 === W && c.y1 === H;
  const insideImage = rect.left >= 0 && rect.top >= 0 && rect.left + rect.width <= W && rect.top + rect.height <= H;
  if (shrinkOnLoad && !whole && insideImage) {
    // Resize the whole image so the rectangle becomes size×size, then cut it out: resizing first
    // lets libvips shrink JPEGs while decoding (a 2048² JPEG decodes at 1/8 scale for 224 output).
    const sx = S / rect.width;
    const sy = S / rect.height;
    const RW = Math.max(S, Math.round(W * sx));
    const RH = Math.max(S, Math.round(H * sy));
    const left = Math.min(RW - S, Math.max(0, Math.round(rect.left * sx)));
    const top = Math.min(RH - S, Math.max(0, Math.round(rect.top * sy)));
    img = img.resize(RW, RH, { fit: "fill", kernel: "cubic" }).extract({ left, top, width: S, height: S });
    return rawSquare(img, S, flip);
  }
  // Crop, then resize (torchvision's order). Any extract before the resize turns sharp's JPEG
  // shrink-on-load off: without `shrinkOnLoad` the whole image is "extracted" for that.
  if (!whole || !shrinkOnLoad) img = img.extract({ left: c.x0, top: c.y0, width: c.x1 - c.x0, height: c.y1 - c.y0 });
  return rawSquare(resizePadded(img, rect, c, S, S), S, flip);
}

/** sharp's S×S RGB output as bytes (mirrored when `flip`), checked for its shape. */
async function rawSquare(img: Sharp, S: number, flip: boolean): Promise<Buffer> {
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== S || info.height !== S)
    throw new Error(`decoder returned ${info.width}×${info.height}×${info.channels}, expected ${S}×${S}×3`);
  if (flip) mirrorRows(data, S);
  return data;
}

/** The part of `r` inside a W×H image: columns x0..x1, rows y0..y1 (exclusive ends). */
export interface Clipped {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export function clipRect(r: Rect, W: number, H: number): Clipped {
  return {
    x0: Math.max(0, r.left),
    y0: Math.max(0, r.top),
    x1: Math.min(W, r.left + r.width),
    y1: Math.min(H, r.top + r.height),
  };
}

/**
 * `img`, the part `c` of rectangle `r` already cut out, resized (bicubic) to where that part falls
 * in an outW×outH rendering of the whole rectangle, and padded with black to outW×outH: the
 * rectangle's outside is black. Shared by the loader's and the packer's sharp paths.
 */
export function resizePadded(img: Sharp, r: Rect, c: Clipped, outW: number, outH: number): Sharp {
  const sx = outW / r.width;
  const sy = outH / r.height;
  const padL = Math.round((c.x0 - r.left) * sx);
  const padT = Math.round((c.y0 - r.top) * sy);
  const rw = Math.max(1, Math.min(outW - padL, Math.round((c.x1 - c.x0) * sx)));
  const rh = Math.max(1, Math.min(outH - padT, Math.round((c.y1 - c.y0) * sy)));
  img = img.resize(rw, rh, { fit: "fill", kernel: "cubic" });
  if (rw === outW && rh === outH) return img;
  return img.extend({
    left: padL,
    top: padT,
    right: outW - padL - rw,
    bottom: outH - padT - rh,
    background: { r: 0, g: 0, b: 0 },
  });
}

/**
 * Mirrors S×S 8-bit RGB left-right, in place. The flip is done here, after crop and resize
 * (torchvision's order): sharp applies `flop()` before its resize and post-resize extract, which
 * would mirror the crop's position too, and before `extend`, which would pad the wrong side.
 */
function mirrorRows(rgb: Uint8Array, S: number): void {
  for (let y = 0; y < S; y++) {
    const row = y * S * 3;
    for (let a = 0, b = S - 1; a < b; a++, b--) {
      const i = row + 3 * a;
      const j = row + 3 * b;
      for (let c = 0; c < 3; c++) {
        const x = rgb[i + c]!;
        rgb[i + c] = rgb[j + c]!;
        rgb[j + c] = x;
      }
    }
  }
}

/**
 * Float32 normalisation tables (3 × 256): exactly torchvision's ToTensor (`v / 255` in float32)
 * followed by Normalize (`(x − mean) / std` in float32), so an 8-bit pixel maps to the same float
 * bits as in PyTorch.
 */
const normTables = new Map<string, Float32Array>();
export function normTable(mean: readonly number[], std: readonly number[]): Float32Array {
  const key = `${mean.join(",")}|${std.join(",")}`;
  let t = normTables.get(key);
  if (t) return t;
  t = new Float32Array(768);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(mean[c]!);
    const s = f(std[c]!);
    for (let v = 0; v < 256; v++) t[c * 256 + v] = f(f(f(v / 255) - m) / s);
  }
  if (normTables.size > 16) normTables.clear();
  normTables.set(key, t);
  return t;
}

/**
 * PIL's `Image.blend(a, b, alpha)` for one 8-bit value: `a + alpha·(b − a)` in float32, truncated,
 * clipped to 0..255 (Pillow's ImagingBlend; alpha is passed as a C float).
 */
function blend8(a: number, b: number, alpha32: number): number {
  const v = Math.fround(a + Math.fround(alpha32 * (b - a)));
  return v <= 0 ? 0 : v >= 255 ? 255 : v | 0;
}

/** Pillow's RGB → L conversion (ITU-R 601-2 in 16-bit fixed point, rounded). */
function luma8(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/** blend8 as a table over the second argument (the first fixed). */
function blendTable(a: number, alpha: number): Uint8Array {
  const lut = new Uint8Array(256);
  const a32 = Math.fround(alpha);
  for (let v = 0; v < 256; v++) lut[v] = blend8(a, v, a32);
  return lut;
}

/**
 * Colour jitter on 8-bit RGB (HWC), in place, in the plan's order, with the semantics torchvision
 * gives PIL images (ImageEnhance.Brightness / Contrast / Color: each step blends with a degenerate
 * image and rounds back to 8 bits): brightness blends with black, contrast with the rounded mean
 * luma, saturation with each pixel's luma.
 */
export function jitter8(rgb: Uint8Array, plan: Pick<Plan, "brightness" | "contrast" | "saturation" | "order">): void {
  const len = rgb.length - (rgb.length % 3);
  for (const op of plan.order) {
    if (op === 0 && plan.brightness !== 1) {
      const lut = blendTable(0, plan.brightness);
      for (let i = 0; i < len; i++) rgb[i] = lut[rgb[i]!]!;
    } else if (op === 1 && plan.contrast !== 1) {
      let sum = 0;
      for (let j = 0; j < len; j += 3) sum += luma8(rgb[j]!, rgb[j + 1]!, rgb[j + 2]!);
      // ImageStat mean of the L image, then int(mean + 0.5).
      const mean = Math.floor(sum / (len / 3) + 0.5);
      const lut = blendTable(mean, plan.contrast);
      for (let i = 0; i < len; i++) rgb[i] = lut[rgb[i]!]!;
    } else if (op === 2 && plan.saturation !== 1) {
      const a32 = Math.fround(plan.saturation);
      for (let j = 0; j < len; j += 3) {
        const r = rgb[j]!;
        const g = rgb[j + 1]!;
        const b = rgb[j + 2]!;
        const l = luma8(r, g, b);
        rgb[j] = blend8(l, r, a32);
        rgb[j + 1] = blend8(l, g, a32);
        rgb[j + 2] = blend8(l, b, a32);
      }
    }
  }
}

/**
 * Colour jitter (as torchvision does on PIL images, see jitter8), then ToTensor + Normalize into
 * CHW float32 at `offset`, in one table-driven pass. `rgb` is modified when the plan jitters.
 */
export function writeNormalized(
  rgb: Uint8Array,
  S: number,
  plan: Plan,
  t: Pick<Transform, "mean" | "std">,
  out: Float32Array,
  offset: number,
): void {
  const n = S * S;
  if (rgb.length < 3 * n) throw new RangeError(`writeNormalized: ${rgb.length} bytes, needs ${3 * n}`);
  if (plan.brightness !== 1 || plan.contrast !== 1 || plan.saturation !== 1)
    jitter8(rgb.length === 3 * n ? rgb : rgb.subarray(0, 3 * n), plan);
  const lut = normTable(t.mean, t.std);
  const o0 = out.subarray(offset, offset + n);
  const o1 = out.subarray(offset + n, offset + 2 * n);
  const o2 = out.subarray(offset + 2 * n, offset + 3 * n);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    o0[i] = lut[rgb[j]!]!;
    o1[i] = lut[256 + rgb[j + 1]!]!;
    o2[i] = lut[512 + rgb[j + 2]!]!;
  }
}
