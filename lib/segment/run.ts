/**
 * `vilref eval segment`: train a segmenter on a DRIVE-layout set's training split for a time
 * budget, evaluate on its test split at full resolution, write metrics JSON (and overlays).
 */
import { mkdir } from "node:fs/promises";
import { atomicWriteFile } from "../io/atomic.js";
import { dirname } from "node:path";
import type { ModelConfigInput } from "../model/config.js";
import { modelFromSpec } from "../model/encoders.js";
import { formatDuration, progress } from "../progress.js";
import type { Progress, ProgressOptions, ProgressSpec } from "../progress.js";
import { readDrive } from "./drive.js";
import { normalise } from "./preprocess.js";
import type { Normalisation } from "./preprocess.js";
import type { Prepared } from "./sampler.js";
import { Segmenter } from "./segmenter.js";
import type { ResolvedSegmenterOptions } from "./segmenter.js";
import { evaluateSegmenter, trainSegmenter } from "./train.js";
import type { SegEvalResult, SegTrainResult } from "./train.js";

export interface SegmentRunOptions {
  /** DRIVE root: training/ and test/, each with images/, 1st_manual/, mask/. */
  data: string;
  /** Backbone: preset:<name>[:seed] or a checkpoint (default preset:tiny-vit). */
  model?: string;
  /** Model config JSON for a released .pt backbone. */
  config?: ModelConfigInput;
  /** Only "cpu": the segmenter is built on the CPU. */
  device?: string;
  minutes?: number;
  steps?: number;
  tile?: number;
  stride?: number;
  batchSize?: number;
  /** Peak lr of stem + decoder. Default: the Segmenter's (segmenterOptionFields.lr). */
  lr?: number;
  /** Peak lr of the backbone. Default: the Segmenter's (lr). */
  backboneLr?: number;
  stemChannels?: number;
  decoderChannels?: number;
  normalisation?: Normalisation;
  threshold?: number;
  seed?: number;
  /** Metrics JSON path. */
  out?: string;
  overlays?: string;
  /** Save the trained segmenter (safetensors). */
  save?: string;
  log?: (line: string) => void;
  /** Progress bars of training and evaluation (lib/progress.ts); default none. */
  progress?: ProgressSpec;
}

export interface SegmentReport {
  task: "segment";
  date: string;
  data: string;
  model: string;
  normalisation: Normalisation;
  threshold: number;
  segmenter: Record<string, unknown>;
  /** The segmenter's effective training options (read back from the native object). */
  options: ResolvedSegmenterOptions;
  training: {
    images: number;
    minutes: number | null;
    steps: number;
    seconds: number;
    batchSize: number;
    lr: number;
    finalLoss: number;
  };
  test: { images: number; stride: number } & SegEvalResult;
}

