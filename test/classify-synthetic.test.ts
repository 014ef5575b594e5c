// With a small model pre-trained here on synthetic fundus data (the demo's preset and recipe, a short
// budget), `vilref classify --taxonomy` recovers the synthetic findings of a held-out set above
// chance — with no --vocab: pre-training's final model carries its vocabulary — and the per-image
// predictions of `eval zeroshot`, `eval probe` and `eval finetune` are the evaluations' own scores
// (per-class AUC recomputed from the file equals the reported one) with the gold labels beside them.
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { rocAuc } from "../lib/eval/metrics.js";
import { parseTable } from "../lib/io/table.js";
import { ViLReF } from "../lib/model/vilref.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { pretrain } from "../lib/train/pretrain.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-classify-synth-"));
const held = path.join(root, "held");
let model = "";
let gold = new Map<string, Record<string, number>>();

test.before(async () => {
  await writeSynthDataset(path.join(root, "train"), 400, 11, { size: 128 });
  await writeSynthDataset(held, 120, 13, { size: 128 });
  const r = await pretrain({
    model: { preset: "demo-rn128" },
    data: { train: path.join(root, "train", "manifest.jsonl"), augment: { scale: [0.8, 1], hflip: 0.5 } },
    batchSize: 32,
    steps: 200,
    text: { contextLength: 64, vocabSize: 1000 },
    schedule: { lr: 1e-3, warmupSteps: 40, minLr: 5e-5 },
    loss: "wscl",
    queue: { size: 256 },
    momentum: 0.99,
    seed: 3,
    threads: 2,
    output: path.join(root, "run"),
    eval: { every: 0 },
    checkpoint: { every: 0, keep: 1 },
  });
  model = path.join(r.output, "final", "model.safetensors");
  const lines = readFileSync(path.join(held, "manifest.jsonl"), "utf8").trim().split("\n");
  gold = new Map(
    lines.map((l) => {
      const o = JSON.parse(l) as { id: string; labels: Record<string, number> };
      return [o.id, o.labels];
    }),
  );
  // splits for the probe and fine-tuning: half train, a sixth validation, a third test
  writeFileSync(
    path.join(held, "splits.jsonl"),
    lines
      .map((l, i) =>
        JSON.stringify({ ...(JSON.parse(l) as object), split: i < 60 ? "train" : i < 80 ? "val" : "test" }),
      )
      .join("\n") + "\n",
  );
  for (const [name, from, to] of [
    ["tr", 0, 60],
    ["va", 60, 80],
    ["te", 80, 120],
  ] as const)
    writeFileSync(path.join(held, `${name}.jsonl`), lines.slice(from, to).join("\n") + "\n");
});

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const log = console.log;
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  try {
    const code = await main(["node", "vilref", ...args, "--threads", "2", "--no-progress"], {
      out: (s) => (out += s),
      err: (s) => (err += s),
    });
    return { code, out, err };
  } finally {
    console.log = log;
  }
}

/**
 * Per-class AUC of predictions rows against the held-out gold labels (classes with both outcomes),
 * as the evaluation counts them: an uncertain finding (0.5) is left out of its class.
 */
function aucs(rows: { id: string; scores: Record<string, number> }[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of Object.keys(rows[0]!.scores)) {
    const known = rows.filter((r) => gold.get(r.id)?.[c] !== 0.5);
    const y = Uint8Array.from(known, (r) => (gold.get(r.id)?.[c] === 1 ? 1 : 0));
    const pos = y.reduce((a, b) => a + b, 0);
    if (pos === 0 || pos === y.length) continue;
    out.set(
      c,
      rocAuc(
        Float64Array.from(known, (r) => r.scores[c]!),
        y,
      ),
    );
  }
  return out;
}

const jsonl = <T>(f: string) =>
  readFileSync(f, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as T);

