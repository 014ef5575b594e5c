/**
 * A pre-training experiment as one JSON object (the CLI and the API take the same thing), validated
 * with zod; every error names the key (`schedule.warmupSteps: ...`). Relative paths are resolved
 * against the config file's folder.
 */
import path from "node:path";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import { readJsonFile } from "../io/json.js";
import { UNCERTAINTY_POLICIES } from "../labels/index.js";
import { transformSchema } from "../data/transforms.js";
import { modelConfigSchema, presetNames } from "../model/config.js";
import { trainerOptionFields } from "./trainer.js";
import type { ProcessGroup } from "./dist.js";
import type { TrainerOptions } from "./trainer.js";

/** The defaults of an object of fields, as its schema fills them in. */
function defaultsOf<F extends z.core.$ZodLooseShape>(fields: F): z.output<z.ZodObject<F>> {
  return z.object(fields).parse({});
}

const int = (min: number) => z.number().int().min(min);

const modelSchema = z
  .object({
    /** A preset name (tiny-vit, vit-b-16, ...). */
    preset: z.string().min(1).optional(),
    /** A model config in the released names. */
    config: modelConfigSchema.optional(),
    /** An initial checkpoint (.safetensors or released .pt) to start from. */
    checkpoint: z.string().min(1).optional(),
    /** Seed of the random initialisation (default: the run's seed). */
    seed: int(0).optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    const n = [m.preset, m.config, m.checkpoint].filter((x) => x !== undefined).length;
    if (n !== 1)
      ctx.addIssue({ code: "custom", message: `give exactly one of preset, config or checkpoint (got ${n})` });
    if (m.preset !== undefined && !presetNames().includes(m.preset))
      ctx.addIssue({
        code: "custom",
        path: ["preset"],
        message: `unknown preset "${m.preset}"; presets: ${presetNames().join(", ")}`,
      });
  });

const dataSchema = z
  .object({
    /**
     * Training data: a manifest (CSV, TSV or JSONL with image and text columns), or WebDataset
     * shards (`vilref data pack`'s index.json, a folder of .tar, `shards/{000000..000099}.tar`, a
     * glob, or a list of paths), streamed through a shuffle buffer.
     */
    train: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    /** Keep only rows of this split of the training manifest. */
    trainSplit: z.string().min(1).optional(),
    /** Held-out manifest or shards for evaluation (default: the training data, with heldOutSplit). */
    heldOut: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    heldOutSplit: z.string().min(1).optional(),
    /** Column names, as `vilref data` takes them. */
    columns: z.record(z.string(), z.string()).optional(),
    /** Training augmentation: lib/data/transforms options but size and train (the model's resolution; on). */
    augment: transformSchema.omit({ size: true, train: true }).optional(),
    /** Held-out samples used per evaluation (default: all). */
    evalLimit: int(2).optional(),
    /** Images decoding at once. */
    concurrency: int(1).optional(),
    /** Shards: samples in the shuffle buffer (encoded images held in memory). */
    shuffleBuffer: int(1).default(2000),
  })
  .strict();

const labelsSchema = z
  .object({
    /** "rules": the expert rules on each report, on the fly; "manifest": the manifest's labels column; "file": a
     * `vilref labels --out` file joined by id. */
    source: z.enum(["rules", "manifest", "file"]).default("rules"),
    file: z.string().min(1).optional(),
    /** A rules file (default: the packaged zh-fundus.json). */
    rules: z.string().min(1).optional(),
    uncertainty: z.enum(UNCERTAINTY_POLICIES as unknown as ["keep", "positive", "negative", "drop"]).default("keep"),
  })
  .strict()
  .refine((l) => (l.source === "file") === (l.file !== undefined), {
    path: ["file"],
    message: 'a labels file is needed with source "file", and only then',
  });

const textSchema = z
  .object({
    /** A vocab.txt, or "build" to build one from the training reports (saved in the output folder). */
    vocab: z.string().min(1).default("build"),
    vocabSize: int(105).default(8000),
    contextLength: int(3).max(512).default(52),
  })
  .strict();

// The trainer's options are trainerOptionFields (lib/train/trainer.ts): one default and one check
// each, whether a Trainer is made from this file or from the API.
const t = trainerOptionFields;

const scheduleSchema = z
  .object({
    /** The peak learning rate: the Trainer's `lr` (default 5e-4). */
    lr: t.lr,
    warmupSteps: int(0).default(0),
    minLr: z.number().min(0).default(0),
  })
  .strict()
  .refine((s) => s.minLr <= s.lr, { path: ["minLr"], message: "must not exceed lr" });

const optimizerSchema = z
  .object({
    betas: t.betas,
    eps: t.eps,
    weightDecay: t.weightDecay,
    decayEmbeddings: t.decayEmbeddings,
    /** Max global gradient norm (0: no clipping). */
    gradClip: t.gradClip,
  })
  .strict();

