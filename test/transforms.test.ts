import test from "ava";
import sharp from "sharp";
import { readdirSync } from "node:fs";
import {
  CLIP_MEAN,
  CLIP_STD,
  detectFov,
  jitter8,
  normTable,
  parseTransform,
  planSample,
  preprocess,
  preprocessInto,
  randomResizedCrop,
  sampleSeed,
  writeNormalized,
} from "../lib/data/transforms.js";
import { mulberry32 } from "../lib/data/rng.js";
import { renderFundus } from "../lib/synth/index.js";
import { hasShared, sharedPath } from "./helpers/shared.js";

const S = 32;
const norm = (v: number, c: 0 | 1 | 2) => (v / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
const close = (a: number, b: number, eps = 1e-5) => Math.abs(a - b) <= eps;

function gradient(w: number, h: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = 3 * (y * w + x);
      b[i] = (x * 255) / (w - 1);
      b[i + 1] = (y * 255) / (h - 1);
      b[i + 2] = ((x + y) * 7) % 256;
    }
  return b;
}

async function png(raw: Buffer, w: number, h: number, channels: 1 | 3 | 4 = 3): Promise<Buffer> {
  return sharp(raw, { raw: { width: w, height: h, channels } })
    .png()
    .toBuffer();
}

test("layout is CHW and normalised with the CLIP mean and std", async (t) => {
  const red = Buffer.alloc(40 * 30 * 3);
  for (let i = 0; i < 40 * 30; i++) red[3 * i] = 255;
  const out = await preprocess(await png(red, 40, 30), { size: S });
  t.is(out.length, 3 * S * S);
  // Plane 0 is red (1.0), planes 1 and 2 are 0.
  t.true(out.subarray(0, S * S).every((v) => close(v, norm(255, 0))));
  t.true(out.subarray(S * S, 2 * S * S).every((v) => close(v, norm(0, 1))));
  t.true(out.subarray(2 * S * S).every((v) => close(v, norm(0, 2))));
});

test("training transforms are deterministic per seed and differ across seeds; \
evaluation ignores the seed", async (t) => {
  const img = await png(gradient(120, 90), 120, 90);
  const tr = parseTransform({ size: S, train: true });
  const a = await preprocess(img, tr, 1234);
  const b = await preprocess(img, tr, 1234);
  const c = await preprocess(img, tr, 1235);
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  const e1 = await preprocess(img, { size: S }, 1);
  const e2 = await preprocess(img, { size: S }, 2);
  t.deepEqual(e1, e2);
  t.notDeepEqual(a, e1);
  // Values stay inside the normalised range of [0, 1] inputs.
  for (const arr of [a, c, e1])
    for (let ch = 0; ch < 3; ch++) {
      const lo = (0 - CLIP_MEAN[ch]!) / CLIP_STD[ch]! - 1e-5;
      const hi = (1 - CLIP_MEAN[ch]!) / CLIP_STD[ch]! + 1e-5;
      t.true(arr.subarray(ch * S * S, (ch + 1) * S * S).every((v) => v >= lo && v <= hi));
    }
  t.not(sampleSeed(1, 0, 5), sampleSeed(1, 1, 5));
  t.not(sampleSeed(1, 0, 5), sampleSeed(1, 0, 6));
});

test("random resized crop stays within scale and ratio bounds, and inside the region", (t) => {
  const rng = mulberry32(9);
  const region = { left: 10, top: 20, width: 300, height: 200 };
  for (let k = 0; k < 500; k++) {
    const r = randomResizedCrop(rng, region, [0.9, 1.0], [3 / 4, 4 / 3]);
    t.true(r.left >= 10 && r.top >= 20 && r.left + r.width <= 310 && r.top + r.height <= 220);
    const area = (r.width * r.height) / (300 * 200);
    t.true(area >= 0.88 && area <= 1.0001, `area ${area}`);
    t.true(r.width / r.height >= 0.74 && r.width / r.height <= 1.34);
  }
  const p = planSample(parseTransform({ train: true }), region, 3);
  t.true(
    p.brightness >= 0.9 &&
      p.brightness <= 1.1 &&
      p.contrast >= 0.9 &&
      p.contrast <= 1.1 &&
      p.saturation >= 0.9 &&
      p.saturation <= 1.1,
  );
  t.deepEqual([...p.order].sort(), [0, 1, 2]);
});

