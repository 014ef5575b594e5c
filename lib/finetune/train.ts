/**
 * The fine-tuning loop of the released protocol: epochs over the training set (50 by default),
 * validation after each, the best epoch by validation (mean ROC AUC over the labels; mean BCE
 * breaks ties and stands in when AUC is undefined) kept and restored at the end, then the test
 * set scored with those weights. Data come as batch sources so that any loader fits.
 */
import { rocAuc } from "../eval/metrics.js";
import type { TensorData } from "../native.js";
import type { Finetuner, FinetuneState } from "./finetuner.js";

export interface LabeledBatch {
  images: TensorData<Float32Array>;
  /** [B, classes] in [0, 1]. */
  labels: TensorData<Float32Array>;
}

/** The batches of one epoch (training data reshuffled per epoch by the source). */
export type BatchSource = (epoch: number) => AsyncIterable<LabeledBatch>;

export interface SplitScores {
  /** Per-label ROC AUC (NaN when a label has one class only). */
  auc: number[];
  meanAuc: number;
  /** Mean BCE. */
  loss: number;
  samples: number;
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  val: SplitScores;
  seconds: number;
}

/** Probabilities and targets of a split, [samples, classes] row-major each. */
export interface SplitPredictions {
  probabilities: Float32Array;
  labels: Float32Array;
  samples: number;
  classes: number;
}

export interface FinetuneResult {
  epochs: EpochRecord[];
  bestEpoch: number;
  best: SplitScores;
  test?: SplitScores;
  /** The validation predictions of the best epoch, and the test predictions (for bootstrap CIs). */
  predictions: { val: SplitPredictions; test?: SplitPredictions };
}

export interface FinetuneLoopOptions {
  epochs?: number;
  train: BatchSource;
  val: BatchSource;
  test?: BatchSource;
  onEpoch?: (e: EpochRecord, best: boolean) => void;
}

/** Scores probabilities [n, C] against labels [n, C]. */
export function scoreProbabilities(probs: Float32Array, labels: Float32Array, classes: number): SplitScores {
  const n = probs.length / classes;
  const auc: number[] = [];
  let bce = 0;
  for (let c = 0; c < classes; c++) {
    const s = new Float32Array(n),
      y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const p = Math.min(1 - 1e-7, Math.max(1e-7, probs[i * classes + c]!));
      const t = labels[i * classes + c]!;
      s[i] = p;
      y[i] = t >= 0.5 ? 1 : 0;
      bce -= t * Math.log(p) + (1 - t) * Math.log(1 - p);
    }
    auc.push(rocAuc(s, y));
  }
  const finite = auc.filter(Number.isFinite);
  return {
    auc,
    meanAuc: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : Number.NaN,
    loss: n ? bce / (n * classes) : Number.NaN,
    samples: n,
  };
}

/** The finetuner's probabilities over a split, with the split's labels. */
export async function predictSplit(ft: Finetuner, source: AsyncIterable<LabeledBatch>): Promise<SplitPredictions> {
  const classes = ft.config.classes;
  const probs: number[] = [],
    labels: number[] = [];
  for await (const b of source) {
    if (b.labels.shape[1] !== classes)
      throw new RangeError(`labels: ${b.labels.shape[1]} per sample, the finetuner has ${classes} classes`);
    const p = await ft.predict(b.images);
    for (const v of p.data) probs.push(v);
    for (const v of b.labels.data) labels.push(v);
  }
  return {
    probabilities: Float32Array.from(probs),
    labels: Float32Array.from(labels),
    samples: probs.length / classes,
    classes,
  };
}

export async function scoreSplit(ft: Finetuner, source: AsyncIterable<LabeledBatch>): Promise<SplitScores> {
  const p = await predictSplit(ft, source);
  return scoreProbabilities(p.probabilities, p.labels, p.classes);
}

/** Is `a` a better validation result than `b`? Higher mean AUC, then lower loss. */
export function better(a: SplitScores, b: SplitScores | undefined): boolean {
  if (!b) return true;
  const fa = Number.isFinite(a.meanAuc),
    fb = Number.isFinite(b.meanAuc);
  if (fa && fb && a.meanAuc !== b.meanAuc) return a.meanAuc > b.meanAuc;
  if (fa !== fb) return fa;
  return a.loss < b.loss;
}

export async function finetune(ft: Finetuner, o: FinetuneLoopOptions): Promise<FinetuneResult> {
  const epochs = o.epochs ?? 50;
  if (!(Number.isInteger(epochs) && epochs >= 1))
    throw new RangeError(`epochs: expected a positive integer, got ${epochs}`);
  const records: EpochRecord[] = [];
  let best: SplitScores | undefined,
    bestEpoch = -1,
    bestState: FinetuneState | undefined,
    bestPredictions: SplitPredictions | undefined;
  for (let epoch = 0; epoch < epochs; epoch++) {
    const started = performance.now();
    let sum = 0,
      count = 0;
    for await (const b of o.train(epoch)) {
      const r = await ft.step(b);
      if (!Number.isFinite(r.loss)) throw new Error(`finetune: the loss became ${r.loss} in epoch ${epoch + 1}`);
      sum += r.loss * b.images.shape[0]!;
      count += b.images.shape[0]!;
    }
    const valPredictions = await predictSplit(ft, o.val(epoch));
    const val = scoreProbabilities(valPredictions.probabilities, valPredictions.labels, valPredictions.classes);
    const rec: EpochRecord = {
      epoch: epoch + 1,
      trainLoss: count ? sum / count : Number.NaN,
      val,
      seconds: (performance.now() - started) / 1000,
    };
    records.push(rec);
    const isBest = better(val, best);
    if (isBest) {
      best = val;
      bestEpoch = epoch + 1;
      bestState = await ft.stateDict();
      bestPredictions = valPredictions;
    }
    o.onEpoch?.(rec, isBest);
  }
  await ft.loadStateDict(bestState!);
  const result: FinetuneResult = { epochs: records, bestEpoch, best: best!, predictions: { val: bestPredictions! } };
  if (o.test) {
    const test = await predictSplit(ft, o.test(epochs));
    result.test = scoreProbabilities(test.probabilities, test.labels, test.classes);
    result.predictions.test = test;
  }
  return result;
}