export async function runSegment(o: SegmentRunOptions): Promise<SegmentReport> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const spec = o.model ?? "preset:tiny-vit";
  const normalisation = o.normalisation ?? "fov-standard";
  const tile = o.tile ?? 64;
  const batchSize = o.batchSize ?? 8;
  const threshold = o.threshold ?? 0.5;
  if (o.device !== undefined && o.device !== "cpu")
    throw new Error(`--device ${o.device}: the segmenter runs on the CPU only (its native module has no device yet)`);
  const drive = await readDrive(o.data);
  log(
    `segment: ${drive.training.length} training and ${drive.test.length} test images from ${o.data} (${normalisation})`,
  );
  const prep = (list: typeof drive.training): Prepared[] =>
    list.map((im) => ({ name: im.name, plane: normalise(im, normalisation), target: im.target, fov: im.fov }));
  const train = prep(drive.training),
    test = prep(drive.test);
  const { model } = await modelFromSpec(spec, o.config ? { config: o.config } : {});
  const seg = await Segmenter.fromModel(
    model,
    {
      tile,
      ...(o.stemChannels ? { stemChannels: o.stemChannels } : {}),
      ...(o.decoderChannels ? { decoderChannels: o.decoderChannels } : {}),
    },
    { seed: o.seed, lr: o.lr, backboneLr: o.backboneLr },
  );
  log(`segment: backbone ${spec}, segmenter ${JSON.stringify(seg.config)}`);
  const bar = (options: ProgressOptions) =>
    progress(o.progress === undefined || o.progress === false ? false : { ...options, ...o.progress });
  const trained = await trainWithProgress(seg, train, o, bar);
  log(
    `segment: trained ${trained.steps} steps in ${trained.seconds.toFixed(0)} s, ` +
      `final loss ${trained.finalLoss.toFixed(4)}; evaluating ${test.length} test images by sliding window`,
  );
  const stride = o.stride ?? tile >> 1;
  const evaluating = bar({ label: "segment: evaluating", unit: "img", total: test.length });
  const evaluated = await evaluateSegmenter(seg, test, {
    stride,
    threshold,
    ...(o.overlays ? { overlays: o.overlays, sources: drive.test } : {}),
    onImage: () => evaluating.tick(),
  });
  evaluating.done();
  if (o.save) await seg.save(o.save, { normalisation, model: spec });
  const report: SegmentReport = {
    task: "segment",
    date: new Date().toISOString(),
    data: o.data,
    model: spec,
    normalisation,
    threshold,
    segmenter: { ...seg.config },
    options: seg.options,
    training: {
      images: train.length,
      minutes: o.minutes ?? null,
      steps: trained.steps,
      seconds: trained.seconds,
      batchSize,
      lr: seg.options.lr,
      finalLoss: trained.finalLoss,
    },
    test: { images: test.length, stride, ...evaluated },
  };
  if (o.out) {
    await mkdir(dirname(o.out), { recursive: true });
    await atomicWriteFile(o.out, JSON.stringify(report, null, 2) + "\n");
  }
  return report;
}

/** trainSegmenter with a progress bar over the steps (loss, lr and the time budget left as its status). */
async function trainWithProgress(
  seg: Segmenter,
  train: Prepared[],
  o: SegmentRunOptions,
  bar: (options: ProgressOptions) => Progress,
): Promise<SegTrainResult> {
  const training = bar({
    label: "segment: training",
    unit: "step",
    ...(o.steps !== undefined ? { total: o.steps } : {}),
  });
  const budget = o.minutes !== undefined ? o.minutes * 60 : undefined;
  const trained = await trainSegmenter(seg, train, {
    ...(o.minutes !== undefined ? { minutes: o.minutes } : {}),
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
    batchSize: o.batchSize ?? 8,
    seed: seg.options.seed,
    onStep: (e) => {
      const left = budget !== undefined ? `, ${formatDuration(budget - e.seconds)} of the budget left` : "";
      training.status(`loss ${e.loss.toFixed(4)} (dice loss ${e.dice.toFixed(3)}) lr ${e.lr.toExponential(2)}${left}`);
      training.tick();
    },
  });
  training.done();
  return trained;
}

/** The table the command prints. */
export function formatSegmentReport(r: SegmentReport): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : "n/a");
  const row = (label: string, m: SegEvalResult["mean"]) =>
    `${label.padEnd(22)} Dice ${f(m.dice)}  IoU ${f(m.iou)}  AUC ${f(m.auc)}  Se ${f(m.sensitivity)}  Sp ` +
    `${f(m.specificity)}  Acc ${f(m.accuracy)}`;
  return [
    `segmentation on ${r.test.images} test images, inside the field of view (threshold ${r.threshold}):`,
    row("mean over images", r.test.mean),
    row("all pixels pooled", r.test.pooled),
    `training: ${r.training.steps} steps of ${r.training.batchSize} tiles of ${String(r.segmenter.tile)}² in ` +
      `${(r.training.seconds / 60).toFixed(1)} min`,
  ].join("\n");
}
