/**
 * The command-line grammar every vilref command shares. New commands build their options from
 * here, so that the same option is spelled, parsed, defaulted and reported the same way everywhere:
 *
 *   import { addModelOptions, batchSizeOption, examples, int, loadModel, outOption, progressOption }
 *     from "./options.js";
 *   examples(
 *     addModelOptions(program.command("classify").description("..."), { required: true })
 *       .addOption(batchSizeOption(64))
 *       .addOption(outOption("predictions JSONL", { required: true }))
 *       .addOption(progressOption())
 *       .option("--top <k>", "classes to list per image", int({ min: 1 }), 3),
 *     [["vilref classify --model m.safetensors --images 'data/*.png' --out p.jsonl", "top-3 classes per image"]],
 *   ).action(async (o) => { const { model } = await loadModel(o); ... });
 *
 * Numbers go through one parser family (`int`, `float`, `unit`, `list`) whose errors commander turns
 * into one line naming the option; enumerations use `.choices()`. A usage error that only the
 * action can see (two options that exclude each other, one of several required) is a `UsageError`.
 * `main` (lib/cli/main.ts) exits with status 2 for every usage error and 1 for a failure.
 */
import { readFileSync } from "node:fs";
import { InvalidArgumentError, Option } from "commander";
import type { Command } from "commander";
import type { ModelConfigInput } from "../model/config.js";
import { modelFromSpec } from "../model/encoders.js";
import type { ModelOrigin } from "../model/encoders.js";
import type { Device, Dtype, ViLReF } from "../model/vilref.js";
import { setThreads } from "../native.js";
import type { ProgressOptions, ProgressSpec } from "../progress.js";
import { parseJsonText } from "../io/json.js";

/** A usage error found after parsing (exit status 2, one line). */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

// ---- numbers -------------------------------------------------------------------------------

/** Bounds of a number option: min ≤ x ≤ max, x > above. */
export interface Range {
  min?: number;
  max?: number;
  /** Exclusive lower bound (a learning rate: above 0). */
  above?: number;
}

/** An option-argument parser; `expects` says what it accepts ("an integer ≥ 1"). */
export type ValueParser<T> = ((value: string) => T) & { readonly expects: string };

const INT = /^[+-]?\d+$/;
const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function rangeText(r: Range): string {
  if (r.min !== undefined && r.max !== undefined) return ` between ${r.min} and ${r.max}`;
  const parts: string[] = [];
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.min !== undefined) parts.push(`≥ ${r.min}`);
  if (r.max !== undefined) parts.push(`≤ ${r.max}`);
  return parts.length ? " " + parts.join(" and ") : "";
}

function inRange(x: number, r: Range): boolean {
  return (
    (r.min === undefined || x >= r.min) && (r.max === undefined || x <= r.max) && (r.above === undefined || x > r.above)
  );
}

function numberParser(kind: "integer" | "number", syntax: RegExp, r: Range): ValueParser<number> {
  const expects = `${kind === "integer" ? "an integer" : "a number"}${rangeText(r)}`;
  const parse = (v: string): number => {
    const x = Number(v);
    if (!syntax.test(v.trim()) || !Number.isFinite(x) || !inRange(x, r))
      throw new InvalidArgumentError(`Expected ${expects}.`);
    return x;
  };
  return Object.assign(parse, { expects });
}

/** Whole numbers (no 1.5, 1e3 or 0x10), within the range. */
export function int(range: Range = {}): ValueParser<number> {
  return numberParser("integer", INT, range);
}

/** Finite decimal numbers (1, 0.5, 2e-3), within the range. */
export function float(range: Range = {}): ValueParser<number> {
  return numberParser("number", FLOAT, range);
}

/** A number between 0 and 1 (a fraction, a probability threshold). */
export function unit(): ValueParser<number> {
  return float({ min: 0, max: 1 });
}

/** Comma-separated values, each read by `item` ("1,5,10"); at least one. */
export function list<T>(item: ValueParser<T>): ValueParser<T[]> {
  const expects = `comma-separated values, each ${item.expects}`;
  const parse = (v: string): T[] => {
    const parts = v.split(",").map((s) => s.trim());
    if (parts.length === 0 || parts.every((s) => s === "")) throw new InvalidArgumentError(`Expected ${expects}.`);
    return parts.map((s) => {
      try {
        return item(s);
      } catch {
        throw new InvalidArgumentError(`Expected ${expects}; ${JSON.stringify(s)} is not.`);
      }
    });
  };
  return Object.assign(parse, { expects });
}

/**
 * Class names, comma-separated (a full-width "，" separates too): each non-empty after trimming,
 * no name twice. An empty name is refused naming its position.
 */
