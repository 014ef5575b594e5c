// Options the sharp way (lib/config/options.ts): the schemas own every default and every check, a
// wrong type is a TypeError naming the option (from the API, from a config file and from the
// native side), and the API and the CLI hand the native objects the same effective options.
import test from "ava";
import { Command } from "commander";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { registerFinetune, registerSegment } from "../lib/cli/segment.js";
import { Finetuner } from "../lib/finetune/finetuner.js";
import { LABEL_IDS } from "../lib/labels/index.js";
import { ViLReF } from "../lib/model/vilref.js";
import { native } from "../lib/native.js";
import { Segmenter, segmenterConfigSchema, segmenterOptionsSchema } from "../lib/segment/segmenter.js";
import { trainSegmenter } from "../lib/segment/train.js";
import { loadConfig, trainerOptionsFromConfig } from "../lib/train/config.js";
import { Trainer, trainerOptionsSchema } from "../lib/train/trainer.js";
import type { TrainerOptions } from "../lib/train/trainer.js";
import { batch, C as BATCH_LABELS } from "./helpers/train-batch.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-options-"));
const tinySeg = { tile: 32, patch: 8, width: 32, layers: 2, heads: 2, stemChannels: 4, decoderChannels: 8 };
const C = LABEL_IDS.length;
const bad = <T>(v: unknown) => v as T;

test("wrong types are TypeErrors naming the option, from the API", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  t.throws(() => new Segmenter(tinySeg, { freezeBackbone: bad<boolean>("no") }), {
    instanceOf: TypeError,
    message: "options.freezeBackbone: expected a boolean",
  });
  t.throws(() => new Trainer(model, { labelDim: C, queueSize: 2.5 }), {
    instanceOf: TypeError,
    message: "options.queueSize: expected an integer",
  });
  t.throws(() => new Trainer(model, { labelDim: C, lr: bad<number>("1e-3") }), {
    instanceOf: TypeError,
    message: "options.lr: expected a number",
  });
  t.throws(() => new Finetuner(model, { classes: 2, lr: bad<number>("1e-3") }), {
    instanceOf: TypeError,
    message: "options.lr: expected a number",
  });
  t.throws(() => new Segmenter(tinySeg, { lr: bad<number>("1e-3") }), {
    instanceOf: TypeError,
    message: "options.lr: expected a number",
  });
  t.throws(() => ViLReF.create("tiny-vit", { seed: 1.5 }), { instanceOf: TypeError, message: /^options\.seed:/ });
  t.throws(() => new Trainer(model, { labelDim: C, learningRate: 1 } as TrainerOptions), {
    instanceOf: TypeError,
    message: 'options: unknown option "learningRate"',
  });
  const trainer = new Trainer(model, { labelDim: BATCH_LABELS, queueSize: 0 });
  await t.throwsAsync(trainer.step(batch(2, 1), { lr: bad<number>("1e-3") }), {
    instanceOf: TypeError,
    message: "options.lr: expected a number",
  });
  // a value of the right type that is not allowed is a RangeError
  t.throws(() => new Trainer(model, { labelDim: C, queueSize: -1 }), {
    instanceOf: RangeError,
    message: /^options\.queueSize:/,
  });
  t.throws(() => new Segmenter({ ...tinySeg, heads: 3 }), {
    instanceOf: RangeError,
    message: "config.heads: width 32 does not split into 3 heads",
  });
});

function configFile(name: string, extra: Record<string, unknown>): string {
  const file = path.join(root, `${name}.json`);
  const base = { model: { preset: "tiny-vit" }, data: { train: "train.jsonl" }, batchSize: 4, steps: 1, output: "run" };
  writeFileSync(file, JSON.stringify({ ...base, ...extra }));
  return file;
}

test("wrong types are TypeErrors naming the option, from a config file", (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ queue: { size: 2.5 } }, /: queue\.size: /],
    [{ schedule: { lr: "1e-3" } }, /: schedule\.lr: /],
    [{ gradientCheckpointing: "no" }, /: gradientCheckpointing: /],
    [{ freeze: "no" }, /: freeze: /],
    [{ optimizer: { decayEmbeddings: "no" } }, /: optimizer\.decayEmbeddings: /],
    [{ data: { train: "train.jsonl", augment: { hflip: "yes" } } }, /: data\.augment\.hflip: /],
  ];
  for (const [extra, message] of cases) {
    const file = configFile("bad", extra);
    t.throws(() => loadConfig(file), { instanceOf: TypeError, message }, JSON.stringify(extra));
  }
});

test("the native side takes complete objects, and names a wrong or missing one", (t) => {
  const addon = native();
  const config = segmenterConfigSchema.parse(tinySeg);
  const options = segmenterOptionsSchema.parse({});
  t.throws(() => new addon.Segmenter(config, { ...options, freezeBackbone: bad<boolean>("no") }), {
    instanceOf: TypeError,
    message: "options.freezeBackbone: expected a boolean, got a string",
  });
  const { lr: _, ...noLr } = trainerOptionsSchema.parse({ labelDim: C });
  const model = ViLReF.create("tiny-vit");
  t.throws(() => new addon.Trainer(model.nativeHandle, bad(noLr)), {
    instanceOf: TypeError,
    message: "options.lr: expected a number, got undefined",
  });
  t.throws(() => new addon.Segmenter(config, { ...options, decayEmbeddings: bad<boolean>(1) }), {
    instanceOf: TypeError,
    message: "options.decayEmbeddings: expected a boolean, got a number",
  });
});

