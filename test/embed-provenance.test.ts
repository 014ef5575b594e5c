// Provenance-checked embeddings: `vilref embed` writes <out>.meta.json and reuses an output (or the
// finished chunks of an interrupted run) only when the record matches — another model, another
// input list or other options recompute and say why; an interrupted run resumed gives the same
// bytes as an uninterrupted one; --normalize writes rows of norm 1.
import test from "ava";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { resolveImageInputs } from "../lib/data/inputs.js";
import { embedImages, idsPathFor, metaPathFor } from "../lib/embed/index.js";
import type { EmbedMeta, ImageEncoder } from "../lib/embed/index.js";
import { readNpy } from "../lib/io/npy.js";
import { modelFromSpec, modelProvenance, ViLReFImageEncoder } from "../lib/model/encoders.js";
import { ViLReF } from "../lib/model/vilref.js";
import type { TensorData } from "../lib/native.js";
import { sharedPath } from "./helpers/shared.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-provenance-"));
const drive = sharedPath("data", "DRIVE");
const all40 = path.join(drive, "*", "images", "*.tif");
const test20 = path.join(drive, "test", "images", "*.tif");
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const write = process.stdout.write;
  const ewrite = process.stderr.write;
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    const code = await main(["node", "vilref", ...args, "--no-progress", "--threads", "2"], {
      out: (s) => (out += s),
      err: (s) => (err += s),
    });
    return { code, out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = ewrite;
  }
}

const rows = async (f: string) => (await readNpy(f)).data as Float32Array;
const meta = (out: string) => JSON.parse(readFileSync(metaPathFor(out), "utf8")) as EmbedMeta;

