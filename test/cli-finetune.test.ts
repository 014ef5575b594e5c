// `vilref eval finetune` reports like the other evals: every metric with a bootstrap CI in --out,
// an HTML page with --report, the per-epoch records kept; the CIs are the same for the same seed.
import test from "ava";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { main } from "../lib/cli/main.js";

const dir = mkdtempSync(path.join(tmpdir(), "vilref-ft-cli-"));

async function classFolders(root: string, perClass: number): Promise<void> {
  for (const [c, rgb] of [
    ["dark", [40, 20, 10]],
    ["light", [220, 150, 90]],
  ] as const) {
    mkdirSync(path.join(root, c), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const jitter = (k: number) => Math.max(0, Math.min(255, rgb[k]! + ((i * 37 + k * 11) % 30) - 15));
      await sharp({
        create: { width: 40, height: 40, channels: 3, background: { r: jitter(0), g: jitter(1), b: jitter(2) } },
      })
        .png()
        .toFile(path.join(root, c, `${i}.png`));
    }
  }
}

interface Est {
  value: number | null;
  lo: number | null;
  hi: number | null;
}

test.serial("eval finetune --out/--report: metrics with bootstrap CIs, the epochs, an HTML page", async (t) => {
  await classFolders(path.join(dir, "train"), 6);
  await classFolders(path.join(dir, "test"), 5);
  const run = async (out: string, report?: string) => {
    const log = console.log;
    const ew = process.stderr.write.bind(process.stderr);
    console.log = () => {};
    (process.stderr as { write: unknown }).write = () => true;
    try {
      return await main(
        [
          "node",
          "vilref",
          "eval",
          "finetune",
          "--model",
          "preset:tiny-vit:3",
          "--train",
          path.join(dir, "train"),
          "--val",
          path.join(dir, "train"),
          "--test",
          path.join(dir, "test"),
          "--epochs",
          "2",
          "--batch-size",
          "4",
          "--lr",
          "0.01",
          "--bootstrap",
          "200",
          "--seed",
          "5",
          "--out",
          out,
          ...(report ? ["--report", report] : []),
        ],
        { err: () => {} },
      );
    } finally {
      console.log = log;
      (process.stderr as { write: unknown }).write = ew;
    }
  };
  const out = path.join(dir, "ft.json");
  t.is(await run(out, path.join(dir, "report")), 0);
  const r = JSON.parse(readFileSync(out, "utf8")) as {
    protocol: string;
    task: string;
    split: string;
    n: number;
    classes: string[];
    metrics: Record<string, Est>;
    perClass: Record<string, { auc: Est }>;
    bootstrap: { resamples: number; seed: number };
    training: { epochs: unknown[]; bestEpoch: number };
    model: string;
  };
  t.is(r.protocol, "finetune");
  t.is(r.task, "multiclass");
  t.is(r.split, "test");
  t.is(r.n, 10);
  t.deepEqual(r.classes, ["dark", "light"]);
  t.deepEqual(r.bootstrap, { resamples: 200, seed: 5, level: 0.95 } as never);
  t.is(r.training.epochs.length, 2);
  t.true(r.training.bestEpoch === 1 || r.training.bestEpoch === 2);
  const acc = r.metrics.accuracy!;
  t.true(acc.value! >= 0 && acc.value! <= 1);
  t.true(acc.lo! <= acc.value! && acc.value! <= acc.hi!, JSON.stringify(acc));
  t.true(Number.isFinite(r.perClass.dark!.auc.lo));
  t.true(existsSync(path.join(dir, "report", "index.html")));
  t.true(existsSync(path.join(dir, "report", "roc-all.png")));
  t.regex(readFileSync(path.join(dir, "report", "index.html"), "utf8"), /multiclass task, 10 cases, 2 classes/);
  // the same seed: the same model, predictions and intervals
  const again = path.join(dir, "ft2.json");
  t.is(await run(again), 0);
  t.deepEqual(JSON.parse(readFileSync(again, "utf8")).metrics, JSON.parse(readFileSync(out, "utf8")).metrics);
});