export const classNames: ValueParser<string[]> = Object.assign(
  (v: string): string[] => {
    const parts = v.split(/[,，]/).map((x) => x.trim());
    const empty = parts.findIndex((x) => x === "");
    if (empty >= 0)
      throw new InvalidArgumentError(
        `Expected comma-separated class names; name ${empty + 1} of ${parts.length} is empty.`,
      );
    const dup = parts.find((x, i) => parts.indexOf(x) !== i);
    if (dup !== undefined)
      throw new InvalidArgumentError(`Expected comma-separated class names; ${dup} is given twice.`);
    return parts;
  },
  { expects: "comma-separated class names" },
);

/** A per-image predictions file: .csv, .tsv or .jsonl (the format follows the extension). */
export const predictionsFile: ValueParser<string> = Object.assign(
  (v: string): string => {
    if (!/\.(csv|tsv|tab|jsonl)$/i.test(v)) throw new InvalidArgumentError("Expected a .csv, .tsv or .jsonl file.");
    return v;
  },
  { expects: "a .csv, .tsv or .jsonl file" },
);

/** cpu, cuda or cuda:N. */
export const device: ValueParser<Device> = Object.assign(
  (v: string): Device => {
    if (!/^(cpu|cuda(:\d+)?)$/.test(v)) throw new InvalidArgumentError("Expected cpu, cuda or cuda:N.");
    return v as Device;
  },
  { expects: "cpu, cuda or cuda:N" },
);

// ---- options two or more commands share -------------------------------------------------------

export interface ModelOptionSettings {
  required?: boolean;
  default?: string;
  description?: string;
}

/** --model <spec>: a checkpoint or preset:<name>[:seed]. */
export function modelOption(s: ModelOptionSettings = {}): Option {
  const o = new Option(
    "--model <spec>",
    s.description ??
      "a .safetensors or released .pt checkpoint (--config for a .pt), or preset:<name>[:seed] (random weights)",
  );
  if (s.default !== undefined) o.default(s.default);
  if (s.required) o.makeOptionMandatory();
  return o;
}

/** --config <file>: the model config JSON a released .pt needs when its head widths are not 64. */
export function configOption(): Option {
  return new Option(
    "--config <file>",
    "model config JSON for a released .pt (released names; default: inferred with 64-wide heads)",
  );
}

export function deviceOption(): Option {
  return new Option("--device <device>", "cpu, cuda or cuda:N").argParser(device).default("cpu");
}

export function threadsOption(): Option {
  return new Option(
    "--threads <n>",
    "LibTorch intra-op CPU threads (default: VILREF_THREADS, else all cores)",
  ).argParser(int({ min: 1 }));
}

export function dtypeOption(): Option {
  return new Option("--dtype <dtype>", "weights' precision (bfloat16/float16 on CUDA)")
    .choices(["float32", "bfloat16", "float16"])
    .default("float32");
}

export function vocabOption(s: { required?: boolean; description?: string } = {}): Option {
  const o = new Option("--vocab <file>", s.description ?? "the model's vocab.txt");
  if (s.required) o.makeOptionMandatory();
  return o;
}

export function contextLengthOption(defaultValue?: number, description = "tokens per text"): Option {
  const o = new Option("--context-length <n>", description).argParser(int({ min: 2 }));
  return defaultValue === undefined ? o : o.default(defaultValue);
}

export function batchSizeOption(defaultValue: number, description = "inputs per forward pass"): Option {
  return new Option("--batch-size <n>", description).argParser(int({ min: 1 })).default(defaultValue);
}

export function imageSizeOption(description = "input size in pixels (default: the model's resolution)"): Option {
  return new Option("--image-size <px>", description).argParser(int({ min: 8 }));
}

export function fovOption(description = "crop each image to its circular field of view first"): Option {
  return new Option("--fov", description);
}

export function seedOption(description = "random seed", defaultValue = 0): Option {
  return new Option("--seed <n>", description).argParser(int({ min: 0, max: 2 ** 32 - 1 })).default(defaultValue);
}

export function outOption(description: string, s: { required?: boolean; placeholder?: string } = {}): Option {
  const o = new Option(`--out <${s.placeholder ?? "file"}>`, description);
  if (s.required) o.makeOptionMandatory();
  return o;
}

export function reportOption(
  description = "write an HTML report (index.html and PNG figures) into this folder",
): Option {
  return new Option("--report <dir>", description);
}

export function bootstrapOption(): Option {
  return new Option("--bootstrap <n>", "bootstrap resamples for the 95% confidence intervals (0: none)")
    .argParser(int({ min: 0 }))
    .default(1000);
}