test.serial(
  "a rerun is up to date only with the same model, inputs and options; otherwise it recomputes and says why",
  async (t) => {
    const out = path.join(root, "e.npy");
    let r = await run("embed", "--model", "preset:tiny-vit", "--images", all40, "--out", out);
    t.is(r.code, 0, r.err);
    t.is((await readNpy(out)).shape[0], 40);
    const m = meta(out);
    t.deepEqual(m.key.encoder, {
      model: { preset: "tiny-vit", seed: 0 },
      features: "projected",
      resolution: 32,
      dtype: "float32",
    });
    t.is(m.key.ids.count, 40);
    t.is(m.key.kind, "image");
    t.false(m.key.normalize);
    t.regex(m.key.vilref, /^\d+\.\d+\.\d+/);
    const first = await rows(out);
    r = await run("embed", "--model", "preset:tiny-vit", "--images", all40, "--out", out);
    t.regex(r.out, /up to date \(40 rows/);
    // another model: recomputed, the reason named, the rows are the new model's alone
    r = await run("embed", "--model", "preset:tiny-vit:1", "--images", all40, "--out", out);
    t.is(r.code, 0, r.err);
    t.regex(r.err, /the model changed \(encoder\.model\.seed: 0 → 1\); recomputing/);
    t.notRegex(r.out, /up to date/);
    const fresh = path.join(root, "fresh.npy");
    await run("embed", "--model", "preset:tiny-vit:1", "--images", all40, "--out", fresh);
    t.deepEqual(await rows(out), await rows(fresh));
    t.notDeepEqual(await rows(out), first);
    // another input list
    r = await run("embed", "--model", "preset:tiny-vit:1", "--images", test20, "--out", out);
    t.regex(r.err, /the input list changed \(ids\.count: 40 → 20/);
    t.is((await readNpy(out)).shape[0], 20);
    t.is(readFileSync(idsPathFor(out), "utf8").trim().split("\n").length, 20);
    // other options: the feature kind
    r = await run("embed", "--model", "preset:tiny-vit:1", "--images", test20, "--out", out, "--features", "pre");
    t.regex(r.err, /the model changed \(encoder\.features: projected → pre\)/);
    t.is((await readNpy(out)).shape[1], 64);
    // an output without a record (an older vilref) is not trusted
    rmSync(metaPathFor(out));
    r = await run("embed", "--model", "preset:tiny-vit:1", "--images", test20, "--out", out, "--features", "pre");
    t.regex(r.err, /has no provenance record; recomputing/);
    t.true(existsSync(metaPathFor(out)));
  },
);

test.serial(
  "a checkpoint is recorded by its sha256: the same file elsewhere is up to date, another file recomputes",
  async (t) => {
    const a = path.join(root, "a.safetensors");
    const b = path.join(root, "b.safetensors");
    await ViLReF.create("tiny-vit", { seed: 4 }).save(a);
    await ViLReF.create("tiny-vit", { seed: 5 }).save(b);
    const copy = path.join(root, "copy-of-a.safetensors");
    copyFileSync(a, copy);
    const out = path.join(root, "ck.npy");
    await run("embed", "--model", a, "--images", test20, "--out", out);
    t.is(meta(out).key.encoder && (meta(out).key.encoder as { model: { sha256: string } }).model.sha256.length, 64);
    let r = await run("embed", "--model", copy, "--images", test20, "--out", out);
    t.regex(r.out, /up to date/);
    r = await run("embed", "--model", b, "--images", test20, "--out", out);
    t.regex(r.err, /the model changed \(encoder\.model\.sha256: [0-9a-f]{12}… → [0-9a-f]{12}…\); recomputing/);
  },
);

/** An encoder that fails ("power cut") at its n-th batch. */
class Flaky implements ImageEncoder {
  batches = 0;
  constructor(
    readonly inner: ViLReFImageEncoder,
    readonly dieAt = Infinity,
  ) {}
  get imageSize() {
    return this.inner.imageSize;
  }
  get provenance() {
    return this.inner.provenance;
  }
  encodeImages(b: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    if (++this.batches === this.dieAt) return Promise.reject(new Error("power cut"));
    return this.inner.encodeImages(b);
  }
}

test.serial(
  "an interrupted run resumed gives the bytes of an uninterrupted one; resumed with another model it starts over",
  async (t) => {
    const { model, origin } = await modelFromSpec("preset:tiny-rn50:2");
    const enc = new ViLReFImageEncoder(model, "tiny-rn50", {}, await modelProvenance(origin));
    const samples = resolveImageInputs(all40);
    const opts = { batchSize: 4, chunkSize: 8, progress: false as const, normalize: true };
    const clean = path.join(root, "clean.npy");
    await embedImages(samples, enc, { ...opts, out: clean });
    const out = path.join(root, "resumed.npy");
    await t.throwsAsync(embedImages(samples, new Flaky(enc, 7), { ...opts, out }), { message: /power cut/ });
    t.false(existsSync(out));
    t.true(existsSync(path.join(out + ".parts", "chunk-000002.json")));
    const lines: string[] = [];
    const again = new Flaky(enc);
    const r = await embedImages(samples, again, { ...opts, out, info: (l) => lines.push(l) });
    t.is(r.resumedChunks, 3);
    t.is(again.batches, 10 - 6);
    t.deepEqual(readFileSync(out), readFileSync(clean));
    t.deepEqual(readFileSync(idsPathFor(out)), readFileSync(idsPathFor(clean)));
    t.deepEqual(meta(out).key, meta(clean).key);
    // interrupted again, then resumed with another model: its finished chunks are not reused
    const out2 = path.join(root, "other.npy");
    await t.throwsAsync(embedImages(samples, new Flaky(enc, 5), { ...opts, out: out2 }));
    const m2 = await modelFromSpec("preset:tiny-rn50:3");
    const other = new Flaky(new ViLReFImageEncoder(m2.model, "tiny-rn50", {}, await modelProvenance(m2.origin)));
    const info: string[] = [];
    const r2 = await embedImages(samples, other, { ...opts, out: out2, info: (l) => info.push(l) });
    t.is(r2.resumedChunks, 0);
    t.is(other.batches, 10);
    t.regex(info.join("\n"), /an unfinished run\): the model changed \(encoder\.model\.seed: 2 → 3\); starting over/);
    const ref = path.join(root, "ref3.npy");
    await embedImages(samples, new ViLReFImageEncoder(m2.model, "x", {}, await modelProvenance(m2.origin)), {
      ...opts,
      out: ref,
    });
    t.deepEqual(readFileSync(out2), readFileSync(ref));
  },
);

test.serial("--normalize writes rows of norm 1 (images, texts and .npy inputs)", async (t) => {
  const norms = (a: Float32Array, d: number) =>
    Array.from({ length: a.length / d }, (_, i) => Math.hypot(...a.subarray(i * d, (i + 1) * d)));
  const img = path.join(root, "n-img.npy");
  let r = await run("embed", "--model", "preset:tiny-vit", "--images", test20, "--out", img, "--normalize");
  t.is(r.code, 0, r.err);
  const a = await readNpy(img);
  for (const n of norms(a.data as Float32Array, a.shape[1]!)) t.true(Math.abs(n - 1) < 1e-6, String(n));
  t.true(meta(img).key.normalize);
  const raw = path.join(root, "n-raw.npy");
  await run("embed", "--model", "preset:tiny-vit", "--images", test20, "--out", raw);
  const b = await readNpy(raw);
  t.true(
    norms(b.data as Float32Array, b.shape[1]!).some((n) => Math.abs(n - 1) > 1e-3),
    "the model's rows are not unit",
  );
  const texts = path.join(root, "t.txt");
  writeFileSync(texts, "视盘边界清\n黄斑区可见玻璃膜疣\n眼底未见明显异常\n");
  const txt = path.join(root, "n-txt.npy");
  r = await run("embed", "--model", "preset:tiny-vit", "--texts", texts, "--vocab", vocab, "--out", txt, "--normalize");
  t.is(r.code, 0, r.err);
  const c = await readNpy(txt);
  for (const n of norms(c.data as Float32Array, c.shape[1]!)) t.true(Math.abs(n - 1) < 1e-6, String(n));
  const npyOut = path.join(root, "n-npy.npy");
  r = await run(
    "embed",
    "--model",
    "preset:tiny-vit",
    "--npy",
    sharedPath("fixtures", "tiny-vit", "images.npy"),
    "--out",
    npyOut,
    "--normalize",
  );
  t.is(r.code, 0, r.err);
  const d = await readNpy(npyOut);
  for (const n of norms(d.data as Float32Array, d.shape[1]!)) t.true(Math.abs(n - 1) < 1e-6, String(n));
  t.is(meta(npyOut).key.kind, "npy-images");
});
