// Segmentation: metrics by hand, sliding-window reconstruction, the DRIVE adapter, the native
// segmenter (loss falls on a DRIVE tile, state by name, argument errors).
import test from "ava";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { mulberry32 } from "../lib/data/rng.js";
import { ViLReF } from "../lib/model/vilref.js";
import {
  augmentIndex,
  confusion,
  evaluateSegmenter,
  normalise,
  readDrive,
  readSegmentationDir,
  sampleBatch,
  segmentationMetrics,
  Segmenter,
  slidingWindow,
  trainSegmenter,
  windowOrigins,
} from "../lib/segment/index.js";
import type { Plane, Prepared } from "../lib/segment/index.js";
import { hasShared, sharedPath } from "./helpers/shared.js";

test("Dice, IoU, Se, Sp on a hand-computed mask, inside the field of view only", (t) => {
  // 3×4 image; the last column is outside the field of view (wrong there on purpose)
  const prob = [0.9, 0.8, 0.1, 0.9, 0.6, 0.2, 0.7, 0.9, 0.0, 0.4, 0.5, 0.9];
  const target = [1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0];
  const fov = [1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0];
  // inside: p≥0.5 at 0,1,4,6,10; truth at 0,1,4,9,10 → TP 4 (0,1,4,10), FP 1 (6), FN 1 (9), TN 3 (2,5,8)
  t.deepEqual(confusion(prob, target, fov), { tp: 4, fp: 1, fn: 1, tn: 3 });
  const m = segmentationMetrics(prob, target, fov);
  t.is(m.dice, 8 / 10);
  t.is(m.iou, 4 / 6);
  t.is(m.sensitivity, 4 / 5);
  t.is(m.specificity, 3 / 4);
  t.is(m.accuracy, 7 / 9);
  t.is(m.pixels, 9);
  // AUC over the 9 pixels: positives 0.9,0.8,0.6,0.4,0.5 vs negatives 0.1,0.7,0.2,0.0 → 17/20
  t.is(m.auc, 17 / 20);
  const empty = segmentationMetrics([0.1, 0.2], [0, 0]);
  t.is(empty.dice, 1);
  t.is(empty.iou, 1);
  t.true(Number.isNaN(empty.sensitivity));
});

test("window origins cover the axis, the last flush with the border", (t) => {
  t.deepEqual(windowOrigins(10, 4, 2), [0, 2, 4, 6]);
  t.deepEqual(windowOrigins(11, 4, 2), [0, 2, 4, 6, 7]);
  t.deepEqual(windowOrigins(3, 4, 2), [0]);
  t.deepEqual(windowOrigins(8, 4, 4), [0, 4]);
  t.throws(() => windowOrigins(8, 4, 0), { instanceOf: RangeError, message: /^stride/ });
});

for (const [H, W, tile, stride] of [
  [13, 17, 4, 2],
  [13, 17, 5, 3],
  [3, 2, 4, 2],
  [16, 16, 8, 8],
] as const) {
  test(`sliding window reconstructs an identity model exactly (${H}×${W}, tile ${tile}, \
stride ${stride})`, async (t) => {
    const image: Plane = {
      data: Float32Array.from({ length: 2 * H * W }, (_, i) => Math.sin(i * 0.7) + (i % 5)),
      channels: 2,
      height: H,
      width: W,
    };
    let calls = 0;
    const out = await slidingWindow(
      image,
      tile,
      stride,
      async (b) => {
        calls++;
        const [n, C, T] = b.shape as [number, number, number];
        const y = new Float32Array(n * T * T);
        // channel 0
        for (let i = 0; i < n; i++) y.set(b.data.subarray(i * C * T * T, i * C * T * T + T * T), i * T * T);
        return { data: y, shape: [n, 1, T, T] };
      },
      3,
    );
    t.true(calls >= 1);
    t.deepEqual(Array.from(out), Array.from(image.data.subarray(0, H * W)));
  });
}

