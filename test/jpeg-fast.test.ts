import test from "ava";
import sharp, { type JpegOptions } from "sharp";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { native } from "../lib/native.js";
import { inspectJpeg, jpegFastPath, NO_JITTER, WHOLE_IMAGE } from "../lib/data/jpeg.js";
import { Loader } from "../lib/data/loader.js";
import { samplesFromFiles } from "../lib/data/manifest.js";
import {
  CLIP_MEAN,
  CLIP_STD,
  jitter8,
  normTable,
  parseTransform,
  preprocess,
  preprocessInto,
  type TransformOptions,
} from "../lib/data/transforms.js";
import { mulberry32 } from "../lib/data/rng.js";
import { renderFundus } from "../lib/synth/index.js";

const fast = jpegFastPath();

/** Mean and max |Δ| in 8-bit units between two normalised CHW outputs. */
function diff8(a: Float32Array, b: Float32Array, S: number): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) * CLIP_STD[Math.floor(i / (S * S))]! * 255;
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

async function fundusJpeg(side: number, seed: number, options: JpegOptions = {}): Promise<Buffer> {
  const img = renderFundus({ size: 512, seed, eye: "left", findings: { hemorrhage: "asserted" }, cdr: 0.4 });
  return sharp(Buffer.from(img.rgb), { raw: { width: 512, height: 512, channels: 3 } })
    .resize(side, side)
    .jpeg({ quality: 92, ...options })
    .toBuffer();
}

/** A JPEG whose entropy-coded data has 64 bytes scrambled in the middle of the scan. */
function scramble(jpg: Buffer): Buffer {
  let sos = 2;
  while (!(jpg[sos] === 0xff && jpg[sos + 1] === 0xda)) sos++;
  const start = sos + 2 + ((jpg[sos + 2]! << 8) | jpg[sos + 3]!);
  const bad = Buffer.from(jpg);
  const a = start + Math.floor((jpg.length - start) * 0.4);
  for (let i = a; i < a + 64; i++) bad[i] = bad[i]! ^ 0x5a;
  return bad;
}

test("the addon has the TurboJPEG path here (doctor reports it otherwise)", (t) => {
  t.is(fast.reason, null);
  t.truthy(fast.jpeg);
  t.regex(native().jpeg.openmp ?? "", /omp/);
});

test("evaluation: the native path matches sharp's output within the data tests' parity", async (t) => {
  // Measured: 2048² → 224 mean 0.12, max 1; 1024² → 224 mean 0.41, max 12 (8-bit units): the
  // remaining difference is libvips' cubic reducer against LibTorch's antialiased bicubic.
  for (const [side, S, mean, max] of [
    [2048, 224, 0.3, 4],
    [1024, 224, 0.8, 20],
    [2048, 64, 0.8, 10],
  ] as const) {
    const jpg = await fundusJpeg(side, side);
    const out = new Float32Array(3 * S * S);
    const d = await preprocessInto(jpg, parseTransform({ size: S }), 0, out);
    t.is(d.decoder, "turbojpeg");
    t.is(d.dctScale, side === 1024 ? 0.25 : 0.125);
    const ref = await preprocess(jpg, { size: S, fastJpeg: false });
    const e = diff8(out, ref, S);
    t.true(e.mean <= mean && e.max <= max, `${side} → ${S}: mean ${e.mean}, max ${e.max}`);
  }
});

test("training: same plan as sharp (crop, flip, jitter), outputs within a pixel's shift", async (t) => {
  const jpg = await fundusJpeg(2048, 7);
  const S = 224;
  for (let seed = 0; seed < 6; seed++) {
    const a = new Float32Array(3 * S * S);
    const b = new Float32Array(3 * S * S);
    const da = await preprocessInto(jpg, parseTransform({ size: S, train: true }), seed, a);
    const db = await preprocessInto(jpg, parseTransform({ size: S, train: true, fastJpeg: false }), seed, b);
    t.is(da.decoder, "turbojpeg");
    t.is(db.decoder, "sharp");
    t.deepEqual(da.plan, db.plan);
    // Measured mean 0.7–1.6 (8-bit units): both round the crop to the decoded 1/8 grid.
    const e = diff8(a, b, S);
    t.true(e.mean <= 3, `seed ${seed}: mean ${e.mean}, max ${e.max}`);
  }
  // A whole-image "crop" is the evaluation case: the two agree closely.
  const whole: TransformOptions = { size: S, train: true, scale: [1, 1], ratio: [1, 1], hflip: 1 };
  const a = await preprocess(jpg, whole, 3);
  const b = await preprocess(jpg, { ...whole, fastJpeg: false }, 3);
  const e = diff8(a, b, S);
  t.true(e.mean <= 0.3 && e.max <= 4, `whole image, flipped and jittered: mean ${e.mean}, max ${e.max}`);
});

