/**
 * `vilref eval segment` and `vilref eval finetune`: registerSegment(evalCommand) and
 * registerFinetune(evalCommand) add them to the `eval` command the caller owns.
 */
import { Option } from "commander";
import type { Command } from "commander";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { Loader } from "../data/loader.js";
import { readImageFolder, readManifest } from "../data/manifest.js";
import type { Sample } from "../data/manifest.js";
import { Finetuner, finetunerOptionsSchema } from "../finetune/finetuner.js";
import { finetune } from "../finetune/train.js";
import type { BatchSource, FinetuneResult } from "../finetune/train.js";
import { LABEL_IDS } from "../labels/taxonomy.js";
import { evaluateScores, formatReport } from "../eval/evaluate.js";
import type { MetricsReport } from "../eval/evaluate.js";
import { progress } from "../progress.js";
import type { Progress } from "../progress.js";
import { NORMALISATIONS } from "../segment/preprocess.js";
import type { Normalisation } from "../segment/preprocess.js";
import { formatSegmentReport, runSegment } from "../segment/run.js";
import { segmenterOptionsSchema } from "../segment/segmenter.js";
import type { SegmentReport } from "../segment/run.js";
import { writeReport } from "../eval/report.js";
import { goldLabels } from "../eval/predictions.js";
import type { ScoreTable } from "../eval/predictions.js";
import { writeOutputs } from "./eval.js";
import {
  addModelOptions,
  applyThreads,
  backboneLrOption,
  lrOption,
  stepsOption,
  batchSizeOption,
  bootstrapOption,
  examples,
  float,
  int,
  loadModel,
  outOption,
  predictionsOption,
  progressOption,
  progressSpec,
  readModelConfig,
  reportOption,
  seedOption,
  unit,
} from "./options.js";
import type { ModelCliOptions } from "./options.js";

// the documented defaults, for the help text (the schemas own them)
const SEG = segmenterOptionsSchema.parse({});
const FT = finetunerOptionsSchema.parse({ classes: 1 });

export function registerSegment(evalCommand: Command): void {
  const cmd = evalCommand
    .command("segment")
    .description(
      "train a vessel segmenter (ViT tokens + conv stem decoder, Dice + BCE) " +
        "on a DRIVE-layout set's training split and report Dice/IoU/AUC/Se/Sp inside the field of view on its " +
        "test split",
    )
    .requiredOption("--data <dir>", "DRIVE root: training/ and test/, each with images/, 1st_manual/, mask/");
  addModelOptions(cmd, {
    default: "preset:tiny-vit",
    description: "backbone: preset:<name>[:seed] or a ViLReF checkpoint with a ViT tower (--config for a .pt)",
  })
    .option("--minutes <m>", "training time budget", float({ above: 0 }), 5)
    .addOption(stepsOption("stop after n steps (whichever comes first)"))
    .option("--tile <px>", "tile side at full resolution (multiple of the patch size)", int({ min: 8 }), 64)
    .option("--stride <px>", "sliding-window stride (default: tile/2)", int({ min: 1 }))
    .addOption(batchSizeOption(8, "tiles per step"))
    .addOption(lrOption(`peak lr of stem + decoder, cosine over the budget (default ${SEG.lr})`))
    .addOption(backboneLrOption("peak lr of the ViT (default: --lr)"))
    .addOption(new Option("--normalise <mode>", "input normalisation").choices(NORMALISATIONS).default("fov-standard"))
    .option("--threshold <p>", "probability threshold for Dice/IoU/Se/Sp", unit(), 0.5)
    .addOption(seedOption("seed of initialisation and tile sampling"))
    .addOption(outOption("metrics JSON"))
    .option("--overlays <dir>", "overlay PNGs of the test images (TP white, FP red, FN blue)")
    .addOption(reportOption("an HTML page (index.html) with the metrics and the overlays of the test images"))
    .option("--save <file>", "save the trained segmenter (safetensors)")
    .addOption(progressOption());
  examples(cmd, [
    [
      "vilref eval segment --data DRIVE --minutes 3 --report seg/",
      "3 minutes of training from the tiny ViT preset, an HTML report with overlays",
    ],
    [
      "vilref eval segment --data DRIVE --model model.safetensors --tile 64 --out seg.json --save seg.safetensors",
      "a pre-trained ViT backbone; metrics JSON and the trained segmenter",
    ],
  ]).action((o: SegmentCliOptions) => runSegmentCommand(o));
}

