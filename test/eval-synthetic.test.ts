// End to end on synthetic fundus data with the demo's model (preset demo-rn128, WSCL + queue)
// pre-trained once here on a short budget (200 steps of 32 on 600 pairs; the full demo runs 1,400
// steps on 1,500), shared by every test of this file:
// - zero-shot and the linear probe through `vilref eval` beat chance by a clear margin, CIs included,
//   and the probe on frozen pre-projection features is at least as good as zero-shot;
// - `vilref classify --taxonomy` recovers the synthetic findings of a held-out set above chance —
//   with no --vocab: pre-training's final model carries its vocabulary — and the per-image
//   predictions of `eval zeroshot`, `eval probe` and `eval finetune` are the evaluations' own scores
//   (per-class AUC recomputed from the file equals the reported one) with the gold labels beside them.
import test, { type ExecutionContext } from "ava";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { rocAuc } from "../lib/eval/metrics.js";
import { parseTable } from "../lib/io/table.js";
import { ViLReF } from "../lib/model/vilref.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { pretrain } from "../lib/train/pretrain.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-synth-e2e-"));
const evalDir = path.join(root, "eval");
let model = "";
let gold = new Map<string, Record<string, number>>();
const seconds = { data: 0, pretraining: 0 };

const jsonl = <T>(f: string) =>
  readFileSync(f, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as T);

/** Lines of `lines` with a split by position: [train, val) "train", [val, test) "val", the rest "test". */
const withSplits = (lines: string[], val: number, testFrom: number) =>
  lines
    .map((l, i) =>
      JSON.stringify({ ...(JSON.parse(l) as object), split: i < val ? "train" : i < testFrom ? "val" : "test" }),
    )
    .join("\n") + "\n";

// The training set (seed 11) and the evaluation set (seed 13, 360 images): half for the probe's training,
// a sixth for choosing C, a third for testing. Its first 120 images are the held-out set of the
// classify tests (60 / 20 / 40). Then the one pre-training.
test.before(async () => {
  const t0 = performance.now();
  await writeSynthDataset(path.join(root, "train"), 600, 11, { size: 192 });
  const N = 360;
  await writeSynthDataset(evalDir, N, 13, { size: 192 });
  const lines = readFileSync(path.join(evalDir, "manifest.jsonl"), "utf8").trim().split("\n");
  writeFileSync(path.join(evalDir, "eval.jsonl"), withSplits(lines, N / 2, (2 * N) / 3));
  const held = lines.slice(0, 120);
  writeFileSync(path.join(evalDir, "held.jsonl"), held.join("\n") + "\n");
  writeFileSync(path.join(evalDir, "splits.jsonl"), withSplits(held, 60, 80));
  for (const [name, from, to] of [
    ["tr", 0, 60],
    ["va", 60, 80],
    ["te", 80, 120],
  ] as const)
    writeFileSync(path.join(evalDir, `${name}.jsonl`), held.slice(from, to).join("\n") + "\n");
  gold = new Map(
    held.map((l) => {
      const o = JSON.parse(l) as { id: string; labels: Record<string, number> };
      return [o.id, o.labels];
    }),
  );
  const tData = performance.now();
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
  seconds.data = (tData - t0) / 1000;
  seconds.pretraining = (performance.now() - tData) / 1000;
});

interface Est {
  value: number | null;
  lo: number | null;
  hi: number | null;
}
interface Out {
  n: number;
  classes: string[];
  metrics: Record<string, Est>;
  perClass: Record<string, { auc: Est; positives: number }>;
  notes: string[];
  C?: number;
}

const expectOk = (t: ExecutionContext, r: { code: number; err: string }) => t.is(r.code, 0, r.err);

/** A `vilref` command line in this process (two threads, no progress): its exit code and output. */
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