test.serial(
  "classify --taxonomy recovers the synthetic findings above chance, with the vocabulary inside the model",
  async (t) => {
    t.truthy((await ViLReF.load(model)).vocab, "pre-training's final model carries its vocabulary");
    const out = path.join(root, "taxonomy.jsonl");
    const r = await run(
      "classify",
      "--model",
      model,
      "--images",
      path.join(held, "manifest.jsonl"),
      "--taxonomy",
      "--multi-label",
      "--scoring",
      "relative",
      "--out",
      out,
    );
    t.is(r.code, 0, r.err);
    const rows = jsonl<{ id: string; predicted: string[]; scores: Record<string, number> }>(out);
    t.is(rows.length, 120);
    t.is(Object.keys(rows[0]!.scores).length, 31, "every taxonomy label");
    const a = aucs(rows);
    const mean = [...a.values()].reduce((s, x) => s + x, 0) / a.size;
    t.log(
      `mean AUC ${mean.toFixed(3)} over ${a.size} findings: ` +
        `${[...a].map(([c, v]) => `${c} ${v.toFixed(2)}`).join(", ")}`,
    );
    t.true(a.size >= 8, "the held-out set has most synthetic findings");
    t.true(mean > 0.58, `mean AUC ${mean}`);
    t.true([...a.values()].filter((v) => v > 0.5).length > a.size / 2, "most findings above chance");
  },
);

test.serial("eval zeroshot --predictions: the evaluation's own scores per image, gold beside them", async (t) => {
  const preds = path.join(root, "zs.csv");
  const metrics = path.join(root, "zs.json");
  const r = await run(
    "eval",
    "zeroshot",
    "--model",
    model,
    "--data",
    path.join(held, "manifest.jsonl"),
    "--split",
    "all",
    "--bootstrap",
    "0",
    "--out",
    metrics,
    "--predictions",
    preds,
  );
  t.is(r.code, 0, r.err);
  const m = JSON.parse(readFileSync(metrics, "utf8")) as {
    classes: string[];
    perClass: Record<string, { auc: { value: number } }>;
    predictions?: unknown;
  };
  t.is(m.predictions, undefined, "the metrics JSON does not carry the per-image table");
  const p = parseTable(readFileSync(preds, "utf8"), { file: preds, delimiter: "," });
  t.deepEqual(p.header, ["id", "image", "gold", "predicted", "score", ...m.classes]);
  t.is(p.rows.length, 120);
  const rows = p.rows.map((row) => ({
    id: row.fields[0]!,
    gold: row.fields[2]!,
    scores: Object.fromEntries(m.classes.map((c, i) => [c, Number(row.fields[5 + i])])),
  }));
  for (const row of rows) {
    // a present finding by its name, an uncertain one (0.5: "可疑…") followed by "?"
    const g = gold.get(row.id)!;
    const want = m.classes.flatMap((c) => (g[c] === 1 ? [c] : g[c] === 0.5 ? [`${c}?`] : []));
    t.deepEqual(row.gold ? row.gold.split(";") : [], want, row.id);
  }
  for (const [c, v] of aucs(rows)) t.true(Math.abs(v - m.perClass[c]!.auc.value) < 1e-9, c);
});

test.serial(
  "eval probe and eval finetune --predictions: test-split probabilities, one row per test image",
  async (t) => {
    const probe = path.join(root, "probe.jsonl");
    let r = await run(
      "eval",
      "probe",
      "--model",
      model,
      "--data",
      path.join(held, "splits.jsonl"),
      "--bootstrap",
      "0",
      "--c-grid",
      "0.1,1",
      "--predictions",
      probe,
    );
    t.is(r.code, 0, r.err);
    const pr = jsonl<{
      id: string;
      gold: string[];
      predicted: string[];
      score: number;
      scores: Record<string, number>;
    }>(probe);
    t.is(pr.length, 40);
    for (const row of pr) {
      const s = Object.values(row.scores);
      t.true(s.every((x) => x >= 0 && x <= 1));
      t.deepEqual(
        row.predicted,
        Object.keys(row.scores).filter((c) => row.scores[c]! >= 0.5),
      );
      t.is(row.score, Math.max(...s));
    }
    const ft = path.join(root, "ft.csv");
    r = await run(
      "eval",
      "finetune",
      "--model",
      model,
      "--train",
      path.join(held, "tr.jsonl"),
      "--val",
      path.join(held, "va.jsonl"),
      "--test",
      path.join(held, "te.jsonl"),
      "--epochs",
      "1",
      "--frozen",
      "--bootstrap",
      "0",
      "--predictions",
      ft,
    );
    t.is(r.code, 0, r.err);
    const f = parseTable(readFileSync(ft, "utf8"), { file: ft, delimiter: "," });
    t.is(f.rows.length, 40);
    t.deepEqual(f.header.slice(0, 5), ["id", "image", "gold", "predicted", "score"]);
    t.is(f.header.length, 5 + 31);
    t.deepEqual(
      f.rows.map((x) => x.fields[0]),
      readFileSync(path.join(held, "te.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { id: string }).id),
    );
  },
);
