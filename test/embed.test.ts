import test from "ava";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { readNpy } from "../lib/io/npy.js";
import { samplesFromFiles } from "../lib/data/manifest.js";
import { parseTransform, preprocess } from "../lib/data/transforms.js";
import { embedImages, embedTexts, idsPathFor, PooledHeadEncoder, type ImageEncoder } from "../lib/embed/index.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { register } from "../lib/cli/data.js";
import { hasShared, sharedPath } from "./helpers/shared.js";
import type { TensorData } from "../lib/native.js";

const tmp = () => mkdtempSync(path.join(tmpdir(), "vilref-embed-"));
let files: string[] = [];
let synthDir = "";

test.before(async () => {
  synthDir = tmp();
  await writeSynthDataset(synthDir, 11, 8, { size: 96, format: "png" });
  files = readdirSync(path.join(synthDir, "images"))
    .sort()
    .map((f) => path.join(synthDir, "images", f));
});

const idsOf = (out: string) => readFileSync(idsPathFor(out), "utf8").split("\n").filter(Boolean);

test("rows come out in input order and equal the encoder applied image by image", async (t) => {
  const enc = new PooledHeadEncoder({ dim: 8, seed: 3, imageSize: 32 });
  const order = [...files].reverse();
  const out = path.join(tmp(), "e.npy");
  const r = await embedImages(samplesFromFiles(order), enc, { out, batchSize: 4, chunkSize: 4, progress: false });
  t.is(r.rows, 11);
  t.is(r.dim, 8);
  const arr = await readNpy(out);
  t.deepEqual(arr.shape, [11, 8]);
  t.is(arr.dtype, "float32");
  t.deepEqual(
    idsOf(out),
    order.map((f) => path.basename(f)).map((f) => `${f}`),
  );
  for (const i of [0, 5, 10]) {
    const x = await preprocess(order[i]!, parseTransform({ size: 32 }));
    const e = await enc.encodeImages({ data: x, shape: [1, 3, 32, 32] });
    const row = (arr.data as Float32Array).subarray(i * 8, (i + 1) * 8);
    for (let k = 0; k < 8; k++) t.true(Math.abs(row[k]! - e.data[k]!) < 1e-5);
  }
  t.false(existsSync(out + ".parts"));
  // Rerun: up to date, nothing recomputed.
  const again = await embedImages(samplesFromFiles(order), enc, { out, batchSize: 4, progress: false });
  t.true(again.upToDate);
});

class Flaky implements ImageEncoder {
  calls = 0;
  images = 0;
  constructor(
    readonly inner: ImageEncoder,
    readonly failAt = Infinity,
  ) {}
  get imageSize() {
    return this.inner.imageSize;
  }
  get name() {
    return this.inner.name;
  }
  async encodeImages(b: TensorData<Float32Array>) {
    if (++this.calls === this.failAt) throw new Error("power cut");
    this.images += b.shape[0]!;
    return this.inner.encodeImages(b);
  }
}

test("an interrupted run resumes: finished chunks are skipped and the output equals a clean run", async (t) => {
  const enc = new PooledHeadEncoder({ dim: 6, seed: 1, imageSize: 24 });
  const samples = samplesFromFiles(files);
  const clean = path.join(tmp(), "clean.npy");
  await embedImages(samples, enc, { out: clean, batchSize: 2, chunkSize: 4, progress: false });
  const out = path.join(tmp(), "resumed.npy");
  const first = new Flaky(enc, 4); // dies in the 4th batch: chunk 0 (batches 1-2) is done, chunk 1 is not
  await t.throwsAsync(embedImages(samples, first, { out, batchSize: 2, chunkSize: 4, progress: false }), {
    message: /power cut/,
  });
  t.true(existsSync(out + ".parts/chunk-000000.json"));
  t.false(existsSync(out + ".parts/chunk-000001.json"));
  t.false(existsSync(out));
  const second = new Flaky(enc);
  const lines: string[] = [];
  const r = await embedImages(samples, second, {
    out,
    batchSize: 2,
    chunkSize: 4,
    progress: false,
    info: (l) => lines.push(l),
  });
  t.is(r.resumedChunks, 1);
  t.is(second.images, 11 - 4);
  t.regex(lines.join("\n"), /resuming: 1 of 3 chunks/);
  t.deepEqual((await readNpy(out)).data, (await readNpy(clean)).data);
  t.deepEqual(idsOf(out), idsOf(clean));
  // A different model restarts instead of mixing rows.
  const out2 = path.join(tmp(), "m.npy");
  await t.throwsAsync(
    embedImages(samples, new Flaky(enc, 3), { out: out2, batchSize: 2, chunkSize: 4, progress: false }),
  );
  const other = new Flaky(new PooledHeadEncoder({ dim: 6, seed: 2, imageSize: 24 }));
  const r2 = await embedImages(samples, other, {
    out: out2,
    batchSize: 2,
    chunkSize: 4,
    progress: false,
    info: () => {},
  });
  t.is(r2.resumedChunks, 0);
  t.is(other.images, 11);
});