test("the resize kernel computes LibTorch's _upsample_bicubic2d_aa (within a rounding step)", async (t) => {
  const { jpeg } = native();
  const table = normTable(CLIP_MEAN, CLIP_STD);
  const rng = mulberry32(4);
  for (const [side, S] of [
    [2048, 224],
    [1000, 224],
    [300, 224],
    [180, 224], // enlarging
    [640, 37],
  ] as const) {
    const jpg = await fundusJpeg(side, side + S);
    for (let k = 0; k < 3; k++) {
      const w = Math.round(side * rng.uniform(0.6, 1));
      const h = Math.round(side * rng.uniform(0.6, 1));
      const plan = {
        ...WHOLE_IMAGE,
        ...NO_JITTER,
        size: S,
        table,
        left: rng.int(0, side - w),
        top: rng.int(0, side - h),
        width: w,
        height: h,
        flip: k === 1,
      };
      const a = new Float32Array(3 * S * S);
      const b = new Float32Array(3 * S * S);
      await jpeg.decodeInto(jpg, a, 0, plan);
      await jpeg.decodeInto(jpg, b, 0, { ...plan, resampler: "libtorch" });
      const e = diff8(a, b, S);
      t.true(e.max <= 1.01 && e.mean < 0.02, `${side} → ${S}, crop ${w}×${h}: mean ${e.mean}, max ${e.max}`);
    }
  }
  const jpg = await fundusJpeg(1024, 9);
  const a = await jpeg.resize(jpg, { ...WHOLE_IMAGE, outWidth: 300, outHeight: 260, shortSide: 0, quality: 95 });
  const b = await jpeg.resize(jpg, {
    ...WHOLE_IMAGE,
    outWidth: 300,
    outHeight: 260,
    shortSide: 0,
    quality: 95,
    resampler: "libtorch",
  });
  const ra = await sharp(a.data!).raw().toBuffer();
  const rb = await sharp(b.data!).raw().toBuffer();
  let max = 0;
  for (let i = 0; i < ra.length; i++) max = Math.max(max, Math.abs(ra[i]! - rb[i]!));
  t.true(max <= 3, `packer resize: max ${max} after JPEG encoding`);
});

test("the native colour jitter is the JS one (torchvision's PIL semantics) byte for byte", (t) => {
  const rng = mulberry32(9);
  for (let k = 0; k < 60; k++) {
    const rgb = new Uint8Array(3 * (1 + Math.floor(rng.next() * 300)));
    for (let i = 0; i < rgb.length; i++) rgb[i] = Math.floor(rng.next() * 256);
    const order = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ][k % 6] as [number, number, number];
    const plan = {
      brightness: rng.uniform(0.8, 1.2),
      contrast: rng.uniform(0.8, 1.2),
      saturation: rng.uniform(0.8, 1.2),
      order,
    };
    const js = Uint8Array.from(rgb);
    jitter8(js, plan);
    const cc = Uint8Array.from(rgb);
    native().jpeg.jitter(cc, plan);
    t.deepEqual(cc, js, `case ${k}`);
  }
});

test("decode scale: the largest DCT reduction that still covers the output; shrinkOnLoad: \
false decodes in full", async (t) => {
  const jpg = await fundusJpeg(1000, 2);
  const S = 64;
  const out = new Float32Array(3 * S * S);
  t.is((await preprocessInto(jpg, parseTransform({ size: S }), 0, out)).dctScale, 0.125); // 125 ≥ 64
  t.is((await preprocessInto(jpg, parseTransform({ size: 200 }), 0, new Float32Array(3 * 200 * 200))).dctScale, 0.25);
  t.is((await preprocessInto(jpg, parseTransform({ size: S, shrinkOnLoad: false }), 0, out)).dctScale, 1);
});

