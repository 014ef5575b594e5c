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
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { loadDataset, ADAPTERS } from "../eval/adapters/index.js";
import { isShardSpec } from "../data/shards.js";
import type { DatasetSpec } from "../eval/adapters/index.js";
import { splitOf } from "../eval/dataset.js";
import type { EvalDataset } from "../eval/dataset.js";
import { formatReport } from "../eval/evaluate.js";
import { textEncoder, tokenizerFor } from "../eval/features.js";
import { formatEstimate } from "../eval/metrics.js";
import { linearProbe } from "../eval/probe.js";
import { writeReport } from "../eval/report.js";
import type { Overlay, Reportable } from "../eval/report.js";
import { retrieval } from "../eval/retrieval.js";
import type { RetrievalResult } from "../eval/retrieval.js";
import { MULTI_LABEL_SCORINGS, zeroShot } from "../eval/zeroshot.js";
import type { MultiLabelScoring } from "../eval/zeroshot.js";
import { modelFromSpec } from "../model/encoders.js";
import type { ViLReF, Device, Dtype } from "../model/vilref.js";
import { setThreads } from "../native.js";

export interface CommonOptions {
  model: string;
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
  device?: string;
  threads?: number;
  out?: string;
  report?: string;
}

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name}: expected a whole number ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
};
const numberList = (name: string) => (v: string) => {
  const xs = v.split(",").map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x <= 0))
    throw new Error(`${name}: expected positive numbers separated by commas, got ${JSON.stringify(v)}`);
  return xs;
};

/** The options every eval subcommand shares: model, dataset, bootstrap, outputs. */
export function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--model <spec>", "a .safetensors/.pt checkpoint, or preset:<name>[:seed] (random weights)")
    .requiredOption(
      "--data <path>",
      "a manifest file, WebDataset shards (index.json, a folder of .tar, 'shards/{000..009}.tar'), or a dataset's root folder (with --adapter)",
    )
    .option(
      "--adapter <name>",
      `how to read --data: ${Object.keys(ADAPTERS).join(", ")} (default: manifest for a file, folder for a folder)`,
    )
    .option("--labels <file>", "label table to use instead of searching the root (odir, messidor, refuge)")
    .option(
      "--classes <list>",
      "class names, comma-separated (taxonomy ids for a manifest's labels; names in target order for a target column)",
    )
    .option("--classes-file <file>", "class names from a file: a JSON list or one name a line")
    .option(
      "--graded",
      "manifest with a target column: the classes are ordered grades (adds linear and quadratic kappa)",
    )
    .option("--seed <n>", "seed of the bootstrap and of splits an adapter assigns", int("--seed", 0), 0)
    .option(
      "--bootstrap <n>",
      "bootstrap resamples for the confidence intervals (0: none)",
      int("--bootstrap", 0),
      1000,
    )
    .option("--batch-size <n>", "images per forward pass", int("--batch-size", 1), 64)
    .option("--image-size <px>", "input size (default: the model's resolution)", int("--image-size", 8))
    .option("--fov", "crop each image to its circular field of view first")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .option("--threads <n>", "LibTorch intra-op threads", int("--threads", 1))
    .option("--out <file>", "write the metrics (with CIs) as JSON here")
    .option("--report <dir>", "write an HTML report (index.html and PNG figures) into this folder");
}

