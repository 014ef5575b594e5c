/**
 * `vilref eval segment` and `vilref eval finetune`: registerSegment(evalCommand) and
 * registerFinetune(evalCommand) add them to the `eval` command the caller owns.
 */
import type { Command } from "commander";
import { existsSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path, { dirname } from "node:path";
import { Loader } from "../data/loader.js";
import { readImageFolder, readManifest } from "../data/manifest.js";
import type { Sample } from "../data/manifest.js";
import { Finetuner, finetunerOptionsSchema } from "../finetune/finetuner.js";
import { finetune } from "../finetune/train.js";
import type { BatchSource, FinetuneResult } from "../finetune/train.js";
import { LABEL_IDS } from "../labels/taxonomy.js";
import { modelFromSpec } from "../model/encoders.js";
import { NORMALISATIONS } from "../segment/preprocess.js";
import type { Normalisation } from "../segment/preprocess.js";
import { formatSegmentReport, runSegment } from "../segment/run.js";
import { segmenterOptionsSchema } from "../segment/segmenter.js";

// the documented defaults, for the help text (the schemas own them)
const SEG = segmenterOptionsSchema.parse({});
const FT = finetunerOptionsSchema.parse({ classes: 1 });
import type { SegmentReport } from "../segment/run.js";
import { writeReport } from "../eval/report.js";

function num(name: string, integer = false, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n)))
      throw new Error(`${name}: expected ${integer ? "an integer" : "a number"} ≥ ${min}, got "${v}"`);
    return n;
  };
}