/** --predictions <file>: per-image rows (id, gold, a score per class, predicted), CSV or JSONL by extension. */
export function predictionsOption(
  description = "write per-image predictions here: id, gold, a score per class, predicted (.csv, .tsv or .jsonl)",
): Option {
  return new Option("--predictions <file>", description).argParser(predictionsFile);
}

/** --no-progress: `o.progress` is false when given (see progressSpec). */
export function progressOption(): Option {
  return new Option("--no-progress", "no progress bar or progress lines on standard error");
}

export function textFieldOption(description = "field or column holding the text"): Option {
  return new Option("--text-field <name>", description).default("text");
}

export function idFieldOption(description = "field or column holding the id"): Option {
  return new Option("--id-field <name>", description).default("id");
}

export function logOption(description = "append skipped images (path and reason) to this run log"): Option {
  return new Option("--log <file>", description);
}

export function splitOption(description = "the split to use ('all' for every sample)", defaultValue?: string): Option {
  const o = new Option("--split <name>", description);
  return defaultValue === undefined ? o : o.default(defaultValue);
}

export function imageColumnOption(description = "manifest column with the image path"): Option {
  return new Option("--image-column <name>", description).default("image");
}

/** --patient max|mean: per-patient metrics beside the per-image ones (every image needs a patient id). */
export function patientOption(): Option {
  return new Option(
    "--patient <how>",
    "also report per-patient metrics: each patient's scores the max or mean over their eyes (needs patient ids)",
  ).choices(["max", "mean"]);
}

export function stepsOption(description: string): Option {
  return new Option("--steps <n>", description).argParser(int({ min: 1 }));
}

/** --lr: a learning rate, above 0. */
export function lrOption(description: string, defaultValue?: number): Option {
  const o = new Option("--lr <lr>", description).argParser(float({ above: 0 }));
  return defaultValue === undefined ? o : o.default(defaultValue);
}

/** --backbone-lr: the backbone's learning rate (0 keeps it fixed). */
export function backboneLrOption(description: string, defaultValue?: number): Option {
  const o = new Option("--backbone-lr <lr>", description).argParser(float({ min: 0 }));
  return defaultValue === undefined ? o : o.default(defaultValue);
}

export function lossOption(description = "wscl (default) or clip (WSCL with no elimination or weighting)"): Option {
  return new Option("--loss <loss>", description).choices(["wscl", "clip"]);
}

// ---- the model: --model, --config, --device, --threads ------------------------------------------

export interface ModelCliOptions {
  model: string;
  config?: string;
  device?: Device;
  threads?: number;
  dtype?: Dtype;
}

/** Adds --model, --config, --device and --threads (and --dtype when asked) to a command. */
export function addModelOptions(cmd: Command, s: ModelOptionSettings & { dtype?: boolean } = {}): Command {
  cmd.addOption(modelOption(s)).addOption(configOption()).addOption(deviceOption()).addOption(threadsOption());
  if (s.dtype) cmd.addOption(dtypeOption());
  return cmd;
}

/** The JSON of --config (undefined when not given); an unreadable or malformed file names the option. */
export function readModelConfig(file: string | undefined): ModelConfigInput | undefined {
  if (file === undefined) return undefined;
  try {
    return parseJsonText(readFileSync(file, "utf8")) as ModelConfigInput;
  } catch (e) {
    throw new Error(`--config ${file}: ${(e as Error).message}`);
  }
}

/** Sets LibTorch's threads when --threads was given. */
export function applyThreads(o: { threads?: number }): void {
  if (o.threads !== undefined) setThreads(o.threads);
}

/** The model the options name, on their device, with their threads. */
export async function loadModel(o: ModelCliOptions): Promise<{ model: ViLReF; name: string; origin: ModelOrigin }> {
  applyThreads(o);
  const config = readModelConfig(o.config);
  return modelFromSpec(o.model, {
    ...(config ? { config } : {}),
    ...(o.device ? { device: o.device } : {}),
    ...(o.dtype ? { dtype: o.dtype } : {}),
  });
}

// ---- progress and help ----------------------------------------------------------------------

/** What to hand a library function: false under --no-progress, else the given renderer options. */
export function progressSpec(o: { progress?: boolean }, options: ProgressOptions = {}): ProgressSpec {
  return o.progress === false ? false : options;
}

export type Example = readonly [command: string, what: string];

/** The "Examples:" section of a --help text. */
export function examplesText(lines: readonly Example[]): string {
  return `\nExamples:\n${lines.map(([c, what]) => `  $ ${c}\n      ${what}`).join("\n")}\n`;
}

/** Adds an "Examples:" section to the command's --help. */
export function examples(cmd: Command, lines: readonly Example[]): Command {
  return cmd.addHelpText("after", examplesText(lines));
}