test("CMYK, EXIF-rotated and non-sRGB JPEGs fall back to sharp with the same result", async (t) => {
  const img = renderFundus({ size: 96, seed: 4, eye: "right", findings: {}, cdr: 0.5 });
  const raw = () => sharp(Buffer.from(img.rgb), { raw: { width: 96, height: 96, channels: 3 } });
  const cases: [string, Buffer, RegExp][] = [
    ["cmyk", await raw().toColourspace("cmyk").jpeg().toBuffer(), /CMYK/],
    ["exif", await raw().withMetadata({ orientation: 6 }).jpeg().toBuffer(), /EXIF orientation 6/],
    ["p3", await raw().withIccProfile("p3").jpeg().toBuffer(), /ICC/],
  ];
  for (const train of [false, true]) {
    const tr = parseTransform({ size: 32, train });
    const ts = parseTransform({ size: 32, train, fastJpeg: false });
    for (const [name, buf, why] of cases) {
      const a = new Float32Array(3 * 32 * 32);
      const b = new Float32Array(3 * 32 * 32);
      const d = await preprocessInto(buf, tr, 5, a);
      await preprocessInto(buf, ts, 5, b);
      t.is(d.decoder, "sharp", name);
      t.regex(d.fallback ?? "", why, name);
      t.deepEqual(a, b, `${name}: same as sharp`);
    }
  }
  t.is(inspectJpeg(cases[0]![1])!.components, 4);
});

test("grayscale, progressive and 4:4:4 JPEGs take the native path and agree with sharp", async (t) => {
  const img = renderFundus({ size: 200, seed: 8, eye: "left", findings: {}, cdr: 0.4 });
  const rgb = sharp(Buffer.from(img.rgb), { raw: { width: 200, height: 200, channels: 3 } });
  const gray = Buffer.from(img.rgb.filter((_, i) => i % 3 === 1));
  const bufs: [string, Buffer][] = [
    [
      "gray",
      await sharp(gray, { raw: { width: 200, height: 200, channels: 1 } })
        .toColourspace("b-w")
        .jpeg()
        .toBuffer(),
    ],
    ["progressive", await rgb.clone().jpeg({ progressive: true }).toBuffer()],
    ["4:4:4", await rgb.clone().jpeg({ chromaSubsampling: "4:4:4" }).toBuffer()],
  ];
  for (const [name, buf] of bufs) {
    const a = new Float32Array(3 * 64 * 64);
    const d = await preprocessInto(buf, parseTransform({ size: 64 }), 0, a);
    t.is(d.decoder, "turbojpeg", name);
    const e = diff8(a, await preprocess(buf, { size: 64, fastJpeg: false }), 64);
    t.true(e.mean <= 1.5, `${name}: mean ${e.mean}, max ${e.max}`);
  }
  t.is(inspectJpeg(bufs[0]![1])!.components, 1);
});

test("a JPEG with corrupted entropy data is reported, not embedded, on both paths and in the loader", async (t) => {
  const bad = scramble(await fundusJpeg(256, 3));
  for (const fastJpeg of [true, false])
    await t.throwsAsync(preprocess(bad, { size: 64, fastJpeg }), { message: /corrupt JPEG: Corrupt JPEG data/ });
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-jpeg-"));
  const good = path.join(dir, "good.jpg");
  const corrupt = path.join(dir, "corrupt.jpg");
  writeFileSync(good, await fundusJpeg(256, 4));
  writeFileSync(corrupt, bad);
  const lines: string[] = [];
  const loader = new Loader(samplesFromFiles([good, corrupt]), {
    batchSize: 2,
    shuffle: false,
    transform: { size: 32 },
    log: (l) => lines.push(l),
  });
  const ids: string[] = [];
  for await (const b of loader.epoch(0)) ids.push(...b.ids);
  t.deepEqual(ids, ["good.jpg"]);
  t.is(loader.stats.byReason.corrupt, 1);
  t.regex(lines.join("\n"), /corrupt\.jpg.*corrupt: corrupt JPEG: Corrupt JPEG data/);
});

