/**
 * Benchmark: reports -> model inputs on one core.
 *
 *   npx tsx bench/tokenize.ts [--reports 100000] [--context-length 52] [--no-python] [--record]
 *                             [--baseline DIR]
 *
 * 1. Builds a deterministic corpus of N reports by recombining the sentences of the shared dev
 *    reports (seeded), so every report is a realistic Chinese fundus report but most are distinct.
 * 2. Times, on this process's single JS thread: labels only (evidence off / on), tokens only, and
 *    labels + tokens together (the pre-training data path), in reports/s.
 * 3. Runs the released tokenizer in Python (bench/baselines/bert_tokenizer.py, a faithful port of
 *    cn_clip's bert_tokenizer.py: neither `transformers` nor `tokenizers` is installed for Debian's
 *    python3) on the same texts, and checks both produce identical ids (SHA-256 of every row).
 *
 * 4. With --baseline DIR (a checkout or `git archive` of an earlier commit, whose lib/ resolves
 *    this checkout's node_modules), times that commit's labeler and this one alternately on the same
 *    corpus (labels alone, and labels + tokens) and prints the ratios, in wall-clock time and in CPU
 *    time of this process (steadier on a machine shared with other work).
 *
 * --record appends the table, with date, machine and commit, to bench/RESULTS.md.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { mulberry32 } from "../lib/data/rng.js";
import { Labeler } from "../lib/labels/index.js";
import { BertTokenizer } from "../lib/text/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const shared = path.resolve(repo, "../shared");

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const N = arg("--reports", 100_000);
const L = arg("--context-length", 52);
const withPython = !process.argv.includes("--no-python");
const record = process.argv.includes("--record");
const baselineAt = process.argv.indexOf("--baseline");
const baselineDir = baselineAt >= 0 ? path.resolve(process.argv[baselineAt + 1] ?? "") : null;

// ---- corpus --------------------------------------------------------------------------------
const dev = readFileSync(path.join(shared, "labels/dev-reports.jsonl"), "utf8")
  .split("\n")
  .filter(Boolean)
  .map((l) => (JSON.parse(l) as { text: string }).text);
const sentences = dev.flatMap((t) =>
  t
    .split(/(?<=[。\n])/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);
const rand = mulberry32(20240601).next;
const corpus: string[] = [];
for (let i = 0; i < N; i++) {
  if (i % 10 === 0) {
    corpus.push(dev[Math.floor(rand() * dev.length)] as string);
    continue;
  }
  const k = 1 + Math.floor(rand() * 5);
  let s = "";
  for (let j = 0; j < k; j++) s += sentences[Math.floor(rand() * sentences.length)];
  corpus.push(s);
}
const chars = corpus.reduce((a, t) => a + t.length, 0);

// ---- timing ---------------------------------------------------------------------------------
const lab = new Labeler();
const tok = BertTokenizer.fromFile(path.join(shared, "vocab/chinese-bert-vocab.txt"));
const row = new Int32Array(L);

function time(label: string, fn: (t: string) => void): { label: string; perSec: number; seconds: number } {
  // Warm up on a slice, then measure the whole corpus (best of 3).
  for (let i = 0; i < Math.min(5000, corpus.length); i++) fn(corpus[i] as string);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < corpus.length; i++) fn(corpus[i] as string);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return { label, perSec: corpus.length / best, seconds: best };
}

/** One pass over the corpus: reports per wall-clock second and per CPU second of this process. */
function timeCpu(fn: (t: string) => void): { perSec: number; perCpuSec: number } {
  for (let i = 0; i < Math.min(2000, corpus.length); i++) fn(corpus[i] as string);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < corpus.length; i++) fn(corpus[i] as string);
  const c = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  return { perSec: corpus.length / wall, perCpuSec: corpus.length / ((c.user + c.system) / 1e6) };
}

const rows = [
  time("labels (evidence off)", (t) => void lab.label(t, { evidence: false })),
  time("labels (evidence on)", (t) => void lab.label(t)),
  time(`tokens (L=${L})`, (t) => void tok.encodeForModel(t, L, row, 0)),
  time("tokens, whole text (no truncation)", (t) => void tok.encode(t)),
  time(`labels + tokens (L=${L})`, (t) => {
    lab.label(t, { evidence: false });
    tok.encodeForModel(t, L, row, 0);
  }),
];

