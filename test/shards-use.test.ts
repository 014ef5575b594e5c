// Shards wherever a manifest is accepted: `vilref data pack` and `data check`, `embed --images`,
// evaluation sets, and pre-training (streamed, resumed exactly) with a held-out set from shards.
import test from "ava";
import { Command } from "commander";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { register } from "../lib/cli/data.js";
import { readManifest } from "../lib/data/manifest.js";
import { scanShards } from "../lib/data/shards.js";
import { loadDataset } from "../lib/eval/adapters/index.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import type { PretrainConfigInput } from "../lib/train/config.js";
import { pretrain } from "../lib/train/pretrain.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-shards-use-"));
const synth = path.join(root, "synth");
const shards = path.join(root, "shards");

async function run(args: string[]): Promise<{ out: string; err: string; code: number | undefined }> {
  const program = new Command("vilref").exitOverride();
  register(program);
  let out = "";
  let err = "";
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  (process.stdout as { write: unknown }).write = (s: string) => ((out += s), true);
  (process.stderr as { write: unknown }).write = (s: string) => ((err += s), true);
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(args, { from: "user" });
  } finally {
    (process.stdout as { write: unknown }).write = ow;
    (process.stderr as { write: unknown }).write = ew;
  }
  const code = process.exitCode as number | undefined;
  process.exitCode = before;
  return { out, err, code };
}

test.before(async () => {
  await writeSynthDataset(synth, 40, 21, { size: 96, format: "jpeg" });
});

test.serial("`vilref data pack` writes shards and an index; `data check` reads them back", async (t) => {
  const r = await run([
    "data",
    "pack",
    path.join(synth, "manifest.jsonl"),
    "--out",
    shards,
    "--samples-per-shard",
    "8",
    "--resolution",
    "32",
    "--no-progress",
  ]);
  t.regex(r.out, /wrote 40 samples in 5 shards \(5 written, 0 kept\)/);
  t.deepEqual(readdirSync(shards).sort(), [
    "000000.tar",
    "000001.tar",
    "000002.tar",
    "000003.tar",
    "000004.tar",
    "index.json",
  ]);
  const again = await run([
    "data",
    "pack",
    path.join(synth, "manifest.jsonl"),
    "--out",
    shards,
    "--samples-per-shard",
    "8",
    "--resolution",
    "32",
    "--no-progress",
  ]);
  t.regex(again.out, /up to date \(40 samples in 5 shards\)/);
  const check = await run(["data", "check", path.join(shards, "{000000..000004}.tar")]);
  t.regex(check.out, /40 samples \(0 shard problems\), 40 with text, 40 with labels; images decoded 40, skipped 0/);
  t.is(check.code, undefined);
  const missing = await run(["data", "check", path.join(shards, "{000003..000005}.tar")]);
  t.regex(missing.out, /16 samples \(1 shard problems\)/);
  t.regex(missing.err, /000005\.tar: missing/);
  t.is(missing.code, 1);
});

test.serial("`vilref embed --images` takes shards (ids from their json)", async (t) => {
  const out = path.join(root, "emb.npy");
  const r = await run([
    "embed",
    "--images",
    path.join(shards, "index.json"),
    "--model",
    "pool-head:16",
    "--out",
    out,
    "--no-progress",
  ]);
  t.regex(r.out, /wrote .*emb\.npy \[40, 16\]/);
  const ids = readFileSync(path.join(root, "emb.ids.txt"), "utf8").trim().split("\n");
  t.deepEqual(
    ids,
    scanShards(path.join(shards, "index.json")).samples.map((s) => s.id),
  );
  t.deepEqual(
    [...ids].sort(),
    readManifest(path.join(synth, "manifest.jsonl"))
      .map((s) => s.id)
      .sort(),
  );
});

test.serial("an evaluation set from shards: labels from their json", (t) => {
  const ds = loadDataset({ path: path.join(shards, "index.json") });
  const ref = loadDataset({ path: path.join(synth, "manifest.jsonl") });
  t.is(ds.task, "multilabel");
  t.deepEqual(ds.classes, ref.classes);
  const byId = new Map(ref.samples.map((s) => [s.id, s]));
  for (const s of ds.samples) {
    t.deepEqual(Array.from(s.y!), Array.from(byId.get(s.id)!.y!), s.id);
    t.is(s.split, byId.get(s.id)!.split);
  }
});

const config = (output: string, extra: Partial<PretrainConfigInput> = {}): PretrainConfigInput => ({
  model: { preset: "tiny-vit" },
  data: { train: path.join(shards, "index.json"), shuffleBuffer: 12 },
  batchSize: 8,
  text: { contextLength: 32, vocabSize: 600 },
  schedule: { lr: 2e-3, warmupSteps: 2 },
  queue: { size: 32 },
  momentum: 0.99,
  seed: 3,
  threads: 2,
  output: path.join(root, output),
  ...extra,
});

test.serial("pre-training streams shards, resumes exactly, and evaluates on held-out shards", async (t) => {
  const steps = 8;
  const full = await pretrain(config("full", { steps }));
  t.is(full.step, steps);
  t.true(full.losses.every(Number.isFinite));
  const part = await pretrain(config("part", { steps }), { stopAfter: 3 });
  const rest = await pretrain(config("part", { steps }), { resume: true });
  t.deepEqual(part.losses, full.losses.slice(0, 3));
  t.deepEqual(rest.losses, full.losses.slice(3), "bit-equal losses after resuming mid-epoch");
  const withEval = await pretrain(
    config("eval", {
      steps: 2,
      data: { train: path.join(shards, "index.json"), heldOut: path.join(shards, "{000000..000001}.tar") },
    }),
  );
  const m = readFileSync(path.join(withEval.output, "metrics.jsonl"), "utf8");
  t.regex(m, /"type":"eval".*"samples":16/);
  t.false(
    existsSync(path.join(withEval.output, "skipped.log")) &&
      readFileSync(path.join(withEval.output, "skipped.log"), "utf8") !== "",
  );
  await t.throwsAsync(pretrain(config("bad", { steps: 1, data: { train: shards, trainSplit: "train" } })), {
    message: /data\.trainSplit: shards are streamed whole/,
  });
});