test("overlap averaging: a model that answers its tile's index averages per pixel", async (t) => {
  const image: Plane = { data: new Float32Array(6), channels: 1, height: 1, width: 6 };
  let k = 0;
  // tiles of 1×4 are not square; use 6×6 with tile 4, stride 2: origins 0, 2 per axis
  const sq: Plane = { data: new Float32Array(36), channels: 1, height: 6, width: 6 };
  const out = await slidingWindow(sq, 4, 2, async (b) => {
    const n = b.shape[0]!;
    const y = new Float32Array(n * 16);
    for (let i = 0; i < n; i++) y.fill(k++, i * 16, (i + 1) * 16);
    return { data: y, shape: [n, 1, 4, 4] };
  });
  // tiles 0:(0,0) 1:(0,2) 2:(2,0) 3:(2,2); pixel (0,0) only tile 0; (2,2) all four; (0,3) tiles 0,1
  t.is(out[0], 0);
  t.is(out[2 * 6 + 2], 1.5);
  t.is(out[3], 0.5);
  t.is(out[35], 3);
  t.is(image.data.length, 6);
});

test("augmentation: quarter turns and flips are permutations of the tile", (t) => {
  for (let turns = 0; turns < 4; turns++) {
    for (const flip of [false, true]) {
      const seen = new Set<number>();
      for (let y = 0; y < 5; y++)
        for (let x = 0; x < 5; x++) seen.add(augmentIndex(y, x, 5, turns, flip).join(",") as unknown as number);
      t.is(seen.size, 25);
    }
  }
  t.deepEqual(augmentIndex(0, 0, 4, 0, false), [0, 0]);
  t.deepEqual(augmentIndex(0, 0, 4, 0, true), [0, 3]);
  t.deepEqual(augmentIndex(0, 0, 4, 1, false), [0, 3]);
});

const drive = sharedPath("data", "DRIVE");

test("the DRIVE adapter reads the shared set: 20 training + 20 test images, \
binary masks of the image's size", async (t) => {
  if (!hasShared("data", "DRIVE")) return t.pass("no ../shared/data/DRIVE");
  const { training, test: testSet } = await readDrive(drive);
  t.is(training.length, 20);
  t.is(testSet.length, 20);
  t.deepEqual(testSet.map((s) => s.name).slice(0, 3), ["01", "02", "03"]);
  for (const s of [...training, ...testSet]) {
    t.is(s.rgb.length, s.width * s.height * 3);
    t.is(s.target.length, s.width * s.height);
    t.true(s.target.every((v) => v === 0 || v === 1) && s.fov.every((v) => v === 0 || v === 1));
  }
  const s = training[0]!;
  t.deepEqual([s.width, s.height], [565, 584]);
  const vessels = s.target.reduce((a, b) => a + b, 0) / s.fov.reduce((a, b) => a + b, 0);
  t.true(vessels > 0.05 && vessels < 0.2, `vessel fraction ${vessels}`);
});

async function writePng(path: string, w: number, h: number, channels: 1 | 3, value: number) {
  await sharp(Buffer.alloc(w * h * channels, value), { raw: { width: w, height: h, channels } })
    .png()
    .toFile(path);
}

test("bad DRIVE layouts are refused naming the culprit", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "vilref-seg-"));
  mkdirSync(join(root, "images"));
  mkdirSync(join(root, "1st_manual"));
  await writePng(join(root, "images", "01_test.png"), 8, 8, 3, 100);
  await writePng(join(root, "1st_manual", "01_manual1.png"), 8, 8, 1, 255);
  await t.throwsAsync(readSegmentationDir(root), {
    message: `${join(root, "mask")}: no such directory (the field-of-view masks of a DRIVE-layout set)`,
  });
  mkdirSync(join(root, "mask"));
  await writePng(join(root, "mask", "01_test_mask.png"), 8, 8, 1, 255);
  await writePng(join(root, "images", "02_test.png"), 8, 8, 3, 100);
  await writePng(join(root, "1st_manual", "02_manual1.png"), 8, 8, 1, 255);
  await t.throwsAsync(readSegmentationDir(root), {
    message: `${join(root, "images", "02_test.png")}: no field-of-view mask for id "02" in ${join(root, "mask")}`,
  });
  await writePng(join(root, "mask", "02_test_mask.png"), 8, 6, 1, 255);
  await t.throwsAsync(readSegmentationDir(root), {
    message:
      `${join(root, "mask", "02_test_mask.png")}: mask is 8×6, the image ` +
      `${join(root, "images", "02_test.png")} is 8×8`,
  });
  await writePng(join(root, "mask", "02_test_mask.png"), 8, 8, 1, 0);
  const ok = await readSegmentationDir(root);
  t.deepEqual(
    ok.map((s) => [s.name, s.target[0], s.fov[0]]),
    [
      ["01", 1, 1],
      ["02", 1, 0],
    ],
  );
  await t.throwsAsync(readDrive(join(root, "nope")), { message: /nope: no such directory/ });
});

