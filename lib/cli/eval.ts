/**
 * `vilref eval zeroshot|probe|retrieval`: downstream evaluation of a model on a dataset (a
 * manifest, or a public set's own layout through an adapter). Each writes its metrics (with
 * bootstrap CIs) as JSON to --out, prints a table, and with --report DIR an HTML page with ROC
 * curves and confusion matrices as PNG.
 *
 * `register(program)` returns the `eval` command; other protocols (fine-tuning, segmentation) attach
 * their subcommands to it (`getEvalCommand(program)` finds it again) and can reuse the option and
 * loading helpers exported here.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Option } from "commander";
import type { Command } from "commander";
import { loadDataset, ADAPTERS } from "../eval/adapters/index.js";
import { isShardSpec } from "../data/shards.js";
import type { DatasetSpec } from "../eval/adapters/index.js";
import { splitOf } from "../eval/dataset.js";
import type { EvalDataset } from "../eval/dataset.js";
import { formatReport } from "../eval/evaluate.js";
import { contextLengthFor, textEncoder, tokenizerFor } from "../eval/features.js";
import type { EncodeImagesOptions } from "../eval/features.js";
import { formatEstimate } from "../eval/metrics.js";
import { linearProbe } from "../eval/probe.js";
import { writeReport } from "../eval/report.js";
import type { Overlay, Reportable } from "../eval/report.js";
import { retrieval } from "../eval/retrieval.js";
import type { RetrievalResult } from "../eval/retrieval.js";
import { writeScoreTable } from "../eval/predictions.js";
import type { ScoreTable } from "../eval/predictions.js";
import { MULTI_LABEL_SCORINGS, zeroShot } from "../eval/zeroshot.js";
import type { MultiLabelScoring } from "../eval/zeroshot.js";
import type { ViLReF } from "../model/vilref.js";
import {
  UsageError,
  addModelOptions,
  batchSizeOption,
  bootstrapOption,
  contextLengthOption,
  examples,
  float,
  fovOption,
  imageSizeOption,
  int,
  list,
  loadModel as loadCliModel,
  outOption,
  patientOption,
  predictionsOption,
  progressOption,
  progressSpec,
  reportOption,
  seedOption,
  splitOption,
  vocabOption,
} from "./options.js";
import type { ModelCliOptions } from "./options.js";
import type { PatientAggregation } from "../adapt/patient.js";
import { parseJsonText } from "../io/json.js";
import { atomicWriteFileSync } from "../io/atomic.js";

export interface CommonOptions extends ModelCliOptions {
  data: string;
  adapter?: string;
  labels?: string;
  classes?: string;
  classesFile?: string;
  graded?: boolean;
  seed: number;
  bootstrap: number;
  batchSize: number;
  imageSize?: number;
  fov?: boolean;
  out?: string;
  report?: string;
  /** false under --no-progress. */
  progress: boolean;
}

/** The options every eval subcommand shares: model, dataset, bootstrap, outputs, progress. */
export function addCommonOptions(cmd: Command): Command {
  return addModelOptions(cmd, { required: true })
    .requiredOption(
      "--data <path>",
      "a manifest file, WebDataset shards (index.json, a folder of .tar, 'shards/{000..009}.tar'), " +
        "or a dataset's root folder (with --adapter)",
    )
    .addOption(
      new Option("--adapter <name>", "how to read --data (default: manifest for a file, folder for a folder)").choices(
        Object.keys(ADAPTERS),
      ),
    )
    .option("--labels <file>", "label table to use instead of searching the root (odir, messidor, refuge)")
    .addOption(
      new Option(
        "--classes <list>",
        "class names, comma-separated (taxonomy ids for a manifest's labels; " +
          "names in target order for a target column)",
      ).conflicts("classesFile"),
    )
    .option("--classes-file <file>", "class names from a file: a JSON list or one name a line")
    .option(
      "--graded",
      "manifest with a target column: the classes are ordered grades (adds linear and quadratic kappa)",
    )
    .addOption(seedOption("seed of the bootstrap and of splits an adapter assigns"))
    .addOption(bootstrapOption())
    .addOption(batchSizeOption(64, "images per forward pass"))
    .addOption(imageSizeOption())
    .addOption(fovOption())
    .addOption(outOption("write the metrics (with CIs) as JSON here"))
    .addOption(reportOption())
    .addOption(progressOption());
}