interface SegmentCliOptions extends ModelCliOptions {
  data: string;
  progress: boolean;
  minutes: number;
  steps?: number;
  tile: number;
  stride?: number;
  batchSize: number;
  lr?: number;
  backboneLr?: number;
  normalise: Normalisation;
  threshold: number;
  seed: number;
  out?: string;
  overlays?: string;
  report?: string;
  save?: string;
}

async function runSegmentCommand(o: SegmentCliOptions): Promise<void> {
  applyThreads(o);
  const config = readModelConfig(o.config);
  const overlays = o.overlays ?? (o.report ? path.join(o.report, "overlays") : undefined);
  const report = await runSegment({
    data: o.data,
    model: o.model,
    ...(config ? { config } : {}),
    ...(o.device ? { device: o.device } : {}),
    progress: progressSpec(o),
    minutes: o.minutes,
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
    tile: o.tile,
    ...(o.stride !== undefined ? { stride: o.stride } : {}),
    batchSize: o.batchSize,
    lr: o.lr,
    ...(o.backboneLr !== undefined ? { backboneLr: o.backboneLr } : {}),
    normalisation: o.normalise,
    threshold: o.threshold,
    seed: o.seed,
    ...(o.out ? { out: o.out } : {}),
    ...(overlays ? { overlays } : {}),
    ...(o.save ? { save: o.save } : {}),
  });
  console.log(formatSegmentReport(report));
  if (o.out) console.log(`metrics: ${o.out}`);
  if (o.report) console.log(`report: ${await writeSegmentPage(o.report, report, overlays!)}`);
}

/** The HTML page of `eval segment --report`: the metrics tables and the test images' overlays. */
async function writeSegmentPage(dir: string, report: SegmentReport, overlayDir: string): Promise<string> {
  const m = (x: SegmentReport["test"]["mean"]) => [x.dice, x.iou, x.auc, x.sensitivity, x.specificity, x.accuracy];
  const columns = ["Dice", "IoU", "AUC", "sensitivity", "specificity", "accuracy"];
  const page = await writeReport(
    dir,
    {
      protocol: "segment",
      tables: [
        {
          title: `Inside the field of view, ${report.test.images} test images (threshold ${report.threshold})`,
          columns: ["", ...columns],
          rows: [
            ["mean over images", ...m(report.test.mean)],
            ["all pixels pooled", ...m(report.test.pooled)],
          ],
        },
        {
          title: "Per image",
          columns: ["image", ...columns],
          rows: report.test.perImage.map((r) => [r.name, ...m(r)]),
        },
      ],
      notes: [
        `training: ${report.training.steps} steps of ${report.training.batchSize} tiles in ` +
          `${(report.training.seconds / 60).toFixed(1)} min on ${report.training.images} images`,
      ],
    },
    {
      title: "vilref eval segment",
      context: { data: report.data, model: report.model, normalisation: report.normalisation },
      overlays: report.test.perImage.map((r) => ({
        title: r.name,
        png: path.join(overlayDir, `${r.name}.png`),
        caption: `Dice ${r.dice.toFixed(3)}`,
      })),
    },
  );
  return page.html;
}

/**
 * Samples and their label vectors: an image folder (one class per sub-folder, one-hot) or a
 * manifest with labels (taxonomy order; an uncertain 0.5 is the BCE target as given and counts
 * as positive for AUC).
 */
export function labeledSamples(
  input: string,
  what: string,
  classNames?: string[],
): { samples: Sample[]; classes: string[]; labels: Float32Array[]; kind: "folder" | "manifest" } {
  if (!existsSync(input)) throw new Error(`${what} ${input}: no such file or directory`);
  if (statSync(input).isDirectory()) {
    const { samples, classes } = readImageFolder(input);
    if (classNames && classNames.join("\n") !== classes.join("\n"))
      throw new Error(
        `${what} ${input}: classes ${classes.join(", ")} differ from the training set's ${classNames.join(", ")}`,
      );
    return {
      samples,
      classes,
      labels: samples.map((s) => Float32Array.from(classes, (_, i) => (i === s.target ? 1 : 0))),
      kind: "folder",
    };
  }
  const samples = readManifest(input);
  const missing = samples.find((s) => !s.labels);
  if (missing) throw new Error(`${what} ${input}: sample ${missing.id} (line ${missing.source.line}) has no labels`);
  return {
    samples,
    classes: [...LABEL_IDS],
    labels: samples.map((s) => Float32Array.from(LABEL_IDS, (id) => Number(s.labels![id] ?? 0))),
    kind: "manifest",
  };
}

