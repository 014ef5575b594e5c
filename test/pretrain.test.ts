// The pre-training loop end to end on a small synthetic set: metrics, evaluation, checkpoints,
// falling loss, exact resume, and a run of non-finite losses stopping the run.
import test from "ava";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ViLReF } from "../lib/model/vilref.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import type { PretrainConfigInput } from "../lib/train/config.js";
import { listCheckpoints, NonFiniteLossError, pretrain } from "../lib/train/pretrain.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-pretrain-"));
const trainDir = path.join(root, "train");
const heldDir = path.join(root, "held");

test.before(async () => {
  await writeSynthDataset(trainDir, 48, 11, { size: 32 });
  await writeSynthDataset(heldDir, 24, 12, { size: 32 });
});

const base = (output: string, extra: Partial<PretrainConfigInput> = {}): PretrainConfigInput => ({
  model: { preset: "tiny-vit" },
  data: { train: path.join(trainDir, "manifest.jsonl") },
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

const readMetrics = (dir: string) =>
  readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test.serial("a short run writes metrics, evaluates and checkpoints (last k kept)", async (t) => {
  const events: string[] = [];
  const r = await pretrain(
    base("run", {
      data: { train: path.join(trainDir, "manifest.jsonl"), heldOut: path.join(heldDir, "manifest.jsonl") },
      epochs: 4,
      eval: { every: 12 },
      checkpoint: { every: 6, keep: 2 },
    }),
    { onProgress: (e) => events.push(e.kind) },
  );
  t.is(r.totalSteps, 24);
  t.is(r.step, 24);
  t.is(r.losses.length, 24);
  t.true(r.losses.every(Number.isFinite));
  const m = readMetrics(r.output);
  const train = m.filter((x) => x.type === "train");
  t.is(train.length, 24);
  t.deepEqual(
    Object.keys(train[0]!).sort(),
    [
      "epoch",
      "gradNorm",
      "imagesPerSecond",
      "logitScale",
      "loss",
      "lr",
      "queueValid",
      "skipped",
      "step",
      "type",
    ].sort(),
  );
  t.is(train[0]!.queueValid, 8);
  t.is(train[5]!.queueValid, 32);
  const evals = m.filter((x) => x.type === "eval");
  t.deepEqual(
    evals.map((e) => e.step),
    [12, 24],
  );
  const ev = evals[1]!;
  t.is(ev.samples, 24);
  t.true(Object.keys(ev.auc as object).length > 0, "some labels have both classes in the held-out set");
  for (const v of Object.values(ev.auc as Record<string, number>)) t.true(v >= 0 && v <= 1);
  t.deepEqual(Object.keys(ev.imageToText as object), ["R@1", "R@5", "R@10"]);
  t.true((ev.imageToText as Record<string, number>)["R@10"]! >= (ev.imageToText as Record<string, number>)["R@1"]!);
  // checkpoints at 6, 12, 18, 24: the last two kept, no temporary folders left
  t.deepEqual(
    listCheckpoints(r.output).map((c) => c.step),
    [18, 24],
  );
  t.deepEqual(readdirSync(path.join(r.output, "checkpoints")).sort(), ["step-00000018", "step-00000024"]);
  const ck = path.join(r.output, "checkpoints", "step-00000024");
  t.deepEqual(readdirSync(ck).sort(), ["model.safetensors", "state.json", "trainer.safetensors"]);
  const state = JSON.parse(readFileSync(path.join(ck, "state.json"), "utf8")) as {
    step: number;
    position: unknown;
    config: { loss: string };
  };
  t.is(state.step, 24);
  t.deepEqual(state.position, { epoch: 3, index: 48 });
  t.is(state.config.loss, "wscl");
  // the final model loads, with the label names and vocabulary hash
  const model = await ViLReF.load(path.join(r.output, "final", "model.safetensors"));
  t.is(model.labels?.length, 31);
  t.is(typeof model.vocabSha256, "string");
  t.true(existsSync(path.join(r.output, "vocab.txt")));
  t.is(events[0], "start");
  t.is(events.at(-1), "done");
  t.is(events.filter((e) => e === "checkpoint").length, 4);
});

test.serial("the training loss falls (CLIP, 40 epochs of 6 batches)", async (t) => {
  // a tiny model from scratch first sits at the collapsed level log(B) (every logit alike), then
  // learns. With WSCL's defaults on these 48 pairs it stayed at its collapsed level for 240 steps
  // (see the session report), so this test runs the CLIP switch of the same loop.
  const r = await pretrain(
    base("falls", {
      epochs: 40,
      loss: "clip",
      queue: { size: 0 },
      schedule: { lr: 1e-3, warmupSteps: 12, minLr: 1e-3 },
    }),
  );
  const epochMean = (e: number) => r.losses.slice(6 * e, 6 * e + 6).reduce((a, b) => a + b, 0) / 6;
  const first = epochMean(0);
  const last = (epochMean(38) + epochMean(39)) / 2;
  t.log(`loss per epoch: ${Array.from({ length: 40 }, (_, e) => epochMean(e).toFixed(3)).join(" ")}`);
  t.true(last < first - 0.15, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
});

test.serial("resume continues exactly: the losses after a resume equal the uninterrupted run's", async (t) => {
  const steps = 10;
  const full = await pretrain(base("full", { steps, checkpoint: { every: 0 } }));
  // interrupted at step 4 (a checkpoint is written there), then resumed in a fresh model and Trainer
  const part = await pretrain(base("part", { steps, checkpoint: { every: 0 } }), { stopAfter: 4 });
  t.is(part.step, 4);
  t.deepEqual(
    listCheckpoints(part.output).map((c) => c.step),
    [4],
  );
  const rest = await pretrain(base("part", { steps, checkpoint: { every: 0 } }), { resume: true });
  t.is(rest.losses.length, steps - 4);
  t.deepEqual(part.losses, full.losses.slice(0, 4));
  t.deepEqual(rest.losses, full.losses.slice(4), "bit-equal losses after the resume");
  // metrics.jsonl of the resumed run has each step once
  t.deepEqual(
    readMetrics(rest.output).map((x) => x.step),
    Array.from({ length: steps }, (_, i) => i + 1),
  );
  // the final weights are equal too
  const a = await full.model.stateDict();
  const b = await rest.model.stateDict();
  t.deepEqual(Array.from(a["visual.proj"]!.data as Float32Array), Array.from(b["visual.proj"]!.data as Float32Array));
});

test.serial("freeze, gradientCheckpointing and bfloat16 precision reach the trainer from the config", async (t) => {
  const r = await pretrain(
    base("options", {
      steps: 4,
      freeze: ["text"],
      gradientCheckpointing: true,
      precision: "bfloat16",
      checkpoint: { every: 1, keep: 4 },
    }),
  );
  t.true(r.losses.every(Number.isFinite));
  t.is(r.model.dtype, "float32", "mixed precision keeps float32 weights");
  const first = await ViLReF.load(path.join(r.output, "checkpoints", "step-00000001", "model.safetensors"));
  const a = await first.stateDict(),
    b = await r.model.stateDict();
  const eq = (k: string) => {
    const x = a[k]!.data as Float32Array,
      y = b[k]!.data as Float32Array;
    return x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
  };
  const bert = Object.keys(b).filter((k) => k.startsWith("bert.") && !k.endsWith("position_ids"));
  t.true(bert.length > 10);
  for (const k of bert) t.true(eq(k), `${k} moved although the text tower is frozen`);
  t.false(eq("visual.conv1.weight"), "the visual tower trains");
  t.false(eq("text_projection"), "text_projection trains");
  const state = JSON.parse(readFileSync(path.join(r.output, "checkpoints", "step-00000004", "state.json"), "utf8")) as {
    config: { freeze: string[]; precision: string; gradientCheckpointing: boolean };
  };
  t.deepEqual(
    [state.config.freeze, state.config.precision, state.config.gradientCheckpointing],
    [["text"], "bfloat16", true],
  );
});

test.serial("non-finite losses in a row stop the run with a checkpoint and a message naming the batch", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  // zero image features: 0/0
  await model.loadStateDict({ "visual.proj": { data: new Float32Array(64 * 24), shape: [64, 24] } }, { strict: false });
  const ckpt = path.join(root, "zero.safetensors");
  await model.save(ckpt);
  const e = await t.throwsAsync(pretrain(base("nan", { model: { checkpoint: ckpt }, steps: 10, maxNonFinite: 3 })), {
    instanceOf: NonFiniteLossError,
  });
  t.regex(
    e!.message,
    new RegExp(
      /^stopped at step 3: 3 non-finite losses in a row; the last was batch 3 /.source +
        /\(epoch 0, samples 16-23 of the epoch order; ids synth-\d{5}, /.source,
    ),
  );
  t.is(e!.step, 3);
  t.is(e!.batch.ids.length, 8);
  t.deepEqual(
    listCheckpoints(path.join(root, "nan")).map((c) => c.step),
    [3],
  );
  const m = readMetrics(path.join(root, "nan"));
  t.deepEqual(
    m.map((x) => [x.step, x.skipped, x.loss]),
    [
      [1, true, "NaN"],
      [2, true, "NaN"],
      [3, true, "NaN"],
    ],
  );
});