/** Class names from --classes / --classes-file (undefined when neither). */
export function classList(o: Pick<CommonOptions, "classes" | "classesFile">): string[] | undefined {
  if (o.classes !== undefined && o.classesFile !== undefined)
    throw new UsageError("give --classes or --classes-file, not both");
  if (o.classes !== undefined) {
    const xs = o.classes
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (xs.length === 0) throw new UsageError("--classes: no class names");
    return xs;
  }
  if (o.classesFile === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(o.classesFile, "utf8");
  } catch (e) {
    throw new Error(`--classes-file ${o.classesFile}: ${(e as Error).message}`);
  }
  if (text.trim().startsWith("[")) {
    const v = parseJsonText(text) as unknown;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
      throw new Error(`--classes-file ${o.classesFile}: expected a JSON list of strings`);
    return v as string[];
  }
  return text
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s !== "" && !s.startsWith("#"));
}

/** The dataset the options name. For a manifest, --classes select the classes; adapters have their own. */
export function loadEvalData(o: CommonOptions): { ds: EvalDataset; classes: string[] | undefined } {
  const classes = classList(o);
  const isManifest = o.adapter === undefined ? !isDir(o.data) || isShardSpec(o.data) : o.adapter === "manifest";
  const spec: DatasetSpec = {
    path: o.data,
    seed: o.seed,
    ...(o.adapter ? { adapter: o.adapter } : {}),
    ...(o.labels ? { labels: o.labels } : {}),
    ...(o.graded ? { graded: true } : {}),
    ...(isManifest && classes ? { classes } : {}),
  };
  return { ds: loadDataset(spec), classes: isManifest ? undefined : classes };
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The model of --model/--config/--device/--threads (see lib/cli/options.ts). */
export const loadModel = (o: ModelCliOptions): Promise<{ model: ViLReF; name: string }> => loadCliModel(o);

/** The image-encoding options of the common options (batch size, transform, progress). */
export function imageOptions(o: CommonOptions, label = "encoding images"): EncodeImagesOptions {
  return {
    batchSize: o.batchSize,
    transform: { ...(o.imageSize ? { size: o.imageSize } : {}), ...(o.fov ? { fov: true } : {}) },
    progress: progressSpec(o, { label }),
  };
}

const finiteOrNull = (_: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v);

/**
 * Writes --out (JSON; NaN as null), --report and --predictions (the result's per-image score table,
 * never part of the JSON); prints where they went.
 */
export async function writeOutputs(
  o: Pick<CommonOptions, "out" | "report"> & { predictions?: string },
  full: Reportable & { predictions?: ScoreTable },
  context: Record<string, string | number>,
  overlays: Overlay[] = [],
): Promise<void> {
  const { predictions, ...result } = full;
  if (o.predictions) {
    if (!predictions) throw new Error("--predictions: this evaluation has no per-image predictions");
    await writeScoreTable(o.predictions, predictions);
    console.log(`predictions: ${o.predictions} (${predictions.ids.length} images)`);
  }
  if (o.out) {
    mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    atomicWriteFileSync(o.out, JSON.stringify({ ...context, ...result }, finiteOrNull, 2) + "\n");
    console.log(`metrics: ${o.out}`);
  }
  if (o.report) {
    const r = await writeReport(o.report, result, { context, overlays });
    console.log(`report: ${r.html} (${r.images.length} figures)`);
  }
}

function printRetrieval(r: RetrievalResult): void {
  const line = (name: string, d: RetrievalResult["imageToText"]) =>
    `  ${name.padEnd(14)} ${Object.entries(d.recall)
      .map(([k, e]) => `${k} ${formatEstimate(e)}`)
      .join("  ")}  median rank ${d.medianRank}`;
  console.log(
    `retrieval on ${r.n} pairs (95% bootstrap CIs over queries, ${r.bootstrap.resamples} resamples)\n` +
      `${line("image → text", r.imageToText)}\n${line("text → image", r.textToImage)}`,
  );
  for (const n of r.notes) console.log(`  note: ${n}`);
}

const VOCAB_HELP = "the model's vocab.txt (default: the one inside the checkpoint, else a vocab.txt beside it)";
const CONTEXT_HELP = "token context length (default: the model's recorded one, else min(52, its positions))";

function registerZeroShot(ev: Command): void {
  const cmd = addCommonOptions(
    ev
      .command("zeroshot")
      .description("zero-shot classification with Chinese prompt ensembles (lib/eval/prompts/zh-fundus.json)"),
  )
    .addOption(splitOption("the split to evaluate ('all' for every sample)", "test"))
    .option("--prompts <file>", "prompts file (templates, names and expert descriptions per class)")
    .addOption(
      new Option(
        "--scoring <mode>",
        "multi-label scoring: relative (positive prompts centred over the classes) " +
          "or contrast (positive minus negative prompts)",
      )
        .choices(MULTI_LABEL_SCORINGS)
        .default("relative"),
    )
    .addOption(vocabOption({ description: VOCAB_HELP }))
    .addOption(contextLengthOption(undefined, CONTEXT_HELP))
    .addOption(patientOption())
    .addOption(predictionsOption());
  examples(cmd, [
    [
      "vilref eval zeroshot --model run/final/model.safetensors --data heldout/manifest.jsonl --out zs.json",
      "multi-label zero-shot AUC with 95% CIs on a manifest's test split",
    ],
    [
      "vilref eval zeroshot --model ckpt.pt --config vit-b-16.json --data RFMiD --adapter rfmid --report zs/",
      "a released checkpoint on RFMiD's own layout, with an HTML report",
    ],
  ]).action(
    async (
      o: CommonOptions & {
        split: string;
        prompts?: string;
        scoring: MultiLabelScoring;
        vocab?: string;
        contextLength?: number;
        predictions?: string;
        patient?: PatientAggregation;
      },
    ) => {
      const { ds, classes } = loadEvalData(o);
      const samples = o.split === "all" ? ds.samples : splitOf(ds, o.split);
      const { model, name } = await loadModel(o);
      const { tokenizer, file } = tokenizerFor(o.model, model, o.vocab);
      const L = contextLengthFor(model, o.contextLength);
      const r = await zeroShot(model, textEncoder(model, tokenizer, L), ds, samples, {
        resamples: o.bootstrap,
        seed: o.seed,
        images: imageOptions(o, "zeroshot: encoding images"),
        ...(o.prompts ? { prompts: o.prompts } : {}),
        ...(classes ? { classes } : {}),
        scoring: o.scoring,
        ...(o.patient ? { patient: o.patient } : {}),
      });
      console.log(formatReport(r, `zero-shot on ${ds.name} ${o.split}`));
      if (r.patient) console.log(formatReport(r.patient, `per patient (${r.patient.aggregation} over eyes)`));
      await writeOutputs(o, r, { model: name, vocab: file, dataset: ds.name, root: ds.root, split: o.split });
    },
  );
}

function registerProbe(ev: Command): void {
  const cmd = addCommonOptions(
    ev
      .command("probe")
      .description(
        "linear probe: logistic regression on frozen pre-projection features, C chosen on the validation split",
      ),
  )
    .option("--train-split <name>", "training split", "train")
    .option("--val-split <name>", "validation split (chooses C)", "val")
    .option("--test-split <name>", "test split (the reported metrics)", "test")
    .option(
      "--c-grid <list>",
      "inverse regularisation strengths to try, comma-separated (default 1e-4 … 100, half-decades)",
      list(float({ above: 0 })),
    )
    .addOption(
      new Option("--multiclass <kind>", "single-label tasks: multinomial or one-vs-rest")
        .choices(["multinomial", "ovr"])
        .default("multinomial"),
    )
    .addOption(
      new Option("--refit <which>", "fit the final model on train or train+val")
        .choices(["train", "train+val"])
        .default("train+val"),
    )
    .addOption(patientOption())
    .addOption(predictionsOption("write the test split's per-image probabilities here (.csv, .tsv or .jsonl)"));
  examples(cmd, [
    [
      "vilref eval probe --model model.safetensors --data ODIR --adapter odir --out probe.json",
      "linear probe on ODIR with the C grid chosen on its validation split",
    ],
    [
      "vilref eval probe --model model.safetensors --data m.csv --c-grid 0.01,0.1,1 --refit train",
      "a smaller C grid, final fit on the training split only",
    ],
  ]).action(
    async (
      o: CommonOptions & {
        trainSplit: string;
        valSplit: string;
        testSplit: string;
        cGrid?: number[];
        multiclass: "multinomial" | "ovr";
        refit: "train" | "train+val";
        predictions?: string;
        patient?: PatientAggregation;
      },
    ) => {
      const { ds, classes } = loadEvalData(o);
      if (classes)
        throw new UsageError(
          "--classes: the probe uses every class of an adapter's dataset; select classes with a manifest",
        );
      const { model, name } = await loadModel(o);
      const r = await linearProbe(model, ds, {
        resamples: o.bootstrap,
        seed: o.seed,
        images: imageOptions(o, "probe: encoding images"),
        splits: { train: o.trainSplit, val: o.valSplit, test: o.testSplit },
        multiclass: o.multiclass,
        refit: o.refit,
        ...(o.cGrid ? { cGrid: o.cGrid } : {}),
        ...(o.patient ? { patient: o.patient } : {}),
      });
      console.log(
        formatReport(
          r,
          `linear probe on ${ds.name} (train ${r.splits.train}, val ${r.splits.val}, test ${r.splits.test}; ` +
            `${r.featureDim}-d features; C = ${r.C})`,
        ),
      );
      if (r.patient) console.log(formatReport(r.patient, `per patient (${r.patient.aggregation} over eyes)`));
      await writeOutputs(o, r, { model: name, dataset: ds.name, root: ds.root, split: o.testSplit });
    },
  );
}

function registerRetrieval(ev: Command): void {
  const cmd = addCommonOptions(
    ev.command("retrieval").description("image→text and text→image recall@k on paired images and reports"),
  )
    .addOption(splitOption("the split to evaluate ('all' for every sample)", "all"))
    .option("--ks <list>", "k values, comma-separated", list(int({ min: 1 })), [1, 5, 10])
    .addOption(vocabOption({ description: VOCAB_HELP }))
    .addOption(contextLengthOption(undefined, CONTEXT_HELP));
  examples(cmd, [
    [
      "vilref eval retrieval --model run/final/model.safetensors --data pairs.jsonl --ks 1,5,10 --out ret.json",
      "recall@1/5/10 both ways with bootstrap CIs over the queries",
    ],
  ]).action(async (o: CommonOptions & { split: string; ks: number[]; vocab?: string; contextLength?: number }) => {
    const { ds } = loadEvalData(o);
    const samples = o.split === "all" ? ds.samples : splitOf(ds, o.split);
    const { model, name } = await loadModel(o);
    const { tokenizer, file } = tokenizerFor(o.model, model, o.vocab);
    const L = contextLengthFor(model, o.contextLength);
    const r = await retrieval(model, textEncoder(model, tokenizer, L), samples, {
      resamples: o.bootstrap,
      seed: o.seed,
      ks: o.ks,
      images: imageOptions(o, "retrieval: encoding images"),
    });
    printRetrieval(r);
    await writeOutputs(o, r, { model: name, vocab: file, dataset: ds.name, root: ds.root, split: o.split });
  });
}

/** Creates `vilref eval` with zeroshot, probe and retrieval; returns the `eval` command. */
export function register(program: Command): Command {
  const ev = program
    .command("eval")
    .description(
      "downstream evaluation: zero-shot classification, linear probe, retrieval, segmentation, " +
        "fine-tuning (metrics JSON with bootstrap CIs, HTML report)",
    );
  registerZeroShot(ev);
  registerProbe(ev);
  registerRetrieval(ev);
  return ev;
}

/** The `eval` command of a program `register` was called on. */
export function getEvalCommand(program: Command): Command {
  const ev = program.commands.find((c) => c.name() === "eval");
  if (!ev) throw new Error("the eval command is not registered (call register(program) from lib/cli/eval.ts first)");
  return ev;
}