export function registerSegment(evalCommand: Command): void {
  evalCommand
    .command("segment")
    .description(
      "train a vessel segmenter (ViT tokens + conv stem decoder, Dice + BCE) on a DRIVE-layout set's training split and report Dice/IoU/AUC/Se/Sp inside the field of view on its test split",
    )
    .requiredOption("--data <dir>", "DRIVE root: training/ and test/, each with images/, 1st_manual/, mask/")
    .option(
      "--model <spec>",
      "backbone: preset:<name>[:seed] or a ViLReF checkpoint with a ViT tower",
      "preset:tiny-vit",
    )
    .option("--minutes <m>", "training time budget", num("--minutes", false, 0.01), 5)
    .option("--steps <n>", "stop after n steps (whichever comes first)", num("--steps", true, 1))
    .option("--tile <px>", "tile side at full resolution (multiple of the patch size)", num("--tile", true, 8), 64)
    .option("--stride <px>", "sliding-window stride (default: tile/2)", num("--stride", true, 1))
    .option("--batch-size <n>", "tiles per step", num("--batch-size", true, 1), 8)
    .option("--lr <lr>", `peak lr of stem + decoder, cosine over the budget (default ${SEG.lr})`, num("--lr"))
    .option("--backbone-lr <lr>", "peak lr of the ViT (default: --lr)", num("--backbone-lr"))
    .option("--normalise <mode>", `input normalisation: ${NORMALISATIONS.join(" | ")}`, "fov-standard")
    .option("--threshold <p>", "probability threshold for Dice/IoU/Se/Sp", num("--threshold"), 0.5)
    .option("--seed <n>", "seed of initialisation and tile sampling", num("--seed", true, 0), 0)
    .option("--out <file>", "metrics JSON")
    .option("--overlays <dir>", "overlay PNGs of the test images (TP white, FP red, FN blue)")
    .option("--report <dir>", "an HTML page (index.html) with the metrics and the overlays of the test images")
    .option("--save <file>", "save the trained segmenter (safetensors)")
    .action(
      async (o: {
        data: string;
        model: string;
        minutes: number;
        steps?: number;
        tile: number;
        stride?: number;
        batchSize: number;
        lr?: number;
        backboneLr?: number;
        normalise: string;
        threshold: number;
        seed: number;
        out?: string;
        overlays?: string;
        report?: string;
        save?: string;
      }) => {
        if (!NORMALISATIONS.includes(o.normalise as Normalisation))
          throw new Error(`--normalise: expected ${NORMALISATIONS.join(" or ")}, got "${o.normalise}"`);
        const report = await runSegment({
          data: o.data,
          model: o.model,
          minutes: o.minutes,
          ...(o.steps !== undefined ? { steps: o.steps } : {}),
          tile: o.tile,
          ...(o.stride !== undefined ? { stride: o.stride } : {}),
          batchSize: o.batchSize,
          lr: o.lr,
          backboneLr: o.backboneLr,
          normalisation: o.normalise as Normalisation,
          threshold: o.threshold,
          seed: o.seed,
          ...(o.out ? { out: o.out } : {}),
          ...(o.overlays || o.report ? { overlays: o.overlays ?? path.join(o.report!, "overlays") } : {}),
          ...(o.save ? { save: o.save } : {}),
        });
        console.log(formatSegmentReport(report));
        if (o.out) console.log(`metrics: ${o.out}`);
        if (o.report) {
          const overlayDir = o.overlays ?? path.join(o.report, "overlays");
          const m = (x: SegmentReport["test"]["mean"]) => [
            x.dice,
            x.iou,
            x.auc,
            x.sensitivity,
            x.specificity,
            x.accuracy,
          ];
          const page = await writeReport(
            o.report,
            {
              protocol: "segment",
              tables: [
                {
                  title: `Inside the field of view, ${report.test.images} test images (threshold ${report.threshold})`,
                  columns: ["", "Dice", "IoU", "AUC", "sensitivity", "specificity", "accuracy"],
                  rows: [
                    ["mean over images", ...m(report.test.mean)],
                    ["all pixels pooled", ...m(report.test.pooled)],
                  ],
                },
                {
                  title: "Per image",
                  columns: ["image", "Dice", "IoU", "AUC", "sensitivity", "specificity", "accuracy"],
                  rows: report.test.perImage.map((r) => [r.name, ...m(r)]),
                },
              ],
              notes: [
                `training: ${report.training.steps} steps of ${report.training.batchSize} tiles in ${(report.training.seconds / 60).toFixed(1)} min on ${report.training.images} images`,
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
          console.log(`report: ${page.html}`);
        }
      },
    );
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
): { samples: Sample[]; classes: string[]; labels: Float32Array[] } {
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
    };
  }
  const samples = readManifest(input);
  const missing = samples.find((s) => !s.labels);
  if (missing) throw new Error(`${what} ${input}: sample ${missing.id} (line ${missing.source.line}) has no labels`);
  return {
    samples,
    classes: [...LABEL_IDS],
    labels: samples.map((s) => Float32Array.from(LABEL_IDS, (id) => Number(s.labels![id] ?? 0))),
  };
}

function source(
  set: ReturnType<typeof labeledSamples>,
  size: number,
  batchSize: number,
  train: boolean,
  seed: number,
): BatchSource {
  const byId = new Map(set.samples.map((s, i) => [s.id, set.labels[i]!] as const));
  const loader = new Loader(set.samples, { batchSize, seed, shuffle: train, strict: true, transform: { size, train } });
  const C = set.classes.length;
  return async function* (epoch: number) {
    for await (const b of loader.epoch(train ? epoch : 0)) {
      const labels = new Float32Array(b.ids.length * C);
      b.ids.forEach((id, i) => labels.set(byId.get(id)!, i * C));
      yield { images: b.images, labels: { data: labels, shape: [b.ids.length, C] } };
    }
  };
}

export function registerFinetune(evalCommand: Command): void {
  evalCommand
    .command("finetune")
    .description(
      `fine-tune a ViLReF image tower with a linear head on pre-projection features (BCE; backbone lr ${FT.backboneLr}, head lr ${FT.lr}; best epoch by validation AUC) and report AUC`,
    )
    .requiredOption("--model <spec>", "ViLReF checkpoint (or preset:<name>[:seed])")
    .requiredOption("--train <path>", "training set: an image folder (class sub-folders) or a manifest with labels")
    .requiredOption("--val <path>", "validation set, same layout")
    .option("--test <path>", "test set, scored with the best epoch's weights")
    .option("--epochs <n>", "epochs", num("--epochs", true, 1), 50)
    .option("--batch-size <n>", "images per step", num("--batch-size", true, 1), 32)
    .option("--lr <lr>", `head lr (default ${FT.lr})`, num("--lr"))
    .option("--backbone-lr <lr>", `backbone lr (default ${FT.backboneLr})`, num("--backbone-lr"))
    .option("--frozen", "freeze the backbone (linear probe by gradient descent)")
    .option("--seed <n>", "seed", num("--seed", true, 0), 0)
    .option("--out <file>", "metrics JSON")
    .action(
      async (o: {
        model: string;
        train: string;
        val: string;
        test?: string;
        epochs: number;
        batchSize: number;
        lr?: number;
        backboneLr?: number;
        frozen?: boolean;
        seed: number;
        out?: string;
      }) => {
        const train = labeledSamples(o.train, "--train");
        const val = labeledSamples(o.val, "--val", train.classes);
        const test = o.test ? labeledSamples(o.test, "--test", train.classes) : undefined;
        const { model } = await modelFromSpec(o.model);
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
          `finetune: ${train.samples.length} training, ${val.samples.length} validation${test ? `, ${test.samples.length} test` : ""} images; ${train.classes.length} classes; ${o.frozen ? "frozen backbone" : `backbone lr ${backboneLr}`}, head lr ${lr}\n`,
        );
        const result: FinetuneResult = await finetune(ft, {
          epochs: o.epochs,
          train: source(train, size, o.batchSize, true, o.seed),
          val: source(val, size, o.batchSize, false, o.seed),
          ...(test ? { test: source(test, size, o.batchSize, false, o.seed) } : {}),
          onEpoch: (e, best) =>
            process.stderr.write(
              `  epoch ${e.epoch}: train BCE ${e.trainLoss.toFixed(4)}, val AUC ${e.val.meanAuc.toFixed(4)} BCE ${e.val.loss.toFixed(4)}${best ? " (best)" : ""} ${e.seconds.toFixed(0)} s\n`,
            ),
        });
        const report = {
          task: "finetune",
          date: new Date().toISOString(),
          model: o.model,
          classes: train.classes,
          frozen: !!o.frozen,
          lr,
          backboneLr,
          options: ft.options,
          ...result,
        };
        console.log(
          `best epoch ${result.bestEpoch}: val mean AUC ${result.best.meanAuc.toFixed(4)}${result.test ? `; test mean AUC ${result.test.meanAuc.toFixed(4)}` : ""}`,
        );
        if (o.out) {
          await mkdir(dirname(o.out), { recursive: true });
          await writeFile(o.out, JSON.stringify(report, null, 2) + "\n");
          console.log(`metrics: ${o.out}`);
        }
      },
    );
}