test("bad images are skipped and listed; the ids file matches the rows", async (t) => {
  const d = tmp();
  const bad = path.join(d, "bad.jpg");
  writeFileSync(bad, "not a jpeg");
  const list = [files[0]!, bad, files[1]!];
  const out = path.join(d, "x.npy");
  const logged: string[] = [];
  const r = await embedImages(samplesFromFiles(list), new PooledHeadEncoder({ dim: 4, imageSize: 16 }), {
    out,
    batchSize: 2,
    progress: false,
    log: (l) => logged.push(l),
  });
  t.is(r.rows, 2);
  t.deepEqual((await readNpy(out)).shape, [2, 4]);
  t.is(idsOf(out).length, 2);
  t.false(idsOf(out).some((x) => x.includes("bad")));
  t.regex(readFileSync(out.replace(/\.npy$/, ".skipped.tsv"), "utf8"), /bad\.jpg\t/);
  t.regex(logged.join("\n"), /bad\.jpg/);
  await t.throwsAsync(
    embedImages(samplesFromFiles(list), new PooledHeadEncoder({ dim: 4, imageSize: 16 }), {
      out: path.join(d, "y.npy"),
      strict: true,
      progress: false,
    }),
    { message: /bad\.jpg/ },
  );
});

test("texts embed the same way", async (t) => {
  const enc = {
    name: "len",
    calls: 0,
    async encodeTexts(texts: string[]) {
      this.calls++;
      return { data: Float32Array.from(texts.flatMap((s) => [s.length, s.charCodeAt(0)])), shape: [texts.length, 2] };
    },
  };
  const recs = Array.from({ length: 7 }, (_, i) => ({ id: `r${i}`, text: "眼".repeat(i + 1) }));
  const out = path.join(tmp(), "t.npy");
  const r = await embedTexts(recs, enc, { out, batchSize: 3, chunkSize: 3, progress: false });
  t.is(r.rows, 7);
  const a = await readNpy(out);
  t.deepEqual(
    Array.from(a.data as Float32Array).filter((_, k) => k % 2 === 0),
    [1, 2, 3, 4, 5, 6, 7],
  );
  t.deepEqual(
    idsOf(out),
    recs.map((x) => x.id),
  );
  t.is(enc.calls, 3);
});

test("vilref synth and vilref embed on the command line", async (t) => {
  const d = tmp();
  const run = async (...args: string[]) => {
    const p = new Command().exitOverride();
    register(p);
    await p.parseAsync(["node", "vilref", ...args]);
  };
  const write = process.stdout.write;
  const said: string[] = [];
  process.stdout.write = ((s: string) => (said.push(String(s)), true)) as typeof process.stdout.write;
  try {
    await run("synth", "--n", "5", "--out", path.join(d, "ds"), "--seed", "3", "--size", "64");
    await run(
      "embed",
      "--images",
      path.join(d, "ds/manifest.jsonl"),
      "--out",
      path.join(d, "e.npy"),
      "--model",
      "pool-head:12",
      "--image-size",
      "32",
      "--no-progress",
    );
  } finally {
    process.stdout.write = write;
  }
  t.regex(said.join(""), /wrote 5 cases/);
  t.deepEqual((await readNpy(path.join(d, "e.npy"))).shape, [5, 12]);
  t.deepEqual(idsOf(path.join(d, "e.npy")), [
    "synth-00000",
    "synth-00001",
    "synth-00002",
    "synth-00003",
    "synth-00004",
  ]);
  await t.throwsAsync(run("embed", "--images", d, "--out", path.join(d, "z.npy"), "--model", "vit-b-16"), {
    message: /no such checkpoint .*; for random weights of that preset say preset:vit-b-16$/,
  });
});

test("embedding the 40 DRIVE images gives 40 rows in the ids' order", async (t) => {
  if (!hasShared("data/DRIVE")) return t.fail("../shared/data/DRIVE is missing");
  const out = path.join(tmp(), "drive.npy");
  const enc = new PooledHeadEncoder({ dim: 16, seed: 5, imageSize: 64 });
  const r = await embedImages(
    samplesFromFiles(
      ["training", "test"].flatMap((s) =>
        readdirSync(sharedPath("data/DRIVE", s, "images"))
          .sort()
          .map((f) => sharedPath("data/DRIVE", s, "images", f)),
      ),
      sharedPath("data/DRIVE"),
    ),
    enc,
    { out, batchSize: 8, chunkSize: 16, progress: false, transform: { fov: true } },
  );
  t.is(r.rows, 40);
  t.deepEqual((await readNpy(out)).shape, [40, 16]);
  const ids = idsOf(out);
  t.is(ids.length, 40);
  t.is(ids[0], "training/images/21_training.tif");
  t.is(ids[39], "test/images/20_test.tif");
  // Row 7 is the embedding of ids[7].
  const x = await preprocess(sharedPath("data/DRIVE", ids[7]!), { size: 64, fov: true });
  const e = await enc.encodeImages({ data: x, shape: [1, 3, 64, 64] });
  const row = ((await readNpy(out)).data as Float32Array).subarray(7 * 16, 8 * 16);
  t.true(row.every((v, k) => Math.abs(v - e.data[k]!) < 1e-5));
});

test("an encoder returning a view of its input still gets right rows (the loader reuses batch memory)", async (t) => {
  // batches of one image; its embedding: 4 normalised values from the middle row (the corners are
  // black in every image), handed back as a view of the batch
  const at = 16 * 32 + 14;
  const view: ImageEncoder = {
    name: "input-view",
    imageSize: 32,
    encodeImages: async (b) => ({ data: b.data.subarray(at, at + 4), shape: [1, 4] }),
  };
  const out = path.join(tmp(), "view.npy");
  // chunks of 8 batches: more batches than the loader keeps arrays for (prefetch + 2)
  await embedImages(samplesFromFiles(files), view, { out, batchSize: 1, chunkSize: 8, progress: false });
  const arr = (await readNpy(out)).data as Float32Array;
  for (let i = 0; i < files.length; i++) {
    const x = await preprocess(files[i]!, parseTransform({ size: 32 }));
    t.deepEqual(Array.from(arr.subarray(i * 4, i * 4 + 4)), Array.from(x.subarray(at, at + 4)), `row ${i}`);
  }
});