test("the trainer: the API and `vilref pretrain` hand the native trainer the same options", (t) => {
  const model = ViLReF.create("tiny-vit");
  const fromApi = new Trainer(model, { labelDim: C }).options;
  const fromFile = new Trainer(model, trainerOptionsFromConfig(loadConfig(configFile("minimal", {})), C)).options;
  t.deepEqual(fromFile, fromApi);
  t.like(fromApi, { lr: 5e-4, betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0.001, decayEmbeddings: true });
  t.like(fromApi, { queueSize: 16384, momentum: 0.995, loss: "wscl", threshold: 1, gamma: 1, precision: "float32" });
  // and what the file sets arrives
  const set = loadConfig(configFile("set", { schedule: { lr: 1e-3 }, queue: { size: 64 }, freeze: ["text"] }));
  t.like(new Trainer(model, trainerOptionsFromConfig(set, C)).options, { lr: 1e-3, queueSize: 64, freeze: ["text"] });
});

const cli = () => {
  const p = new Command("vilref").exitOverride();
  const e = p.command("eval").exitOverride();
  registerSegment(e);
  registerFinetune(e);
  for (const c of e.commands) c.exitOverride().configureOutput({ writeErr: () => {} });
  return (...args: string[]) => p.parseAsync(["node", "vilref", "eval", ...args]);
};

async function quiet<T>(body: () => Promise<T>): Promise<T> {
  const log = console.log;
  const write = process.stderr.write.bind(process.stderr);
  console.log = () => {};
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await body();
  } finally {
    console.log = log;
    process.stderr.write = write;
  }
}

const noise = (w: number, h: number, seed: number, channels: 1 | 3 = 3) =>
  sharp(Buffer.from(Array.from({ length: w * h * channels }, (_, i) => ((i * 7919 + seed * 104729) % 251) | 0)), {
    raw: { width: w, height: h, channels },
  }).png();

/** A DRIVE-layout set of one 64×64 image per split. */
async function tinyDrive(): Promise<string> {
  const dir = path.join(root, "drive");
  for (const [split, id] of [
    ["training", "21"],
    ["test", "01"],
  ] as const) {
    for (const sub of ["images", "1st_manual", "mask"]) mkdirSync(path.join(dir, split, sub), { recursive: true });
    await noise(64, 64, Number(id)).toFile(path.join(dir, split, "images", `${id}_${split}.png`));
    await noise(64, 64, 5, 1).toFile(path.join(dir, split, "1st_manual", `${id}_manual1.png`));
    await sharp(Buffer.alloc(64 * 64, 255), { raw: { width: 64, height: 64, channels: 1 } })
      .png()
      .toFile(path.join(dir, split, "mask", `${id}_${split}_mask.png`));
  }
  return dir;
}

test("the segmenter: the API and `vilref eval segment` hand the native segmenter the same options", async (t) => {
  const out = path.join(root, "segment.json");
  const drive = await tinyDrive();
  await quiet(() => cli()("segment", "--data", drive, "--steps", "1", "--tile", "32", "--out", out));
  const report = JSON.parse(readFileSync(out, "utf8")) as { options: unknown; training: { lr: number } };
  const model = ViLReF.create("tiny-vit");
  const api = await Segmenter.fromModel(model, { tile: 32 });
  t.deepEqual(report.options, api.options);
  t.like(api.options, { lr: 2e-3, backboneLr: 2e-3, weightDecay: 1e-4, freezeBackbone: false, decayEmbeddings: false });
  t.is(report.training.lr, 2e-3);
});

test("trainSegmenter takes the segmenter's own learning rates: backboneLr is read", async (t) => {
  const seg = new Segmenter(tinySeg, { seed: 1, lr: 1e-2, backboneLr: 0 });
  t.like(seg.options, { lr: 1e-2, backboneLr: 0 });
  const before = await seg.stateDict();
  const plane = { data: new Float32Array(3 * 48 * 48).map((_, i) => Math.sin(i)), channels: 3, width: 48, height: 48 };
  const item = {
    name: "x",
    plane,
    target: Uint8Array.from({ length: 48 * 48 }, (_, i) => (i % 5 === 0 ? 1 : 0)),
    fov: new Uint8Array(48 * 48).fill(1),
  };
  await trainSegmenter(seg, [item as never], { steps: 3, batchSize: 2, warmup: 1 });
  const after = await seg.stateDict();
  const same = (k: string) => {
    const [a, b] = [after[k]!.data as Float32Array, before[k]!.data as Float32Array];
    return a.every((v, i) => v === b[i]);
  };
  t.true(same("visual.transformer.resblocks.0.attn.in_proj_weight"), "backbone lr 0: the backbone stays");
  t.false(same("head.weight"), "the decoder trains");
});

test("the finetuner: the API and `vilref eval finetune` hand the native finetuner the same options", async (t) => {
  const dir = path.join(root, "ft");
  for (const cls of ["a", "b"]) {
    mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < 3; i++) await noise(40, 40, i + (cls === "a" ? 0 : 10)).toFile(path.join(dir, cls, `${i}.png`));
  }
  const out = path.join(root, "finetune.json");
  await quiet(() =>
    cli()("finetune", "--model", "preset:tiny-vit", "--train", dir, "--val", dir, "--epochs", "1", "--out", out),
  );
  const report = JSON.parse(readFileSync(out, "utf8")) as { options: unknown; lr: number; backboneLr: number };
  const api = new Finetuner(ViLReF.create("tiny-vit"), { classes: 2 }).options;
  t.deepEqual(report.options, api);
  t.like(api, { lr: 1e-3, backboneLr: 1e-6, weightDecay: 0.001, betas: [0.9, 0.999], eps: 1e-8, frozen: false });
  t.is(report.lr, 1e-3);
  t.is(report.backboneLr, 1e-6);
});