test("horizontal flip mirrors the image", async (t) => {
  const W = 64;
  const raw = Buffer.alloc(W * W * 3);
  for (let y = 0; y < W; y++) for (let x = 0; x < W / 2; x++) raw.fill(255, 3 * (y * W + x), 3 * (y * W + x) + 3);
  const img = await png(raw, W, W);
  const base = {
    size: S,
    train: true,
    scale: [1, 1] as [number, number],
    ratio: [1, 1] as [number, number],
    brightness: 0,
    contrast: 0,
    saturation: 0,
  };
  const flipped = await preprocess(img, { ...base, hflip: 1 }, 7);
  const kept = await preprocess(img, { ...base, hflip: 0 }, 7);
  const row = 5;
  t.true(close(kept[row * S + 1]!, norm(255, 0)));
  t.true(close(kept[row * S + S - 2]!, norm(0, 0)));
  t.true(close(flipped[row * S + 1]!, norm(0, 0)));
  t.true(close(flipped[row * S + S - 2]!, norm(255, 0)));
});

test("JPEG, PNG, TIFF, GIF and WebP decode to the same picture", async (t) => {
  const raw = gradient(48, 48);
  const src = sharp(raw, { raw: { width: 48, height: 48, channels: 3 } });
  const ref = await preprocess(await src.clone().png().toBuffer(), { size: S });
  for (const [fmt, tol] of [
    ["jpeg", 0.35],
    ["tiff", 1e-6],
    ["webp", 0.35],
    ["gif", 0.8],
  ] as const) {
    const buf = await src
      .clone()
      .toFormat(fmt, fmt === "jpeg" || fmt === "webp" ? { quality: 95 } : fmt === "tiff" ? { compression: "lzw" } : {})
      .toBuffer();
    const out = await preprocess(buf, { size: S });
    let mean = 0;
    for (let i = 0; i < out.length; i++) mean += Math.abs(out[i]! - ref[i]!);
    mean /= out.length;
    t.true(mean <= tol, `${fmt}: mean abs difference ${mean}`);
  }
});

test("16-bit, grayscale and RGBA inputs become 8-bit RGB", async (t) => {
  // 16-bit PNG: 65535 → 255, 32896 (=128·257) → 128.
  const W = 16;
  const raw16 = new Uint16Array(W * W * 3);
  for (let i = 0; i < W * W; i++) raw16.set([65535, 32896, 0], 3 * i);
  const p16 = await sharp(raw16, { raw: { width: W, height: W, channels: 3 } })
    .toColourspace("rgb16")
    .png()
    .toBuffer();
  t.is((await sharp(p16).metadata()).depth, "ushort");
  const o16 = await preprocess(p16, { size: 8 });
  t.true(close(o16[0]!, norm(255, 0)) && close(o16[64]!, norm(128, 1)) && close(o16[128]!, norm(0, 2)));

  const gray = await png(Buffer.alloc(W * W, 100), W, W, 1);
  const og = await preprocess(gray, { size: 8 });
  t.true(close(og[0]!, norm(100, 0)) && close(og[64]!, norm(100, 1)) && close(og[128]!, norm(100, 2)));

  // RGBA: transparent pixels are flattened onto black, opaque ones keep their colour.
  const rgba = Buffer.alloc(W * W * 4);
  for (let i = 0; i < W * W; i++) rgba.set(i < (W * W) / 2 ? [200, 10, 10, 255] : [200, 10, 10, 0], 4 * i);
  const o4 = await preprocess(await png(rgba, W, W, 4), { size: 16 });
  t.true(close(o4[0]!, norm(200, 0)));
  t.true(close(o4[16 * 15 + 3]!, norm(0, 0)));
});

