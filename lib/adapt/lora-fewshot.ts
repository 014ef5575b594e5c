/**
 * The few-shot protocol with LoRA fine-tuning: for each seed, K images per class from the training
 * split (lib/adapt/shots.ts), LoRA adapters on the image tower and a linear head trained on them
 * (the Finetuner with `lora`: BCE over the classes, the base weights frozen), the best epoch chosen
 * by validation mean AUC (lib/finetune/train.ts), and the test split scored. Unknown multi-label
 * targets count as negatives in training; single-label classes are one-hot.
 */
import { Loader } from "../data/loader.js";
import type { EvalDataset, EvalSample } from "../eval/dataset.js";
import { classTargets, multiLabelTargets, splitOf } from "../eval/dataset.js";
import type { MetricsReport } from "../eval/evaluate.js";
import type { BootstrapOptions } from "../eval/metrics.js";
import { Finetuner } from "../finetune/finetuner.js";
import { finetune } from "../finetune/train.js";
import type { BatchSource } from "../finetune/train.js";
import type { ViLReF } from "../model/vilref.js";
import type { Targets } from "./adapters.js";
import type { ScoreTable } from "../eval/predictions.js";
import { logitTable, reportLogits, targetsOf } from "./fewshot.js";
import type { SeedResult } from "./fewshot.js";
import { Lora } from "./lora.js";
import type { LoraTargetGroup } from "./lora.js";
import { aggregatePatients } from "./patient.js";
import type { PatientAggregation } from "./patient.js";
import { sampleShots } from "./shots.js";
import { seedSummary } from "./summary.js";
import type { SeedSummary } from "./summary.js";

export interface LoraFewShotOptions extends BootstrapOptions {
  shots: number;
  draws?: number;
  splits?: { train?: string; val?: string; test?: string };
  rank?: number;
  alpha?: number;
  targets?: string[] | LoraTargetGroup;
  epochs?: number;
  batchSize?: number;
  /** Head lr (1e-3) and LoRA factors' lr (1e-3). */
  lr?: number;
  loraLr?: number;
  imageSize?: number;
  patient?: PatientAggregation;
  /**
   * No adapters: the whole image tower fine-tuned with this backbone lr, on the same draws, loop
   * and head (the baseline LoRA is measured against). It changes the model's weights, so it takes
   * one draw.
   */
  full?: { backboneLr: number };
  /** Called with the adapters of the first draw after training (to save or merge them). */
  onAdapters?: (lora: Lora) => Promise<void>;
}

export interface LoraFewShotResult extends MetricsReport {
  protocol: "fewshot";
  method: "lora" | "finetune";
  shots: number;
  seeds: SeedResult[];
  overSeeds: SeedSummary;
  /** Trainable parameters (factors and head) and the image tower's. */
  trainableParameters: number;
  backboneParameters: number;
  patient?: MetricsReport & { aggregation: PatientAggregation; patients: number };
  /** The first draw's per-image test scores (the head's probabilities; what --predictions writes). */
  predictions: ScoreTable;
}

/** BCE targets [n, C] in [0, 1]: multi-label with unknown as 0, single-label one-hot. */
function bceRows(ds: EvalDataset, samples: readonly EvalSample[]): Float32Array[] {
  const C = ds.classes.length;
  if (ds.task === "multilabel") {
    const y = multiLabelTargets(samples, C);
    return samples.map((_, i) => Float32Array.from(y.subarray(i * C, (i + 1) * C), (v) => (v === 1 ? 1 : 0)));
  }
  return Array.from(classTargets(samples, C), (t) => Float32Array.from({ length: C }, (_, c) => (c === t ? 1 : 0)));
}