// ---- same-run comparison with an earlier labeler ---------------------------------------------
type LabelFn = (t: string) => void;
async function compareBaseline(dir: string): Promise<string[]> {
  const mod = (await import(pathToFileURL(path.join(dir, "lib/labels/index.ts")).href)) as {
    Labeler: new () => { label(t: string, o: { evidence: boolean }): unknown };
  };
  const old = new mod.Labeler();
  const pairs: [string, LabelFn, LabelFn][] = [
    [
      "labels (evidence off)",
      (t) => void old.label(t, { evidence: false }),
      (t) => void lab.label(t, { evidence: false }),
    ],
    [
      `labels + tokens (L=${L})`,
      (t) => {
        old.label(t, { evidence: false });
        tok.encodeForModel(t, L, row, 0);
      },
      (t) => {
        lab.label(t, { evidence: false });
        tok.encodeForModel(t, L, row, 0);
      },
    ],
  ];
  const out = ["", `Same run, alternating, best of 3 each: baseline = ${dir}`, ""];
  out.push(
    "| what | baseline reports/s | this commit reports/s | ratio | baseline reports/CPU-s | this commit " +
      "reports/CPU-s | ratio |",
    "|---|---:|---:|---:|---:|---:|---:|",
  );
  for (const [what, a, b] of pairs) {
    const best = { a: 0, b: 0, ca: 0, cb: 0 };
    for (let r = 0; r < 3; r++) {
      const x = timeCpu(a);
      const y = timeCpu(b);
      best.a = Math.max(best.a, x.perSec);
      best.ca = Math.max(best.ca, x.perCpuSec);
      best.b = Math.max(best.b, y.perSec);
      best.cb = Math.max(best.cb, y.perCpuSec);
    }
    const wall = `${fmt(best.a)} | ${fmt(best.b)} | ${(best.b / best.a).toFixed(2)}`;
    out.push(`| ${what} | ${wall} | ${fmt(best.ca)} | ${fmt(best.cb)} | ${(best.cb / best.ca).toFixed(2)} |`);
  }
  return out;
}

// TS ids digest, same format as the Python baseline.
const h = createHash("sha256");
let tsTokens = 0;
const t0 = performance.now();
const all = tok.encodeBatch(corpus, L);
const tsBatchSeconds = (performance.now() - t0) / 1000;
for (let i = 0; i < corpus.length; i++) {
  const r = all.data.subarray(i * L, (i + 1) * L);
  h.update(Array.from(r).join(",") + "\n");
  for (const x of r) if (x !== 0) tsTokens++;
}
const tsDigest = h.digest("hex");

let py: { texts: number; seconds: number; texts_per_s: number; tokens: number; sha256: string } | null = null;
let pyNote = "";
if (withPython) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "vilref-bench-"));
  const file = path.join(dir, "texts.jsonl");
  writeFileSync(file, corpus.map((t) => JSON.stringify({ text: t })).join("\n") + "\n");
  const r = spawnSync(
    "python3",
    [
      path.join(here, "baselines/bert_tokenizer.py"),
      "--vocab",
      path.join(shared, "vocab/chinese-bert-vocab.txt"),
      "--bench",
      file,
      "-L",
      String(L),
    ],
    { encoding: "utf8" },
  );
  if (r.status === 0) py = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  else pyNote = `python baseline failed: ${r.stderr || r.error}`;
}

// ---- report ---------------------------------------------------------------------------------
const fmt = (x: number): string => Math.round(x).toLocaleString("en-US");
const lines: string[] = [];
lines.push(
  `corpus: ${fmt(N)} reports, ${fmt(chars)} characters (mean ${(chars / N).toFixed(0)} per report), ` +
    `context length ${L}`,
);
lines.push("");
lines.push("| what | reports/s | seconds |");
lines.push("|---|---:|---:|");
for (const r of rows) lines.push(`| ${r.label} | ${fmt(r.perSec)} | ${r.seconds.toFixed(2)} |`);
lines.push(
  `| tokens, encodeBatch → Int32Array [N, ${L}] (first run) | ${fmt(N / tsBatchSeconds)} | ` +
    `${tsBatchSeconds.toFixed(2)} |`,
);
if (py) {
  lines.push(`| tokens, released tokenizer in Python (baseline) | ${fmt(py.texts_per_s)} | ${py.seconds.toFixed(2)} |`);
  const best = rows[2] as { perSec: number };
  const whole = rows[3] as { perSec: number };
  lines.push("");
  lines.push(
    `TypeScript tokenizer vs Python baseline: ${(best.perSec / py.texts_per_s).toFixed(1)}× the texts/s at ` +
      `L=${L} (${(whole.perSec / py.texts_per_s).toFixed(1)}× when the whole text is tokenized; ` +
      "the released code always tokenizes the whole text, this one stops at L); " +
      `ids identical on all ${fmt(N)} texts: ${py.sha256 === tsDigest ? "yes" : "NO"} (sha256 ` +
      `${tsDigest.slice(0, 16)}…, ${fmt(tsTokens)} non-pad ids)`,
  );
} else if (pyNote) lines.push("", pyNote);
if (baselineDir !== null) lines.push(...(await compareBaseline(baselineDir)));
const text = lines.join("\n");
console.log(text);

if (record) {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repo, encoding: "utf8" }).trim();
  } catch {}
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const header =
    `\n### Reports → labels + tokens (bench/tokenize.ts), ${new Date().toISOString().slice(0, 10)}\n\nMachine: ` +
    `${cpu}, ${os.cpus().length} cores (one JS thread used; Python single-threaded), Node ${process.version}, ` +
    `python3 ${spawnSync("python3", ["--version"], { encoding: "utf8" }).stdout.trim().replace("Python ", "")}; ` +
    `commit ${commit}.\nCommand: \`npx tsx bench/tokenize.ts --reports ${N} --context-length ${L}\`\n\n`;
  const file = path.join(here, "RESULTS.md");
  if (!existsSync(file)) writeFileSync(file, "# Benchmark results\n");
  appendFileSync(file, header + text + "\n");
  console.log(`recorded in ${path.relative(repo, file)}`);
}