export const pretrainConfigSchema = z
  .object({
    model: modelSchema,
    data: dataSchema,
    labels: labelsSchema.default(labelsSchema.parse({})),
    text: textSchema.default(textSchema.parse({})),
    batchSize: int(2),
    /** Epochs over the training set; `steps` (when given) stops earlier. */
    epochs: int(1).optional(),
    steps: int(1).optional(),
    schedule: scheduleSchema.default(scheduleSchema.parse({})),
    optimizer: optimizerSchema.default(optimizerSchema.parse({})),
    loss: t.loss,
    wscl: z
      .object({ threshold: t.threshold, gamma: t.gamma })
      .strict()
      .default(defaultsOf({ threshold: t.threshold, gamma: t.gamma })),
    queue: z
      .object({ size: t.queueSize })
      .strict()
      .default(defaultsOf({ size: t.queueSize })),
    momentum: t.momentum,
    /**
     * Mixed precision of the training step with float32 weights: "bfloat16" autocasts the forward
     * (CPU or CUDA), "float16" (CUDA only) adds dynamic loss scaling. The model stays float32.
     */
    precision: t.precision,
    /** Towers kept fixed ("visual", "text"); their projections and logit_scale still train. */
    freeze: t.freeze,
    /** Recompute the ViT blocks and BERT layers in backward instead of storing activations. */
    gradientCheckpointing: t.gradientCheckpointing,
    device: z
      .string()
      .regex(/^(cpu|cuda(:\d+)?)$/, 'expected "cpu", "cuda" or "cuda:N"')
      .default("cpu"),
    /** LibTorch CPU threads (default: the machine's cores). */
    threads: int(1).optional(),
    seed: int(0)
      .max(2 ** 32 - 1)
      .default(0),
    output: z.string().min(1),
    eval: z
      .object({
        /** Evaluate every N steps (0: only at the end). */
        every: int(0).default(0),
        /** A prompts JSON (default: lib/eval/prompts/zh-fundus.json; the version-1 layout is read too). */
        prompts: z.string().min(1).optional(),
        /** Multi-label zero-shot scoring: "relative" (positive prompts, centred over classes) or "contrast" (positive
         * minus negative prompts); see lib/eval/zeroshot.ts. */
        scoring: z.enum(["relative", "contrast"]).default("relative"),
        ks: z.array(int(1)).min(1).default([1, 5, 10]),
        batchSize: int(1).default(64),
      })
      .strict()
      .default({ every: 0, scoring: "relative", ks: [1, 5, 10], batchSize: 64 }),
    checkpoint: z
      .object({
        /** Checkpoint every N steps (0: only at the end). */
        every: int(0).default(0),
        /** Checkpoints kept (older ones are deleted). */
        keep: int(1).default(2),
      })
      .strict()
      .default({ every: 0, keep: 2 }),
    /** Stop after this many non-finite losses in a row. */
    maxNonFinite: int(1).default(5),
    /** Progress and metrics line every N steps. */
    logEvery: int(1).default(1),
    /** Multi-process runs (vilref pretrain --nproc N, or workers started by torchrun/srun). */
    dist: z
      .object({
        /** Every collective and the rendezvous wait at most this long; it must cover an evaluation
         * and a checkpoint on rank 0. */
        timeoutSeconds: z
          .number()
          .positive()
          .max(7 * 24 * 3600)
          .default(300),
        /** "auto": gloo on the CPU, nccl on CUDA. */
        backend: z.enum(["auto", "gloo", "nccl"]).default("auto"),
      })
      .strict()
      .default({ timeoutSeconds: 300, backend: "auto" }),
  })
  .strict()
  .refine((c) => c.epochs !== undefined || c.steps !== undefined, {
    path: ["steps"],
    message: "give epochs or steps (or both)",
  })
  .refine((c) => c.precision !== "float16" || c.device.startsWith("cuda"), {
    path: ["precision"],
    message: 'float16 (with loss scaling) needs device "cuda"; on the CPU use "bfloat16"',
  });

export type PretrainConfig = z.output<typeof pretrainConfigSchema>;
export type PretrainConfigInput = z.input<typeof pretrainConfigSchema>;

const PATH_KEYS: [string, string][] = [
  ["model", "checkpoint"],
  ["data", "train"],
  ["data", "heldOut"],
  ["labels", "file"],
  ["labels", "rules"],
  ["eval", "prompts"],
];

/** Validates a config; `baseDir` resolves relative paths (the output, manifests, vocab...). */
export function parseConfig(value: unknown, options: { baseDir?: string; source?: string } = {}): PretrainConfig {
  const r = pretrainConfigSchema.safeParse(value);
  if (!r.success) throw new TypeError(`${options.source ?? "config"}: ${formatIssues(r.error)}`);
  const c = r.data;
  const base = options.baseDir ?? process.cwd();
  const abs = (p: string) => path.resolve(base, p);
  c.output = abs(c.output);
  if (c.text.vocab !== "build") c.text.vocab = abs(c.text.vocab);
  for (const [a, b] of PATH_KEYS) {
    const o = (c as unknown as Record<string, Record<string, unknown>>)[a]!;
    if (typeof o[b] === "string") o[b] = abs(o[b]);
    else if (Array.isArray(o[b])) o[b] = (o[b] as string[]).map(abs);
  }
  return c;
}

/** The Trainer options a config asks for (`vilref pretrain` makes its Trainer with these). */
export function trainerOptionsFromConfig(
  config: PretrainConfig,
  labelDim: number,
  processGroup?: ProcessGroup,
): TrainerOptions {
  return {
    labelDim,
    lr: config.schedule.lr,
    ...config.optimizer,
    momentum: config.momentum,
    queueSize: config.queue.size,
    loss: config.loss,
    ...config.wscl,
    freeze: config.freeze,
    gradientCheckpointing: config.gradientCheckpointing,
    precision: config.precision,
    processGroup,
  };
}

/** Reads and validates a config file (relative paths are relative to its folder). */
export function loadConfig(file: string): PretrainConfig {
  const value = readJsonFile(file);
  return parseConfig(value, { baseDir: path.dirname(path.resolve(file)), source: file });
}
