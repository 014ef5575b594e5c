/**
 * `vilref classify`: zero-shot classification of unlabelled images (a folder, glob or manifest)
 * into one row per image — every class's score and the predicted label(s) — as CSV or JSONL.
 */
import { Option } from "commander";
import type { Command } from "commander";
import { resolveImageInputs } from "../data/inputs.js";
import { ZeroShotClassifier } from "../eval/classify.js";
import type { ImagePrediction } from "../eval/classify.js";
import { tokenizerFor } from "../eval/features.js";
import { writePredictions } from "../eval/predictions.js";
import type { PredictionRow } from "../eval/predictions.js";
import { MULTI_LABEL_SCORINGS } from "../eval/zeroshot.js";
import type { MultiLabelScoring } from "../eval/zeroshot.js";
import { classList } from "./eval.js";
import {
  UsageError,
  addModelOptions,
  batchSizeOption,
  classNames,
  contextLengthOption,
  examples,
  fovOption,
  imageColumnOption,
  loadModel,
  outOption,
  predictionsFile,
  progressOption,
  progressSpec,
  unit,
  vocabOption,
} from "./options.js";
import type { ModelCliOptions } from "./options.js";

interface ClassifyCliOptions extends ModelCliOptions {
  images: string;
  classes?: string[];
  classesFile?: string;
  taxonomy?: boolean;
  prompts?: string;
  multiLabel?: boolean;
  threshold?: number;
  scoring: MultiLabelScoring;
  out: string;
  vocab?: string;
  contextLength?: number;
  batchSize: number;
  fov?: boolean;
  imageColumn: string;
  idColumn: string;
  progress: boolean;
}

/** A predictions-file row of a classifier's prediction. */
function row(p: ImagePrediction, multiLabel: boolean): PredictionRow {
  const top = p.ranked[0];
  return {
    id: p.id,
    ...(p.image !== undefined ? { image: p.image } : {}),
    predicted: multiLabel ? p.labels.map((l) => l.label) : (p.labels[0]?.label ?? ""),
    score: p.labels[0]?.score ?? top?.score ?? NaN,
    scores: p.scores,
  };
}

export function register(program: Command): void {
  const cmd = addModelOptions(
    program
      .command("classify")
      .description(
        "zero-shot classification of unlabelled images: one row per image with every class's score and the " +
          "predicted label(s)",
      ),
    { required: true },
  )
    .requiredOption(
      "--images <input>",
      "a folder (searched recursively), a glob such as 'photos/**/*.jpg' (quote it), or a manifest (.csv/.tsv/.jsonl)",
    )
    .addOption(
      new Option(
        "--classes <list>",
        "class names, comma-separated: taxonomy ids (glaucoma), their Chinese names (青光眼) or free text",
      )
        .argParser(classNames)
        .conflicts(["classesFile", "taxonomy"]),
    )
    .addOption(
      new Option("--classes-file <file>", "class names from a file: a JSON list or one name a line").conflicts(
        "taxonomy",
      ),
    )
    .option("--taxonomy", "every label of the taxonomy the prompt bank has prompts for")
    .option("--prompts <file>", "prompts file (default lib/eval/prompts/zh-fundus.json)")
    .option("--multi-label", "score each class on its own (a probability each) and predict every class ≥ --threshold")
    .addOption(
      new Option("--threshold <p>", "multi-label: the probability at which a class is predicted").argParser(unit()),
    )
    .addOption(
      new Option(
        "--scoring <mode>",
        "multi-label: contrast (present against absent prompts) or relative (against the mean over the classes)",
      )
        .choices(MULTI_LABEL_SCORINGS)
        .default("contrast"),
    )
    .addOption(
      outOption("predictions file: .csv, .tsv or .jsonl (by extension)", {
        required: true,
        placeholder: "file",
      }).argParser(predictionsFile),
    )
    .addOption(vocabOption({ description: "the model's vocab.txt (default: the one inside the checkpoint)" }))
    .addOption(contextLengthOption(undefined, "tokens per prompt (default: the model's recorded length)"))
    .addOption(batchSizeOption(32, "images per forward pass"))
    .addOption(fovOption())
    .addOption(imageColumnOption())
    .option("--id-column <name>", "manifest column with the id", "id")
    .addOption(progressOption());
  examples(cmd, [
    [
      "vilref classify --model vilref-vit-b-16 --images photos/ --classes 青光眼,糖尿病视网膜病变,正常眼底 --out preds.csv",
      "one class per photograph (softmax over the three), a spreadsheet of scores",
    ],
    [
      "vilref classify --model vilref-vit-b-16 --images 'photos/*.jpg' --taxonomy --multi-label --threshold " +
        "0.6 --out preds.jsonl",
      "every finding of the taxonomy scored on its own; those ≥ 0.6 predicted",
    ],
  ]).action((o: ClassifyCliOptions) => runClassify(o));
}

async function runClassify(o: ClassifyCliOptions): Promise<void> {
  const fromFile = classList({ classesFile: o.classesFile });
  const classes = o.classes ?? fromFile;
  if (!classes && !o.taxonomy)
    throw new UsageError("give the classes: --classes <list>, --classes-file <file> or --taxonomy");
  if (o.threshold !== undefined && !o.multiLabel) throw new UsageError("--threshold needs --multi-label");
  if (fromFile)
    try {
      classNames(fromFile.join(","));
    } catch (e) {
      throw new UsageError(`--classes-file ${o.classesFile}: ${(e as Error).message}`);
    }
  const samples = resolveImageInputs(o.images, { columns: { image: o.imageColumn, id: o.idColumn } });
  const { model } = await loadModel(o);
  const { tokenizer } = tokenizerFor(o.model, model, o.vocab);
  const classifier = await ZeroShotClassifier.create(model, {
    tokenizer,
    ...(o.taxonomy ? { taxonomy: true } : { classes: classes! }),
    ...(o.prompts ? { prompts: o.prompts } : {}),
    ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
    multiLabel: !!o.multiLabel,
    ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
    scoring: o.scoring,
  });
  const preds = await classifier.classify(samples, {
    batchSize: o.batchSize,
    transform: o.fov ? { fov: true } : {},
    progress: progressSpec(o, { label: "classify" }),
  });
  const bad = preds.filter((p) => p.error !== undefined);
  for (const p of bad) process.stderr.write(`vilref classify: skipped ${p.id}: ${p.error}\n`);
  const good = preds.filter((p) => p.error === undefined);
  if (good.length === 0) throw new Error(`${o.images}: no image could be decoded (${bad.length} tried)`);
  await writePredictions(
    o.out,
    classifier.classes,
    good.map((p) => row(p, classifier.multiLabel)),
  );
  const counts = new Map<string, number>();
  for (const p of good) for (const l of p.labels) counts.set(l.label, (counts.get(l.label) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1]);
  console.log(
    `wrote ${o.out}: ${good.length} images × ` +
      `${classifier.classes.length} classes${bad.length ? ` (${bad.length} skipped)` : ""}`,
  );
  console.log(`predicted: ${top.length ? top.map(([k, v]) => `${k} ${v}`).join(", ") : "none"}`);
}
