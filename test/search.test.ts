// Gallery search: the top-k of `searchIndex` / `vilref search` equals a brute-force computation on
// random indexes, ties (equal scores, by the lower row) and k larger than the index included, with the
// index read in pieces; text→image, image→image and image→text through the CLI; a 200,000 × 256
// index is searched with a peak RSS far below an n×n matrix (measured in a process of its own); bad
// input (a dimension that differs from the model's, a .npy of the wrong dtype) names the culprit.
import test from "ava";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { main } from "../lib/cli/main.js";
import { idsPathFor } from "../lib/embed/index.js";
import { writeNpy } from "../lib/io/npy.js";
import { convertCheckpoint } from "../lib/model/pretrained.js";
import { openIndex, searchIndex } from "../lib/search/index.js";
import { repoRoot, sharedPath } from "./helpers/shared.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-search-"));
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");
const drive = path.join(sharedPath("data", "DRIVE"), "*", "images", "*.tif");

/** A seeded uniform generator in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function writeIndex(name: string, data: Float32Array, n: number, d: number, ids = true): Promise<string> {
  const f = path.join(root, name);
  await writeNpy(f, { dtype: "float32", shape: [n, d], data });
  if (ids) writeFileSync(idsPathFor(f), Array.from({ length: n }, (_, i) => `item-${i}\n`).join(""));
  return f;
}

/** Brute force: cosine of every pair in float64, sorted by score (descending) then row. */
function bruteForce(q: Float32Array, nq: number, x: Float32Array, n: number, d: number, k: number) {
  const norm = (a: Float32Array, i: number) => Math.hypot(...a.subarray(i * d, (i + 1) * d)) || 1;
  return Array.from({ length: nq }, (_, i) => {
    const qi = norm(q, i);
    const all = Array.from({ length: n }, (_, j) => {
      let s = 0;
      for (let c = 0; c < d; c++) s += q[i * d + c]! * x[j * d + c]!;
      return { row: j, score: s / qi / norm(x, j) };
    });
    all.sort((a, b) => b.score - a.score || a.row - b.row);
    return all.slice(0, k);
  });
}

test("equal to brute force with ties (by the lower row) and k larger than the index, over pieces", async (t) => {
  // rows of ±1/4 in 16 dimensions have norm 1 and dyadic inner products: every score is exact, and
  // with 300 rows over few distinct sign patterns most of them tie
  const d = 16;
  const n = 300;
  const r = rng(1);
  const patterns = Array.from({ length: 40 }, () => Float32Array.from({ length: d }, () => (r() < 0.5 ? -0.25 : 0.25)));
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) x.set(patterns[Math.floor(r() * patterns.length)]!, i * d);
  const nq = 25;
  const q = new Float32Array(nq * d);
  for (let i = 0; i < nq; i++) q.set(patterns[Math.floor(r() * patterns.length)]!, i * d);
  const file = await writeIndex("ties.npy", x, n, d);
  const index = await openIndex(file);
  for (const k of [1, 7, 64, 300, 500]) {
    for (const pieceRows of [37, 300]) {
      const got = await searchIndex(index, { data: q, shape: [nq, d] }, { k, pieceRows, block: 4096 });
      const want = bruteForce(q, nq, x, n, d, k);
      t.is(got.k, Math.min(k, n));
      got.hits.forEach((h, i) => {
        t.deepEqual(
          h.map((e) => e.row),
          want[i]!.map((e) => e.row),
          `k ${k}, pieces of ${pieceRows}, query ${i}`,
        );
        t.deepEqual(
          h.map((e) => e.score),
          want[i]!.map((e) => e.score),
        );
        t.deepEqual(
          h.map((e) => e.id),
          want[i]!.map((e) => `item-${e.row}`),
        );
      });
    }
  }
});