test.serial(
  "pre-trained briefly with the demo recipe: zero-shot and the probe beat chance clearly; \
probe ≥ zero-shot",
  async (t) => {
    const t0 = performance.now();
    const data = path.join(evalDir, "eval.jsonl");
    const zsOut = path.join(root, "zs.json");
    const prOut = path.join(root, "probe.json");
    expectOk(
      t,
      await run(
        "eval",
        "zeroshot",
        "--model",
        model,
        "--data",
        data,
        "--split",
        "test",
        "--bootstrap",
        "200",
        "--out",
        zsOut,
        "--report",
        path.join(root, "zs-report"),
      ),
    );
    expectOk(t, await run("eval", "probe", "--model", model, "--data", data, "--bootstrap", "200", "--out", prOut));
    expectOk(
      t,
      await run(
        "eval",
        "retrieval",
        "--model",
        model,
        "--data",
        data,
        "--split",
        "test",
        "--bootstrap",
        "100",
        "--out",
        path.join(root, "ret.json"),
      ),
    );
    const tEval = performance.now();
    const zs = JSON.parse(readFileSync(zsOut, "utf8")) as Out;
    const pr = JSON.parse(readFileSync(prOut, "utf8")) as Out;
    const ret = JSON.parse(readFileSync(path.join(root, "ret.json"), "utf8")) as {
      n: number;
      imageToText: { recall: Record<string, Est> };
    };
    const z = zs.metrics.auc!.value!;
    const p = pr.metrics.auc!.value!;
    const per = (o: Out) => o.classes.map((c) => `${c} ${o.perClass[c]!.auc.value?.toFixed(2)}`).join(", ");
    t.log(
      `data ${seconds.data.toFixed(1)} s, pre-training ${seconds.pretraining.toFixed(1)} s, ` +
        `three evaluations ${((tEval - t0) / 1000).toFixed(1)} s`,
    );
    t.log(
      `zero-shot mean AUC ${z.toFixed(3)} [${zs.metrics.auc!.lo?.toFixed(3)}, ` +
        `${zs.metrics.auc!.hi?.toFixed(3)}]: ${per(zs)}`,
    );
    t.log(
      `probe     mean AUC ${p.toFixed(3)} [${pr.metrics.auc!.lo?.toFixed(3)}, ${pr.metrics.auc!.hi?.toFixed(3)}] ` +
        `(C ${pr.C}): ${per(pr)}`,
    );

    // both evaluate the same 120 test images over the same 11 classes the synthetic set has
    t.is(zs.n, 120);
    t.is(pr.n, 120);
    t.deepEqual(zs.classes, pr.classes);
    t.deepEqual(zs.classes, [
      "normal",
      "dr",
      "glaucoma",
      "tessellation",
      "optic_atrophy",
      "drusen",
      "laser_scars",
      "media_opacity",
      "hemorrhage",
      "hard_exudate",
      "cotton_wool_spot",
    ]);
    // both clearly above chance, their CIs too; the visible global cues nearly perfect for the probe
    t.true(z >= 0.6, `zero-shot mean AUC ${z}`);
    t.true(zs.metrics.auc!.lo! > 0.53, `zero-shot CI lower end ${zs.metrics.auc!.lo}`);
    t.true(p >= 0.65, `probe mean AUC ${p}`);
    t.true(pr.metrics.auc!.lo! > 0.58, `probe CI lower end ${pr.metrics.auc!.lo}`);
    t.true(pr.perClass.media_opacity!.auc.value! >= 0.9, "haze (blur) is visible to frozen features");
    t.true(pr.perClass.tessellation!.auc.value! >= 0.8, "tessellation is visible to frozen features");
    // probe ≥ zero-shot
    t.true(p >= z, `probe ${p} vs zero-shot ${z}`);
    // valid numbers with CIs; tessellation, a cue every report names, aligned with its prompts
    for (const c of zs.classes) {
      const a = zs.perClass[c]!.auc;
      t.true(a.value! >= 0 && a.value! <= 1 && a.lo! <= a.value! && a.value! <= a.hi!, c);
    }
    t.true(
      zs.perClass.tessellation!.auc.value! > 0.8,
      `zero-shot tessellation AUC ${zs.perClass.tessellation!.auc.value}`,
    );
    // retrieval ran on the paired test set
    t.is(ret.n, 120);
    t.true(ret.imageToText.recall["R@10"]!.value! >= ret.imageToText.recall["R@1"]!.value!);
  },
);

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
      path.join(evalDir, "held.jsonl"),
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
  const metrics = path.join(root, "zs-predictions.json");
  const r = await run(
    "eval",
    "zeroshot",
    "--model",
    model,
    "--data",
    path.join(evalDir, "held.jsonl"),
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
      path.join(evalDir, "splits.jsonl"),
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
      path.join(evalDir, "tr.jsonl"),
      "--val",
      path.join(evalDir, "va.jsonl"),
      "--test",
      path.join(evalDir, "te.jsonl"),
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
      readFileSync(path.join(evalDir, "te.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { id: string }).id),
    );
  },
);