test("field-of-view detection finds a clipped synthetic circle", async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const img = renderFundus({ size: 256, seed, eye: "right", findings: {}, cdr: 0.3 });
    const buf = await sharp(Buffer.from(img.rgb), { raw: { width: 256, height: 256, channels: 3 } })
      .png()
      .toBuffer();
    const r = await detectFov(buf, 256, 256);
    t.true(r.found);
    const side = 2 * img.fov.r;
    t.true(Math.abs(r.width - side) <= 8, `seed ${seed}: side ${r.width} vs ${side}`);
    t.true(Math.abs(r.left + r.width / 2 - img.fov.cx) <= 4 && Math.abs(r.top + r.height / 2 - img.fov.cy) <= 4);
  }
});

test("field-of-view crop on DRIVE matches the DRIVE masks", async (t) => {
  if (!hasShared("data/DRIVE/training/images")) return t.fail("../shared/data/DRIVE is missing");
  const dir = sharedPath("data/DRIVE/training/images");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".tif"))
    .sort()
    .slice(0, 6);
  t.is(files.length, 6);
  for (const f of files) {
    const n = f.split("_")[0]!;
    const img = `${dir}/${f}`;
    const meta = await sharp(img).metadata();
    const fov = await detectFov(img, meta.width!, meta.height!);
    // The mask's bounding box: the circle, clipped at top and bottom.
    const { data, info } = await sharp(sharedPath(`data/DRIVE/training/mask/${n}_training_mask.gif`))
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    let x0 = info.width,
      x1 = -1,
      y0 = info.height,
      y1 = -1;
    for (let y = 0; y < info.height; y++)
      for (let x = 0; x < info.width; x++)
        if (data[y * info.width + x]! > 127) {
          x0 = Math.min(x0, x);
          x1 = Math.max(x1, x);
          y0 = Math.min(y0, y);
          y1 = Math.max(y1, y);
        }
    const maskSide = Math.max(x1 - x0 + 1, y1 - y0 + 1);
    t.true(fov.found);
    t.true(Math.abs(fov.width - maskSide) <= 0.04 * maskSide, `${f}: side ${fov.width}, mask ${maskSide}`);
    t.true(Math.abs(fov.left + fov.width / 2 - (x0 + x1 + 1) / 2) <= 0.03 * maskSide, `${f}: centre x`);
    t.true(Math.abs(fov.top + fov.height / 2 - (y0 + y1 + 1) / 2) <= 0.03 * maskSide, `${f}: centre y`);
    // The cropped tensor: the centre is fundus (bright red), the corners outside the circle are black.
    const out = new Float32Array(3 * 64 * 64);
    const d = await preprocessInto(img, parseTransform({ size: 64, fov: true }), 0, out);
    t.is(d.region?.width, fov.width);
    t.true(out[32 * 64 + 32]! > norm(60, 0));
    for (const p of [0, 63, 63 * 64, 64 * 64 - 1]) t.true(out[p]! < norm(20, 0), `${f}: corner ${p} = ${out[p]}`);
  }
});

// Expected values from Debian's python3-pil 9.4 + torchvision 0.14 (the benchmark's baseline):
//   a = np.random.RandomState(5).randint(0, 256, (6, 7, 3), dtype=np.uint8); a[0, :3] = [[255]*3, [0]*3, [250, 3, 128]]
//   x = Image.fromarray(a)
//   for op in order: x = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation][op](x, factors[op])
//   bytes(np.asarray(x)).hex();  Normalize(CLIP)(ToTensor()(ramp of 0..255)).view(uint32)
const JITTER_SRC =
  "ffffff000000fa03804fe8debde6d1d4e68beb3476dc1d5d90152aeb49e8bcfa0884087de482fe16e73e9b9cbe8790659b8912c470ca" +
  "a85a9e0ab784d04e947c071efb4bcc70a6fd8f7f0e30718cebceb575ab14e7ef42a6506c0abd1bf8c8d12ca4f970cd20173ecbfe8628" +
  "41ecadc3af8d43e11efe631cd4872a46567c";