const tiny = { tile: 32, patch: 8, width: 32, layers: 2, heads: 2, stemChannels: 8, decoderChannels: 16 };

test("segmenter: shapes, probabilities, taps from quarters of the depth", async (t) => {
  const seg = new Segmenter({ ...tiny, layers: 4 }, { seed: 1 });
  t.deepEqual(seg.config.taps, [1, 2, 3, 4]);
  const y = await seg.predict({ data: new Float32Array(2 * 3 * 32 * 32).fill(0.3), shape: [2, 3, 32, 32] });
  t.deepEqual(y.shape, [2, 1, 32, 32]);
  t.true(Array.from(y.data).every((v) => v > 0 && v < 1));
  t.deepEqual(new Segmenter({ ...tiny, layers: 2 }).config.taps, [1, 2]);
});

test("segmenter: bad arguments are refused naming them", async (t) => {
  t.throws(() => new Segmenter({ ...tiny, patch: 6 }), {
    instanceOf: RangeError,
    message: /^config\.patch: 6 is not a power of two/,
  });
  t.throws(() => new Segmenter({ ...tiny, tile: 36 }), {
    instanceOf: RangeError,
    message: /^config\.tile: 36 is not a multiple of config\.patch 8/,
  });
  t.throws(() => new Segmenter({ ...tiny, taps: [2, 1] }), {
    instanceOf: RangeError,
    message: "config.taps: block numbers must ascend",
  });
  t.throws(() => new Segmenter({ ...tiny, taps: [3] }), { instanceOf: RangeError, message: /^config\.taps\[0\]/ });
  const seg = new Segmenter(tiny);
  const images = { data: new Float32Array(3 * 32 * 32), shape: [1, 3, 32, 32] };
  await t.throwsAsync(seg.predict({ data: new Float32Array(3 * 16 * 16), shape: [1, 3, 16, 16] }), {
    instanceOf: RangeError,
    message: /^images: expected shape \[\*, 3, 32, 32\]/,
  });
  await t.throwsAsync(seg.step({ images, targets: { data: new Float32Array(2 * 32 * 32), shape: [2, 1, 32, 32] } }), {
    instanceOf: RangeError,
    message: /^batch\.targets: expected shape \[1, 1, 32, 32\]/,
  });
  await t.throwsAsync(
    seg.step({ images, targets: { data: new Float32Array(32 * 32).fill(2), shape: [1, 1, 32, 32] } }),
    { instanceOf: RangeError, message: "batch.targets: values must lie in [0, 1]" },
  );
  await t.throwsAsync(
    seg.step({
      images: { data: new Float32Array(3 * 32 * 32).fill(NaN), shape: [1, 3, 32, 32] },
      targets: { data: new Float32Array(32 * 32), shape: [1, 1, 32, 32] },
    }),
    { instanceOf: RangeError, message: /^batch\.images\.data\[0\] is NaN/ },
  );
  const state = await seg.stateDict();
  const { ["head.bias"]: _dropped, ...missing } = state;
  await t.throwsAsync(seg.loadStateDict(missing), {
    instanceOf: RangeError,
    message: "stateDict: does not fit this segmenter: missing head.bias",
  });
});