// Serial: the other tests of this file make images with sharp outside the loader's decode gate.
test.serial("images with different decode errors decoded at once each get their own error", async (t) => {
  const img = renderFundus({ size: 128, seed: 6, eye: "left", findings: {}, cdr: 0.4 });
  const src = () => sharp(Buffer.from(img.rgb), { raw: { width: 128, height: 128, channels: 3 } });
  const half = (b: Buffer) => b.subarray(0, b.length >> 1);
  const kinds: [string, Buffer, RegExp, RegExp][] = [
    ["png", half(await src().png().toBuffer()), /png/i, /jpe?g|webp/i],
    ["webp", half(await src().webp().toBuffer()), /webp/i, /jpe?g|png/i],
    ["jpeg", half(await src().jpeg().toBuffer()), /jpe?g/i, /png|webp/i],
    ["corrupt jpeg", scramble(await src().jpeg().toBuffer()), /Corrupt JPEG data/, /png|webp/i],
  ];
  for (const fastJpeg of [true, false]) {
    const jobs = [];
    for (let k = 0; k < 8; k++)
      for (const [name, buf, own, other] of kinds)
        jobs.push(
          preprocess(buf, { size: 32, fastJpeg }).then(
            () => ({ name, message: "decoded", own, other }),
            (e: Error) => ({ name, message: e.message, own, other }),
          ),
        );
    for (const r of await Promise.all(jobs)) {
      t.regex(r.message, r.own, `${r.name}: ${r.message}`);
      t.notRegex(r.message, r.other, `${r.name}: ${r.message}`);
    }
  }
});

test("bad arguments to the native decoder are TypeErrors and RangeErrors naming them", async (t) => {
  const { jpeg } = native();
  const jpg = await fundusJpeg(64, 1);
  const table = normTable(CLIP_MEAN, CLIP_STD);
  const out = new Float32Array(3 * 16 * 16);
  const plan16 = { ...WHOLE_IMAGE, ...NO_JITTER, size: 16, table };
  await t.throwsAsync(jpeg.decodeInto(42 as never, out, 0, plan16), {
    instanceOf: TypeError,
    message: /src/,
  });
  await t.throwsAsync(jpeg.decodeInto("", out, 0, plan16), {
    instanceOf: TypeError,
    message: /src/,
  });
  await t.throwsAsync(jpeg.decodeInto(new Uint8Array(0), out, 0, plan16), {
    instanceOf: RangeError,
    message: /src/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, new Float64Array(4) as never, 0, plan16), {
    instanceOf: TypeError,
    message: /out/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 1, plan16), {
    instanceOf: RangeError,
    message: /out/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, table: new Float32Array(3) }), {
    instanceOf: TypeError,
    message: /options\.table/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, order: [0, 0, 1] }), {
    instanceOf: RangeError,
    message: /options\.order/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, width: 5 }), {
    instanceOf: RangeError,
    message: /width\/height/,
  });
  // every key of the plan is required and typed: the addon has no defaults of its own (lib/data/jpeg.ts has them)
  const { flip: _flip, ...noFlip } = plan16;
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, noFlip as never), {
    instanceOf: TypeError,
    message: /options\.flip/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, shrink: "no" as never }), {
    instanceOf: TypeError,
    message: /options\.shrink/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, brightness: "1" as never }), {
    instanceOf: TypeError,
    message: /options\.brightness/,
  });
  await t.throwsAsync(jpeg.decodeInto(jpg, out, 0, { ...plan16, resampler: "pil" as never }), {
    instanceOf: RangeError,
    message: /options\.resampler/,
  });
  const { quality: _q, ...noQuality } = { ...WHOLE_IMAGE, outWidth: 8, outHeight: 8, shortSide: 0, quality: 90 };
  await t.throwsAsync(jpeg.resize(jpg, noQuality as never), { instanceOf: TypeError, message: /options\.quality/ });
  const r = await jpeg.decodeInto(Buffer.from("not a jpeg at all"), out, 0, plan16);
  t.is(r.status, "fallback");
  t.is(r.message, "not a JPEG");
  t.throws(() => jpeg.inspect("x" as never), { instanceOf: TypeError, message: /bytes/ });
});