const JITTER_CASES: [[number, number, number], [number, number, number], string][] = [
  [
    [1.093, 0.912, 1.0713],
    [0, 1, 2],
    "f5f5f50d0d0dff098d53f6ebc7f3dcdef390fd3b81f12469a11e34fb50f9c7f70695108df48bf919f843a6a7cb929c6ea89516d379" +
      "d8b763ac0dc790e156a18d1028fb52db78b2fa9c8b12387e9bf6d9bd7fb817f4f643b659770ece20f6d3dc31b1fb78dc232049dffa" +
      "902b45f9b8d0ba9648f021fc6c20e3922e50628a",
  ],
  [
    [0.9, 1.1, 0.9],
    [2, 0, 1],
    "efefef000000da006d4bd3cbafd5c2c4d583ce2c67c0154e780a1dd141ceaee50d6d0068ce77e514ce388c8dac788059897910af64" +
      "b5944e8b07a274b84382650011e142b66596e37e6f0a266078d8bfa9699811d6dc4291435e07a516e4b9c22791dd65b91e0d30aee4" +
      "79253ed79eb1a0813dcb1ce25718bd792638486a",
  ],
  [
    [1.1, 1.0, 0.95],
    [1, 2, 0],
    "ffffff000000ff078a5cfbf2d1fbe5e9fb9cfa3c80ea236698182efd53f9ceff128c0b85f791ff1ef848aaabce949d70a89519d47c" +
      "dab564ab10c690df58a0840821ff55dc7db5ff9b8a14377b96ffe2c881b91bfdff50b3597610cb22ffdce534b2ff7dde291b44d7ff" +
      "94314dffbed5c09c4ef327ff6e24e494334d5e86",
  ],
  [
    [0.97, 1.08, 1.1],
    [2, 1, 0],
    "f7f7f7000000f7007e3cebe0b7e6ced1e67ef72370e70b5694061ff43af1b7f70086007ee877f700ef2c9697bf818b5a998300c565" +
      "cda84e9d00b97fd740917e0012f73cd064a2f78c7a00216c8beccbae6caa00e7f128a7456400c207f7c3ce18a2f764cf080734d7f7" +
      "7e122cf1a8c2aa8331e606f75806d980153c4e7a",
  ],
  [
    [1.0, 0.9013, 1.0],
    [0, 1, 2],
    "f3f3f30d0d0def108155ded5b8ddcaccdd8be13c78d427618f2033e14fdeb7ef1584157edb82f221de45999ab9878f6899891ebe72" +
      "c3a55e9c16b284c954937d1428f051c572a3f18e801a39738ce1c7b077a71fdee549a3556f16b826edc2ca35a1ee72c62a2245c4f2" +
      "863148e2a9bdab8c4ad828f26727cc87334c5b7d",
  ],
];

test("colour jitter gives torchvision's PIL results byte for byte, in every order", (t) => {
  for (const [[brightness, contrast, saturation], order, hex] of JITTER_CASES) {
    const rgb = new Uint8Array(Buffer.from(JITTER_SRC, "hex"));
    jitter8(rgb, { brightness, contrast, saturation, order });
    t.is(Buffer.from(rgb).toString("hex"), hex, `factors ${[brightness, contrast, saturation]}, order ${order}`);
  }
  // The order matters (contrast uses the mean after brightness), so a wrong order is caught.
  const rgb = new Uint8Array(Buffer.from(JITTER_SRC, "hex"));
  jitter8(rgb, { brightness: 0.9, contrast: 1.1, saturation: 0.9, order: [0, 1, 2] });
  t.not(Buffer.from(rgb).toString("hex"), JITTER_CASES[1]![2]);
});