function source(
  set: ReturnType<typeof labeledSamples>,
  size: number,
  batchSize: number,
  train: boolean,
  seed: number,
  bar: Progress,
): BatchSource {
  const byId = new Map(set.samples.map((s, i) => [s.id, set.labels[i]!] as const));
  const loader = new Loader(set.samples, { batchSize, seed, shuffle: train, strict: true, transform: { size, train } });
  const C = set.classes.length;
  return async function* (epoch: number) {
    for await (const b of loader.epoch(train ? epoch : 0)) {
      const labels = new Float32Array(b.ids.length * C);
      b.ids.forEach((id, i) => labels.set(byId.get(id)!, i * C));
      yield { images: b.images, labels: { data: labels, shape: [b.ids.length, C] }, ids: b.ids };
      bar.tick(b.ids.length); // after the consumer has processed the batch
    }
  };
}

interface FinetuneCliOptions extends ModelCliOptions {
  train: string;
  val: string;
  test?: string;
  epochs: number;
  batchSize: number;
  lr?: number;
  backboneLr?: number;
  frozen?: boolean;
  seed: number;
  bootstrap: number;
  out?: string;
  report?: string;
  predictions?: string;
  progress: boolean;
}

/**
 * Metrics with bootstrap CIs of the test predictions (the validation ones of the best epoch when
 * there is no test set): single-label for an image folder, multi-label for a manifest.
 */
export function finetuneMetrics(
  result: FinetuneResult,
  set: ReturnType<typeof labeledSamples>,
  bootstrap: { resamples: number; seed: number },
): MetricsReport {
  const p = result.predictions.test ?? result.predictions.val;
  const { samples: n, classes: C } = p;
  const scores = Float64Array.from(p.probabilities);
  const report =
    set.kind === "folder"
      ? evaluateScores(
          {
            task: "multiclass",
            classes: set.classes,
            scores,
            n,
            targets: Int32Array.from({ length: n }, (_, i) => p.labels.subarray(i * C, (i + 1) * C).indexOf(1)),
          },
          bootstrap,
        )
      : evaluateScores(
          { task: "multilabel", classes: set.classes, scores, n, y: p.labels.map((t) => (t >= 0.5 ? 1 : 0)) },
          bootstrap,
        );
  if (!result.predictions.test)
    report.notes.push("no --test set: the metrics are on the validation split that chose the epoch (optimistic)");
  return report;
}

/** The per-image probabilities of the scored split (test, else validation), for --predictions. */
function finetunePredictions(
  result: FinetuneResult,
  classes: string[],
  scored: ReturnType<typeof labeledSamples>,
): ScoreTable {
  const p = result.predictions.test ?? result.predictions.val;
  const multiLabel = scored.kind === "manifest";
  const n = p.samples;
  const row = (i: number) => p.labels.subarray(i * p.classes, (i + 1) * p.classes);
  return {
    ids: p.ids ?? scored.samples.map((s) => s.id),
    images: scored.samples.map((s) => s.image),
    classes,
    scores: p.probabilities,
    multiLabel,
    threshold: 0.5,
    gold: multiLabel
      ? goldLabels(classes, n, { y: p.labels.map((t) => (t >= 0.5 ? 1 : 0)) })
      : goldLabels(classes, n, { targets: Int32Array.from({ length: n }, (_, i) => row(i).indexOf(1)) }),
  };
}