/** Class names from --classes / --classes-file (undefined when neither). */
export function classList(o: Pick<CommonOptions, "classes" | "classesFile">): string[] | undefined {
  if (o.classes !== undefined && o.classesFile !== undefined)
    throw new Error("give --classes or --classes-file, not both");
  if (o.classes !== undefined) {
    const xs = o.classes
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (xs.length === 0) throw new Error("--classes: no class names");
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
    const v = JSON.parse(text) as unknown;
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

export async function loadModel(
  o: Pick<CommonOptions, "model" | "device" | "threads">,
): Promise<{ model: ViLReF; name: string }> {
  if (o.threads !== undefined) setThreads(o.threads);
  return modelFromSpec(o.model, { device: (o.device ?? "cpu") as Device, dtype: "float32" as Dtype });
}

export function imageOptions(o: CommonOptions) {
  return {
    batchSize: o.batchSize,
    transform: { ...(o.imageSize ? { size: o.imageSize } : {}), ...(o.fov ? { fov: true } : {}) },
  };
}

const finiteOrNull = (_: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v);

/** Writes --out (JSON; NaN as null) and --report; prints where they went. */
export async function writeOutputs(
  o: Pick<CommonOptions, "out" | "report">,
  result: Reportable,
  context: Record<string, string | number>,
  overlays: Overlay[] = [],
): Promise<void> {
  if (o.out) {
    mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    writeFileSync(o.out, JSON.stringify({ ...context, ...result }, finiteOrNull, 2) + "\n");
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
    `retrieval on ${r.n} pairs (95% bootstrap CIs over queries, ${r.bootstrap.resamples} resamples)\n${line("image → text", r.imageToText)}\n${line("text → image", r.textToImage)}`,
  );
  for (const n of r.notes) console.log(`  note: ${n}`);
}

function parseScoring(v: string): MultiLabelScoring {
  if (!(MULTI_LABEL_SCORINGS as readonly string[]).includes(v))
    throw new TypeError(`--scoring: expected ${MULTI_LABEL_SCORINGS.join(" or ")}, got ${JSON.stringify(v)}`);
  return v as MultiLabelScoring;
}

/** Creates `vilref eval` with zeroshot, probe and retrieval; returns the `eval` command. */
export function register(program: Command): Command {
  const ev = program
    .command("eval")
    .description(
      "downstream evaluation: zero-shot classification, linear probe, retrieval (metrics JSON with bootstrap CIs, HTML report)",
    );

  addCommonOptions(
    ev
      .command("zeroshot")
      .description("zero-shot classification with Chinese prompt ensembles (lib/eval/prompts/zh-fundus.json)"),
  )
    .option("--split <name>", "the split to evaluate (default: test; 'all' for every sample)", "test")
    .option("--prompts <file>", "prompts file (templates, names and expert descriptions per class)")
    .option(
      "--scoring <mode>",
      "multi-label scoring: relative (positive prompts centred over the classes; default) or contrast (positive minus negative prompts)",
      "relative",
    )
    .option("--vocab <file>", "the model's vocab.txt (default: found beside the checkpoint)")
    .option(
      "--context-length <n>",
      "token context length (default: min(52, the model's positions))",
      int("--context-length", 2),
    )
    .action(
      async (
        o: CommonOptions & { split: string; prompts?: string; scoring: string; vocab?: string; contextLength?: number },
      ) => {
        const { ds, classes } = loadEvalData(o);
        const samples = o.split === "all" ? ds.samples : splitOf(ds, o.split);
        const { model, name } = await loadModel(o);
        const { tokenizer, file } = tokenizerFor(o.model, model.vocabSha256, o.vocab);
        const L = o.contextLength ?? Math.min(52, model.config.text_max_position_embeddings);
        const r = await zeroShot(model, textEncoder(model, tokenizer, L), ds, samples, {
          resamples: o.bootstrap,
          seed: o.seed,
          images: imageOptions(o),
          ...(o.prompts ? { prompts: o.prompts } : {}),
          ...(classes ? { classes } : {}),
          scoring: parseScoring(o.scoring),
        });
        console.log(formatReport(r, `zero-shot on ${ds.name} ${o.split}`));
        await writeOutputs(o, r, { model: name, vocab: file, dataset: ds.name, root: ds.root, split: o.split });
      },
    );

  addCommonOptions(
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
      numberList("--c-grid"),
    )
    .option("--multiclass <kind>", "single-label tasks: multinomial or ovr", "multinomial")
    .option("--refit <which>", "fit the final model on train or train+val", "train+val")
    .action(
      async (
        o: CommonOptions & {
          trainSplit: string;
          valSplit: string;
          testSplit: string;
          cGrid?: number[];
          multiclass: string;
          refit: string;
        },
      ) => {
        if (o.multiclass !== "multinomial" && o.multiclass !== "ovr")
          throw new Error(`--multiclass: expected multinomial or ovr, got ${o.multiclass}`);
        if (o.refit !== "train" && o.refit !== "train+val")
          throw new Error(`--refit: expected train or train+val, got ${o.refit}`);
        const { ds, classes } = loadEvalData(o);
        if (classes)
          throw new Error(
            "--classes: the probe uses every class of an adapter's dataset; select classes with a manifest",
          );
        const { model, name } = await loadModel(o);
        const r = await linearProbe(model, ds, {
          resamples: o.bootstrap,
          seed: o.seed,
          images: imageOptions(o),
          splits: { train: o.trainSplit, val: o.valSplit, test: o.testSplit },
          multiclass: o.multiclass,
          refit: o.refit,
          ...(o.cGrid ? { cGrid: o.cGrid } : {}),
        });
        console.log(
          formatReport(
            r,
            `linear probe on ${ds.name} (train ${r.splits.train}, val ${r.splits.val}, test ${r.splits.test}; ${r.featureDim}-d features; C = ${r.C})`,
          ),
        );
        await writeOutputs(o, r, { model: name, dataset: ds.name, root: ds.root, split: o.testSplit });
      },
    );

  addCommonOptions(
    ev.command("retrieval").description("image→text and text→image recall@k on paired images and reports"),
  )
    .option("--split <name>", "the split to evaluate ('all' for every sample)", "all")
    .option("--ks <list>", "k values", (v) => v.split(",").map(int("--ks", 1)), [1, 5, 10])
    .option("--vocab <file>", "the model's vocab.txt (default: found beside the checkpoint)")
    .option(
      "--context-length <n>",
      "token context length (default: min(52, the model's positions))",
      int("--context-length", 2),
    )
    .action(async (o: CommonOptions & { split: string; ks: number[]; vocab?: string; contextLength?: number }) => {
      const { ds } = loadEvalData(o);
      const samples = o.split === "all" ? ds.samples : splitOf(ds, o.split);
      const { model, name } = await loadModel(o);
      const { tokenizer, file } = tokenizerFor(o.model, model.vocabSha256, o.vocab);
      const L = o.contextLength ?? Math.min(52, model.config.text_max_position_embeddings);
      const r = await retrieval(model, textEncoder(model, tokenizer, L), samples, {
        resamples: o.bootstrap,
        seed: o.seed,
        ks: o.ks,
        images: imageOptions(o),
      });
      printRetrieval(r);
      await writeOutputs(o, r, { model: name, vocab: file, dataset: ds.name, root: ds.root, split: o.split });
    });
  return ev;
}

/** The `eval` command of a program `register` was called on. */
export function getEvalCommand(program: Command): Command {
  const ev = program.commands.find((c) => c.name() === "eval");
  if (!ev) throw new Error("the eval command is not registered (call register(program) from lib/cli/eval.ts first)");
  return ev;
}
