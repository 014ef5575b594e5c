// `vilref pretrain CONFIG [--resume]` through commander.
import test from "ava";
import { Command } from "commander";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { register } from "../lib/cli/train.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { listCheckpoints } from "../lib/train/pretrain.js";

test("pretrain CONFIG runs a config file; --resume continues; a bad key is named", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-cli-"));
  await writeSynthDataset(path.join(dir, "data"), 16, 5, { size: 32 });
  const cfg = path.join(dir, "exp.json");
  const config = {
    model: { preset: "tiny-vit" },
    data: { train: "data/manifest.jsonl" },
    batchSize: 8,
    steps: 2,
    text: { contextLength: 24, vocabSize: 300 },
    queue: { size: 8 },
    output: "run",
    threads: 2,
  };
  writeFileSync(cfg, JSON.stringify(config));
  const run = async (...args: string[]) => {
    const p = new Command("vilref").exitOverride();
    register(p);
    await p.parseAsync(["node", "vilref", "pretrain", ...args]);
  };
  await run(cfg);
  t.deepEqual(
    listCheckpoints(path.join(dir, "run")).map((c) => c.step),
    [2],
  );
  writeFileSync(cfg, JSON.stringify({ ...config, steps: 4 }));
  await run(cfg, "--resume");
  t.deepEqual(
    listCheckpoints(path.join(dir, "run")).map((c) => c.step),
    [2, 4],
  );
  const steps = readFileSync(path.join(dir, "run", "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { step: number }).step);
  t.deepEqual(steps, [1, 2, 3, 4]);
  writeFileSync(cfg, JSON.stringify({ ...config, batchSize: "8" }));
  await t.throwsAsync(run(cfg), { message: /exp\.json: batchSize: / });
  await t.throwsAsync(run(), { message: /give a config file \(or --demo\)/ });
});
