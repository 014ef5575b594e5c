/**
 * The demo: a synthetic set (1,500 training pairs and 300 held-out pairs from another seed), a
 * small ViT pre-trained with WSCL + queue on the CPU, zero-shot evaluated on the held-out set.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { writeSynthDataset } from "../synth/index.js";
import type { PretrainConfigInput } from "./config.js";

export interface DemoOptions {
  /** Folder for data and the run (default ./vilref-demo). */
  dir?: string;
  loss?: "wscl" | "clip";
  train?: number;
  heldOut?: number;
  epochs?: number;
  seed?: number;
  onData?: (done: number, n: number) => void;
}

/** Writes the demo data (once) and returns the demo's experiment config. */
export async function prepareDemo(options: DemoOptions = {}): Promise<PretrainConfigInput> {
  const dir = path.resolve(options.dir ?? "vilref-demo");
  const seed = options.seed ?? 2024;
  const nTrain = options.train ?? 1500;
  const nHeld = options.heldOut ?? 300;
  const trainDir = path.join(dir, `data-train-${nTrain}-${seed}`);
  const heldDir = path.join(dir, `data-heldout-${nHeld}-${seed + 1}`);
  if (!existsSync(path.join(trainDir, "manifest.jsonl"))) await writeSynthDataset(trainDir, nTrain, seed, { size: 64, ...(options.onData ? { onProgress: options.onData } : {}) });
  if (!existsSync(path.join(heldDir, "manifest.jsonl"))) await writeSynthDataset(heldDir, nHeld, seed + 1, { size: 64, ...(options.onData ? { onProgress: options.onData } : {}) });
  const loss = options.loss ?? "wscl";
  return {
    model: { preset: "tiny-vit" },
    data: { train: path.join(trainDir, "manifest.jsonl"), heldOut: path.join(heldDir, "manifest.jsonl"), augment: { scale: [0.8, 1], hflip: 0.5 } },
    labels: { source: "rules" },
    text: { vocab: "build", vocabSize: 1200, contextLength: 64 },
    batchSize: 32,
    epochs: options.epochs ?? 30,
    schedule: { lr: 1e-3, warmupSteps: 50, minLr: 1e-5 },
    loss,
    ...(loss === "clip" ? { wscl: { threshold: 2, gamma: 0 } } : {}),
    queue: { size: 512 },
    momentum: 0.99,
    seed,
    threads: 2,
    output: path.join(dir, `run-${loss}`),
    eval: { every: 0 },
    checkpoint: { every: 200, keep: 2 },
    logEvery: 10,
  };
}