test("equal to brute force on a random index of unnormalised rows", async (t) => {
  const d = 48;
  const n = 2000;
  const nq = 30;
  const r = rng(7);
  const x = Float32Array.from({ length: n * d }, () => (r() - 0.5) * (1 + 3 * r()));
  const q = Float32Array.from({ length: nq * d }, () => r() - 0.5);
  const file = await writeIndex("random.npy", x, n, d, false);
  const got = await searchIndex(file, { data: q, shape: [nq, d] }, { k: 10, pieceRows: 333 });
  const want = bruteForce(q, nq, x, n, d, 10);
  got.hits.forEach((h, i) => {
    t.deepEqual(
      h.map((e) => e.row),
      want[i]!.map((e) => e.row),
    );
    h.forEach((e, j) => t.true(Math.abs(e.score - want[i]![j]!.score) < 1e-5));
    t.deepEqual(
      h.map((e) => e.id),
      h.map((e) => String(e.row)),
      "no ids file: rows by number",
    );
  });
});

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const log = console.log;
  const write = process.stdout.write;
  const ewrite = process.stderr.write;
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    const code = await main(["node", "vilref", ...args], { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  } finally {
    console.log = log;
    process.stdout.write = write;
    process.stderr.write = ewrite;
  }
}

const hitsOf = (csv: string) =>
  csv
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => l.split(/[,\t]/));

test.serial("the CLI: text→image, image→image, image→text over vilref embed's output; --queries .npy", async (t) => {
  const model = path.join(root, "tiny.safetensors");
  const config = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "config.json"), "utf8")) as never;
  await convertCheckpoint(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), model, {
    config,
    vocab,
    contextLength: 24,
  });
  const gallery = path.join(root, "drive.npy");
  let r = await run("embed", "--model", model, "--images", drive, "--out", gallery, "--no-progress");
  t.is(r.code, 0, r.err);
  // image→image: each image finds itself first
  r = await run(
    "search",
    "--index",
    gallery,
    "--model",
    model,
    "--image",
    path.join(sharedPath("data", "DRIVE"), "test", "images"),
    "-k",
    "3",
  );
  t.is(r.code, 0, r.err);
  const hits = hitsOf(r.out);
  t.is(hits.length, 20 * 3);
  for (let i = 0; i < 20; i++) {
    const [query, rank, id, , score] = hits[i * 3]!;
    t.is(rank, "1");
    t.is(id, `test/images/${query}`);
    t.true(Math.abs(Number(score) - 1) < 1e-5, score);
  }
  // text→image, written as CSV and equal to searching the text's own features
  const out = path.join(root, "t2i.csv");
  r = await run(
    "search",
    "--index",
    gallery,
    "--model",
    model,
    "--text",
    "视盘边界清，杯盘比约0.7",
    "-k",
    "50",
    "--out",
    out,
  );
  t.is(r.code, 0, r.err);
  t.regex(r.out, /1 queries × 40 hits over 40 items/);
  const csv = hitsOf(readFileSync(out, "utf8"));
  t.is(csv.length, 40, "k larger than the index: every item");
  t.deepEqual(
    csv.map((h) => h[0]),
    Array(40).fill("text"),
  );
  const texts = path.join(root, "q.txt");
  writeFileSync(texts, "视盘边界清，杯盘比约0.7\n");
  const qfeat = path.join(root, "q.npy");
  r = await run("embed", "--model", model, "--texts", texts, "--out", qfeat, "--no-progress");
  t.is(r.code, 0, r.err);
  const viaNpy = path.join(root, "viaNpy.csv");
  r = await run("search", "--index", gallery, "--queries", qfeat, "-k", "50", "--out", viaNpy);
  t.is(r.code, 0, r.err);
  t.deepEqual(
    hitsOf(readFileSync(viaNpy, "utf8")).map((h) => h[2]),
    csv.map((h) => h[2]),
  );
  // image→text: an index of report features, an image query
  const reports = path.join(root, "reports.txt");
  writeFileSync(reports, "视盘边界清\n黄斑区可见玻璃膜疣\n眼底未见明显异常\n视网膜散在出血\n");
  const rindex = path.join(root, "reports.npy");
  r = await run("embed", "--model", model, "--texts", reports, "--out", rindex, "--no-progress");
  t.is(r.code, 0, r.err);
  const one = path.join(sharedPath("data", "DRIVE"), "test", "images", "01_test.tif");
  r = await run(
    "search",
    "--index",
    rindex,
    "--model",
    model,
    "--image",
    one,
    "-k",
    "2",
    "--out",
    path.join(root, "i2t.jsonl"),
  );
  t.is(r.code, 0, r.err);
  const j = JSON.parse(readFileSync(path.join(root, "i2t.jsonl"), "utf8")) as { query: string; hits: { id: string }[] };
  t.is(j.hits.length, 2);
  t.true(j.hits.every((h) => ["1", "2", "3", "4"].includes(h.id)));
});