test("a file path is read on the worker thread: same output as the bytes; a missing file is ENOENT", async (t) => {
  const { jpeg } = native();
  const jpg = await fundusJpeg(300, 4);
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-jpeg-path-"));
  const file = path.join(dir, "a.jpg");
  writeFileSync(file, jpg);
  const table = normTable(CLIP_MEAN, CLIP_STD);
  const a = new Float32Array(3 * 32 * 32);
  const b = new Float32Array(3 * 32 * 32);
  const ra = await jpeg.decodeInto(jpg, a, 0, { ...WHOLE_IMAGE, ...NO_JITTER, size: 32, table });
  const rb = await jpeg.decodeInto(file, b, 0, { ...WHOLE_IMAGE, ...NO_JITTER, size: 32, table });
  t.is(ra.status, "ok");
  t.deepEqual(rb, ra);
  t.deepEqual(b, a);
  const missing = await jpeg.decodeInto(path.join(dir, "none.jpg"), b, 0, {
    ...WHOLE_IMAGE,
    ...NO_JITTER,
    size: 32,
    table,
  });
  t.is(missing.status, "error");
  t.is(missing.code, "ENOENT");
  t.regex(missing.message!, /none\.jpg/);
  writeFileSync(path.join(dir, "b.jpg"), "plain text");
  const text = await jpeg.decodeInto(path.join(dir, "b.jpg"), b, 0, { ...WHOLE_IMAGE, ...NO_JITTER, size: 32, table });
  t.is(text.status, "fallback");
  // Through the transform: a missing file is the error fs would throw (the loader reports it as missing).
  await t.throwsAsync(preprocess(path.join(dir, "none.jpg"), { size: 32 }), { message: /ENOENT/ });
  const via = new Float32Array(3 * 32 * 32);
  t.is((await preprocessInto(file, parseTransform({ size: 32 }), 0, via, 0)).decoder, "turbojpeg");
  t.deepEqual(via, await preprocess(jpg, { size: 32 }));
});

test("the packer's resize from a file path: read on the worker, sized by shortSide, as from memory", async (t) => {
  const { jpeg } = native();
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-jpeg-resize-"));
  const wide = await sharp(await fundusJpeg(400, 7))
    .resize(401, 300, { fit: "fill" })
    .jpeg({ quality: 92 })
    .toBuffer();
  const file = path.join(dir, "wide.jpg");
  writeFileSync(file, wide);
  const q = { quality: 90 };
  // short side 128 of 401×300: 171×128 (Math.round(401 × 128 / 300) = 171.09 → 171)
  const byPath = await jpeg.resize(file, { ...WHOLE_IMAGE, outWidth: 0, outHeight: 0, shortSide: 128, ...q });
  const fromBytes = await jpeg.resize(wide, { ...WHOLE_IMAGE, outWidth: 171, outHeight: 128, shortSide: 0, ...q });
  t.is(byPath.status, "ok");
  t.deepEqual(
    await sharp(byPath.data!)
      .metadata()
      .then((m) => [m.width, m.height]),
    [171, 128],
  );
  t.deepEqual(Buffer.from(byPath.data!), Buffer.from(fromBytes.data!));
  // never enlarged: a short side above the image's keeps its size
  const same = await jpeg.resize(file, { ...WHOLE_IMAGE, outWidth: 0, outHeight: 0, shortSide: 1000, ...q });
  t.deepEqual(
    await sharp(same.data!)
      .metadata()
      .then((m) => [m.width, m.height]),
    [401, 300],
  );
  // a crop's short side, not the image's
  const crop = { left: 50, top: 20, width: 200, height: 250 };
  const cropped = await jpeg.resize(file, { ...WHOLE_IMAGE, ...crop, outWidth: 0, outHeight: 0, shortSide: 100, ...q });
  t.deepEqual(
    await sharp(cropped.data!)
      .metadata()
      .then((m) => [m.width, m.height]),
    [100, 125],
  );
  // what the fast path leaves to sharp, a missing file, the options
  const cmyk = path.join(dir, "cmyk.jpg");
  writeFileSync(cmyk, await sharp(wide).toColourspace("cmyk").jpeg().toBuffer());
  const opts = { ...WHOLE_IMAGE, outWidth: 0, outHeight: 0, shortSide: 64, ...q };
  const fb = await jpeg.resize(cmyk, opts);
  t.is(fb.status, "fallback");
  t.regex(fb.message!, /CMYK/);
  t.is((await jpeg.resize(wide, { ...opts, shortSide: 0, outWidth: 8, outHeight: 8 })).status, "ok");
  const missing = await jpeg.resize(path.join(dir, "none.jpg"), opts);
  t.is(missing.code, "ENOENT");
  await t.throwsAsync(jpeg.resize(file, { ...opts, outWidth: 64 }), { instanceOf: RangeError, message: /shortSide/ });
  await t.throwsAsync(jpeg.resize(file, { ...opts, shortSide: 0 }), { instanceOf: RangeError, message: /outWidth/ });
  await t.throwsAsync(jpeg.resize("", opts), { instanceOf: TypeError, message: /empty path/ });
});