function source(
  ds: EvalDataset,
  samples: readonly EvalSample[],
  size: number,
  batch: number,
  train: boolean,
  seed: number,
): BatchSource {
  const rows = bceRows(ds, samples);
  const byId = new Map(samples.map((s, i) => [s.id, rows[i]!] as const));
  const loader = new Loader(samples, {
    batchSize: batch,
    seed,
    shuffle: train,
    strict: true,
    transform: { size, train },
  });
  const C = ds.classes.length;
  return async function* (epoch: number) {
    for await (const b of loader.epoch(train ? epoch : 0)) {
      const labels = new Float32Array(b.ids.length * C);
      b.ids.forEach((id, i) => labels.set(byId.get(id)!, i * C));
      yield { images: b.images, labels: { data: labels, shape: [b.ids.length, C] } };
    }
  };
}

/** The few-shot protocol with LoRA (see the file header). */
export async function loraFewShot(model: ViLReF, ds: EvalDataset, o: LoraFewShotOptions): Promise<LoraFewShotResult> {
  const split = { train: o.splits?.train ?? "train", val: o.splits?.val ?? "val", test: o.splits?.test ?? "test" };
  const [train, val, test] = [splitOf(ds, split.train), splitOf(ds, split.val), splitOf(ds, split.test)];
  if (o.full && (o.draws ?? 1) !== 1) throw new RangeError("draws: full fine-tuning changes the model; one draw");
  const size = o.imageSize ?? model.config.image_resolution;
  const batch = o.batchSize ?? 16;
  const seeds: SeedResult[] = [];
  let first: { logits: Float32Array; trainable: number } | undefined;
  for (let k = 0; k < (o.draws ?? 1); k++) {
    const seed = (o.seed ?? 0) + k;
    const draw = sampleShots(ds, train, o.shots, seed, { exclude: test });
    const rank = o.rank ?? 8;
    const lora = o.full
      ? undefined
      : new Lora(model, { rank, alpha: o.alpha ?? 2 * rank, targets: o.targets ?? "attention", seed });
    const ft = new Finetuner(model, {
      classes: ds.classes.length,
      lr: o.lr ?? 1e-3,
      loraLr: o.loraLr ?? 1e-3,
      seed,
      ...(lora ? { lora } : { frozen: false, backboneLr: o.full!.backboneLr }),
    });
    const r = await finetune(ft, {
      epochs: o.epochs ?? 20,
      train: source(ds, draw.samples, size, batch, true, seed),
      val: source(ds, val, size, batch, false, seed),
      test: source(ds, test, size, batch, false, seed),
    });
    const logits = Float32Array.from(r.predictions.test!.probabilities, (p) => {
      const q = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
      return Math.log(q / (1 - q));
    });
    seeds.push({
      seed,
      valAuc: r.best.meanAuc,
      testAuc: r.test!.meanAuc,
      losses: r.epochs.map((e) => e.trainLoss),
      perClass: draw.perClass,
    });
    if (!first) {
      first = { logits, trainable: ft.config.trainableParameters };
      if (o.onAdapters && lora) await o.onAdapters(lora);
    }
  }
  const boot = { resamples: o.resamples ?? 1000, seed: o.seed ?? 0, level: o.level ?? 0.95 };
  const targets = targetsOf(ds, test);
  const report = reportLogits(ds, first!.logits, { n: test.length, targets }, boot);
  const backbone = model
    .parameters()
    .filter((p) => p.name.startsWith("visual."))
    .reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const result: LoraFewShotResult = {
    ...report,
    protocol: "fewshot",
    method: o.full ? "finetune" : "lora",
    shots: o.shots,
    seeds,
    overSeeds: seedSummary(seeds.map((s) => s.testAuc)),
    trainableParameters: first!.trainable,
    backboneParameters: backbone,
    notes: [...ds.notes, ...report.notes],
    predictions: logitTable(ds, { samples: test, targets }, first!.logits),
  };
  if (o.patient) {
    const agg = aggregatePatients(ds, test, first!.logits, o.patient);
    result.patient = { ...reportLogits(agg.ds, agg.scores, agg, boot), aggregation: o.patient, patients: agg.n };
  }
  return result;
}