test.serial("bad input names the culprit: another dimension, a .npy of the wrong dtype, a missing model", async (t) => {
  const model = path.join(root, "tiny.safetensors"); // from the test above (serial)
  const wide = await writeIndex("wide.npy", new Float32Array(10 * 33), 10, 33);
  let r = await run("search", "--index", wide, "--model", model, "--text", "视盘", "-k", "3");
  t.is(r.code, 1);
  t.regex(r.err, /^vilref search: .*wide\.npy: rows of 33 features, but the queries have 24/);
  const ints = path.join(root, "ints.npy");
  await writeNpy(ints, { dtype: "int64", shape: [4, 24], data: new BigInt64Array(96) });
  r = await run("search", "--index", ints, "--model", model, "--text", "视盘");
  t.is(r.code, 1);
  t.regex(r.err, /ints\.npy: dtype int64; an index holds float32 features/);
  const good = await writeIndex("good.npy", new Float32Array(4 * 24).fill(1), 4, 24);
  r = await run("search", "--index", good, "--queries", ints);
  t.is(r.code, 1);
  t.regex(r.err, /--queries .*ints\.npy: dtype int64; queries are float32 feature rows/);
  const flat = path.join(root, "flat.npy");
  await writeNpy(flat, { dtype: "float32", shape: [24], data: new Float32Array(24) });
  r = await run("search", "--index", flat, "--queries", good);
  t.is(r.code, 1);
  t.regex(r.err, /flat\.npy: shape \(24\); an index is 2-D/);
  r = await run("search", "--index", good, "--text", "视盘");
  t.is(r.code, 2);
  t.regex(r.err, /--text or a text --queries file needs --model/);
  r = await run("search", "--index", good, "--text", "视盘", "--queries", ints);
  t.is(r.code, 2);
  t.regex(r.err, /exactly one of --text/);
  writeFileSync(idsPathFor(good), "a\nb\n");
  r = await run("search", "--index", good, "--queries", good);
  t.is(r.code, 1);
  t.regex(r.err, /good\.ids\.txt: 2 ids for the 4 rows/);
});

const execFileP = promisify(execFile);

async function peakRss(...args: string[]): Promise<number> {
  const { stderr } = await execFileP(
    process.execPath,
    ["--import=tsx", path.join(repoRoot, "test", "helpers", "rss.ts"), ...args, "--threads", "2"],
    { cwd: repoRoot, maxBuffer: 1 << 24 },
  );
  const m = /maxRSS (\d+)\s*$/.exec(stderr);
  if (!m) throw new Error(`no maxRSS in ${stderr}`);
  return Number(m[1]) * 1024;
}

test.serial(
  "a 200,000 × 256 index is searched with a peak RSS far below an n×n matrix (and below the index itself)",
  async (t) => {
    const n = 200_000;
    const d = 256;
    const nq = 500;
    const r = rng(3);
    const x = new Float32Array(n * d);
    for (let i = 0; i < x.length; i++) x[i] = r() - 0.5;
    const big = await writeIndex("big.npy", x, n, d);
    const qs = path.join(root, "big-q.npy");
    await writeNpy(qs, { dtype: "float32", shape: [nq, d], data: x.slice(0, nq * d) });
    const small = await writeIndex("small.npy", x.slice(0, 1000 * d), 1000, d);
    const out = path.join(root, "big-hits.csv");
    const baseline = await peakRss(
      "search",
      "--index",
      small,
      "--queries",
      qs,
      "-k",
      "10",
      "--out",
      path.join(root, "s.csv"),
    );
    const peak = await peakRss("search", "--index", big, "--queries", qs, "-k", "10", "--out", out);
    const nxn = n * n * 4;
    const indexBytes = n * d * 4;
    t.log(
      `peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB (a 1,000-row index: ` +
        `${(baseline / 2 ** 20).toFixed(0)} MiB); the index is ${(indexBytes / 2 ** 20).toFixed(0)} MiB, ` +
        `an n×n float32 matrix ${(nxn / 2 ** 30).toFixed(0)} GiB`,
    );
    t.true(peak < nxn / 100, "far below an n×n matrix");
    t.true(peak - baseline < indexBytes, "the index is never held whole");
    // and the answer is right: each query's first hit is itself (queries are the first rows)
    const hits = hitsOf(readFileSync(out, "utf8"));
    t.is(hits.length, nq * 10);
    for (let i = 0; i < nq; i++) t.is(hits[i * 10]![3], String(i));
  },
);