test("normalisation gives torchvision's ToTensor + Normalize float32 bits", (t) => {
  const expected = [
    [0xbfe568dc, 0xbfe38a7f, 0x3d7ce092, 0x3d9c5620, 0x3ff536e5, 0x3ff71541],
    [0xbfe044b8, 0xbfde58f1, 0x3e1d9531, 0x3e2cf36b, 0x4003d502, 0x4004cae5],
    [0xbfbd77d8, 0xbfbba5e1, 0x3ea6c5e6, 0x3eae0dc4, 0x40086d66, 0x40095660],
  ];
  const bits = new Uint32Array(normTable(CLIP_MEAN, CLIP_STD).buffer);
  [0, 1, 127, 128, 254, 255].forEach((v, k) => {
    for (let c = 0; c < 3; c++) t.is(bits[c * 256 + v], expected[c]![k], `channel ${c}, value ${v}`);
  });
  // writeNormalized: HWC bytes → CHW planes through the same table, jitter first.
  const S = 7;
  const src = new Uint8Array(Buffer.from(JITTER_SRC + JITTER_SRC.slice(0, 2 * 3 * 7), "hex"));
  const out = new Float32Array(3 * S * S + 5);
  const plan = {
    rect: { left: 0, top: 0, width: S, height: S },
    flip: false,
    brightness: 1.093,
    contrast: 0.912,
    saturation: 1.0713,
    order: [0, 1, 2] as [number, number, number],
  };
  writeNormalized(src, S, plan, { mean: [...CLIP_MEAN], std: [...CLIP_STD] }, out, 5);
  const jittered = new Uint8Array(Buffer.from(JITTER_SRC + JITTER_SRC.slice(0, 2 * 3 * 7), "hex"));
  jitter8(jittered, plan);
  const table = normTable(CLIP_MEAN, CLIP_STD);
  for (let i = 0; i < S * S; i++)
    for (let c = 0; c < 3; c++) t.is(out[5 + c * S * S + i], table[c * 256 + jittered[3 * i + c]!]);
  t.is(jittered[0], 0xf5); // the first pixel as in JITTER_CASES[0]
});

test("shrinkOnLoad: false decodes JPEGs at full size (closer to a full decode + bicubic)", async (t) => {
  // A 10-pixel checkerboard near the output's resolution: decoding at 1/8 scale (8×8 block means)
  // then resizing loses more of it than a full decode does, so the two settings differ.
  const W = 1024;
  const raw = Buffer.alloc(W * W * 3);
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++)
      raw.fill((Math.floor(x / 10) + Math.floor(y / 10)) % 2 ? 255 : 40, 3 * (y * W + x), 3 * (y * W + x) + 3);
  const jpg = await sharp(raw, { raw: { width: W, height: W, channels: 3 } })
    .jpeg({ quality: 95 })
    .toBuffer();
  // Through sharp (the native path has its own test in test/jpeg-fast.test.ts): the reference is
  // sharp's own resampler on the PNG, so only sharp's JPEG decode differs between the two settings.
  const fast = await preprocess(jpg, { size: 64, fastJpeg: false });
  const full = await preprocess(jpg, { size: 64, shrinkOnLoad: false, fastJpeg: false });
  const ref = await preprocess(
    await sharp(raw, { raw: { width: W, height: W, channels: 3 } })
      .png()
      .toBuffer(),
    { size: 64, fastJpeg: false },
  );
  const mad = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;
  t.notDeepEqual(full, fast);
  // Measured: 0.0037 (full) vs 0.0054 (shrink-on-load) from the PNG's output.
  t.true(mad(full, ref) < 0.8 * mad(fast, ref), `full ${mad(full, ref)} vs shrink-on-load ${mad(fast, ref)}`);
  // Training crops take the crop-then-resize path; still deterministic per seed.
  const tr = { size: 64, train: true, shrinkOnLoad: false };
  t.deepEqual(await preprocess(jpg, tr, 3), await preprocess(jpg, tr, 3));
});