test("segmenter from a ViLReF ViT: the tower's weights by name, \
positional embedding resized to the tile grid", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const seg = await Segmenter.fromModel(model, { tile: 64, stemChannels: 8, decoderChannels: 16 });
  t.like(seg.config, { patch: 8, width: 64, layers: 2, heads: 2, tile: 64 });
  const a = await model.stateDict(),
    b = await seg.stateDict();
  const f32 = (v: { data: unknown } | undefined) => Array.from(v!.data as Float32Array);
  t.deepEqual(
    f32(b["visual.transformer.resblocks.1.attn.in_proj_weight"]),
    f32(a["visual.transformer.resblocks.1.attn.in_proj_weight"]),
  );
  t.deepEqual(b["visual.positional_embedding"]!.shape, [65, 64]);
  t.deepEqual(
    f32(b["visual.positional_embedding"]).slice(0, 64),
    f32(a["visual.positional_embedding"]).slice(0, 64),
    "class position kept",
  );
  // saved and loaded by name
  const dir = mkdtempSync(join(tmpdir(), "vilref-seg-"));
  await seg.save(join(dir, "seg.safetensors"));
  const again = await Segmenter.load(join(dir, "seg.safetensors"));
  const x = { data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i)), shape: [1, 3, 64, 64] };
  t.deepEqual(Array.from((await again.predict(x)).data), Array.from((await seg.predict(x)).data));
});

test("segmenter: Dice + BCE falls over a few steps on one DRIVE tile", async (t) => {
  if (!hasShared("data", "DRIVE")) return t.pass("no ../shared/data/DRIVE");
  const [im] = await readSegmentationDir(join(drive, "training"));
  const item: Prepared = { name: im!.name, plane: normalise(im!), target: im!.target, fov: im!.fov };
  const batch = sampleBatch([item], 2, 32, mulberry32(5));
  const seg = new Segmenter(tiny, { seed: 2, lr: 3e-3 });
  const losses: number[] = [];
  for (let i = 0; i < 20; i++) losses.push((await seg.step(batch)).loss);
  t.is(seg.steps, 20);
  t.true(losses.at(-1)! < 0.8 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(" ")}`);
});

test("short budget on DRIVE: 90 steps reach a meaningful Dice on held-out test images", async (t) => {
  if (!hasShared("data", "DRIVE")) return t.pass("no ../shared/data/DRIVE");
  const { training, test: testSet } = await readDrive(drive);
  const prep = (list: typeof training): Prepared[] =>
    list.map((im) => ({ name: im.name, plane: normalise(im), target: im.target, fov: im.fov }));
  const model = ViLReF.create("tiny-vit", { seed: 0 });
  const seg = await Segmenter.fromModel(model, { tile: 64 }, { seed: 0, lr: 2e-3 });
  const trained = await trainSegmenter(seg, prep(training), { steps: 90, batchSize: 8, lr: 2e-3, seed: 0 });
  t.is(trained.steps, 90);
  const r = await evaluateSegmenter(seg, prep(testSet.slice(0, 3)), { stride: 64 });
  t.log(
    `Dice ${r.mean.dice.toFixed(3)} IoU ${r.mean.iou.toFixed(3)} AUC ${r.mean.auc.toFixed(3)} after ` +
      `${trained.seconds.toFixed(0)} s`,
  );
  t.true(r.mean.dice >= 0.55, `Dice ${r.mean.dice}`);
  t.true(r.mean.auc >= 0.9, `AUC ${r.mean.auc}`);
});

test("normalisations: finite, zero outside the field of view, standardised inside", async (t) => {
  if (!hasShared("data", "DRIVE")) return t.pass("no ../shared/data/DRIVE");
  const [im] = await readSegmentationDir(join(drive, "test"));
  for (const mode of ["fov-standard", "green-lcn"] as const) {
    const p = normalise(im!, mode);
    const n = im!.width * im!.height;
    t.is(p.data.length, 3 * n);
    t.true(p.data.every(Number.isFinite), mode);
    let outside = 0,
      s = 0,
      s2 = 0,
      k = 0;
    for (let i = 0; i < n; i++) {
      if (!im!.fov[i]) outside = Math.max(outside, Math.abs(p.data[n + i]!));
      else ((s += p.data[n + i]!), (s2 += p.data[n + i]! ** 2), k++);
    }
    t.is(outside, 0, mode);
    if (mode === "fov-standard") {
      t.true(Math.abs(s / k) < 1e-3 && Math.abs(s2 / k - 1) < 1e-3, `mean ${s / k}, var ${s2 / k}`);
    }
  }
});