async function runFinetune(o: FinetuneCliOptions): Promise<void> {
  const train = labeledSamples(o.train, "--train");
  const val = labeledSamples(o.val, "--val", train.classes);
  const test = o.test ? labeledSamples(o.test, "--test", train.classes) : undefined;
  const { model, name } = await loadModel(o);
  const size = model.config.image_resolution;
  const ft = new Finetuner(model, {
    classes: train.classes.length,
    lr: o.lr,
    backboneLr: o.backboneLr,
    frozen: !!o.frozen,
    seed: o.seed,
  });
  const { lr, backboneLr } = ft.options;
  process.stderr.write(
    `finetune: ${train.samples.length} training, ` +
      `${val.samples.length} validation${test ? `, ${test.samples.length} test` : ""} images; ` +
      `${train.classes.length} classes; ${o.frozen ? "frozen backbone" : `backbone lr ${backboneLr}`}, ` +
      `head lr ${lr}\n`,
  );
  const perEpoch = train.samples.length + val.samples.length;
  const bar = progress(
    progressSpec(o, { label: "finetune", unit: "img", total: o.epochs * perEpoch + (test?.samples.length ?? 0) }),
  );
  const result: FinetuneResult = await finetune(ft, {
    epochs: o.epochs,
    train: source(train, size, o.batchSize, true, o.seed, bar),
    val: source(val, size, o.batchSize, false, o.seed, bar),
    ...(test ? { test: source(test, size, o.batchSize, false, o.seed, bar) } : {}),
    onEpoch: (e, best) => {
      bar.status(`epoch ${e.epoch}/${o.epochs}`);
      bar.log(
        `  epoch ${e.epoch}: train BCE ${e.trainLoss.toFixed(4)}, ` +
          `val AUC ${e.val.meanAuc.toFixed(4)} BCE ` +
          `${e.val.loss.toFixed(4)}${best ? " (best)" : ""} ${e.seconds.toFixed(0)} s`,
      );
    },
  });
  bar.done();
  const metrics = finetuneMetrics(result, train, { resamples: o.bootstrap, seed: o.seed });
  const { predictions: _, ...training } = result;
  void _;
  const split = result.predictions.test ? "test" : "val";
  console.log(
    formatReport(
      metrics,
      `fine-tuning, best epoch ${result.bestEpoch} of ${o.epochs} (val mean AUC ` +
        `${result.best.meanAuc.toFixed(4)}); ${split} split`,
    ),
  );
  const reportable = Object.assign(metrics, {
    protocol: "finetune",
    split,
    frozen: !!o.frozen,
    lr,
    backboneLr,
    options: ft.options,
    training,
  });
  const predictions = finetunePredictions(result, train.classes, result.predictions.test ? test! : val);
  await writeOutputs(o, Object.assign(reportable, { predictions }), {
    model: name,
    train: o.train,
    val: o.val,
    ...(o.test ? { test: o.test } : {}),
  });
}

export function registerFinetune(evalCommand: Command): void {
  const cmd = evalCommand
    .command("finetune")
    .description(
      "fine-tune a ViLReF image tower with a linear head on pre-projection features (BCE; " +
        `backbone lr ${FT.backboneLr}, head lr ${FT.lr}; best epoch by validation AUC); ` +
        "metrics with bootstrap CIs",
    );
  addModelOptions(cmd, { required: true })
    .requiredOption("--train <path>", "training set: an image folder (class sub-folders) or a manifest with labels")
    .requiredOption("--val <path>", "validation set, same layout")
    .option("--test <path>", "test set, scored with the best epoch's weights")
    .option("--epochs <n>", "epochs", int({ min: 1 }), 50)
    .addOption(batchSizeOption(32, "images per step"))
    .addOption(lrOption(`head lr (default ${FT.lr})`))
    .addOption(backboneLrOption(`backbone lr (default ${FT.backboneLr})`))
    .option("--frozen", "freeze the backbone (linear probe by gradient descent)")
    .addOption(seedOption("seed of the head, the shuffling and the bootstrap"))
    .addOption(bootstrapOption())
    .addOption(outOption("metrics JSON (each metric with a 95% bootstrap CI; the epochs' records)"))
    .addOption(reportOption())
    .addOption(
      predictionsOption(
        "write the per-image probabilities of the scored split (test, else validation) here (.csv, .tsv or .jsonl)",
      ),
    )
    .addOption(progressOption());
  examples(cmd, [
    [
      "vilref eval finetune --model model.safetensors --train data/train --val data/val --test data/test " +
        "--epochs 20 --out ft.json",
      "class folders; the best epoch by validation AUC scored on the test set",
    ],
    [
      "vilref eval finetune --model model.safetensors --train tr.jsonl --val va.jsonl --frozen --report ft/",
      "a frozen backbone on manifests with labels; HTML report",
    ],
  ]).action((o: FinetuneCliOptions) => runFinetune(o));
}
