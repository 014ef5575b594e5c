/**
 * Checkpoints into the model folder: `convertCheckpoint` writes a vilref safetensors with the
 * vocabulary inside (a model is one file), `addModel` converts a checkpoint into the model folder
 * and registers it by name (`<home>/models.json`), so `--model NAME` and
 * `ViLReF.fromPretrained(NAME)` find it and no `--vocab` is needed afterwards.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { atomicWriteFile } from "../io/atomic.js";
import type { ModelConfigInput } from "./config.js";
import { fileSha256 } from "./encoders.js";
import { loadRegistry, MODEL_NAME, modelHome, readUserRegistry, USER_REGISTRY_FILE } from "./registry.js";
import type { RegistryEntry } from "./registry.js";
import { canonicalVocabText, sha256Hex, ViLReF } from "./vilref.js";

export interface ConvertOptions {
  /** The architecture of a `.pt` (default: the checkpoint's own, else inferred with 64-wide heads). */
  config?: ModelConfigInput;
  /** A vocab.txt to store inside the output (the sha256 of its tokens must match one the checkpoint records). */
  vocab?: string;
  /** sha256 the vocabulary must have (a known released model's). */
  expectVocabSha256?: string;
  labels?: string[];
  contextLength?: number;
  /** A `.pt` archive's largest uncompressed size in bytes (default 4 × the file's size + 1 MiB). */
  maxUncompressedBytes?: number;
  /** Told what was guessed or assumed (a `.pt` without a config: its head widths). */
  onWarning?: (message: string) => void;
}

/** Reads a vocab.txt for storing in a checkpoint, as its tokens (errors name the file). */
function readVocabText(file: string): string {
  try {
    return canonicalVocabText(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`--vocab ${file}: ${(e as Error).message}`);
  }
}

/**
 * A checkpoint (.pt or .safetensors) into a vilref safetensors at `output`, with the vocabulary's
 * text and sha256, the context length and labels in its metadata. A vocabulary that disagrees
 * with the sha256 the checkpoint (or `expectVocabSha256`) records is refused, naming the file.
 */
export async function convertCheckpoint(input: string, output: string, options: ConvertOptions = {}): Promise<ViLReF> {
  const vocab = options.vocab !== undefined ? readVocabText(options.vocab) : undefined;
  const check = (want: string | undefined, whose: string) => {
    const have = vocab !== undefined ? sha256Hex(vocab) : undefined;
    if (have !== undefined && want !== undefined && want !== have)
      throw new Error(`--vocab ${options.vocab}: sha256 ${have.slice(0, 12)}… is not ${whose} (${want.slice(0, 12)}…)`);
  };
  check(options.expectVocabSha256, "the released vocabulary");
  const model = await ViLReF.load(input, {
    ...(options.config ? { config: options.config } : {}),
    ...(options.maxUncompressedBytes !== undefined ? { maxUncompressedBytes: options.maxUncompressedBytes } : {}),
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
  check(model.vocabSha256, `the vocabulary ${input} records`);
  if (vocab === undefined && model.vocabSha256 === undefined) model.vocabSha256 = options.expectVocabSha256;
  await model.save(output, {
    ...(options.labels ? { labels: options.labels } : {}),
    ...(vocab !== undefined ? { vocab } : {}),
    ...(options.contextLength !== undefined ? { contextLength: options.contextLength } : {}),
  });
  if (vocab !== undefined) {
    model.vocab = vocab;
    model.vocabSha256 = sha256Hex(vocab);
  }
  if (options.contextLength !== undefined) model.contextLength = options.contextLength;
  return model;
}

export interface AddModelOptions {
  /** The name to register (default: the known model whose released file this is, else the file's base name). */
  name?: string;
  /** The model folder (default VILREF_HOME, else the user's cache folder). */
  dir?: string;
  /** A vocab.txt (default: the checkpoint's own, else a vocab.txt beside the file). */
  vocab?: string;
  config?: ModelConfigInput;
  contextLength?: number;
  /** Replace a model of that name. */
  force?: boolean;
  onWarning?: (message: string) => void;
}

export interface AddedModel {
  name: string;
  path: string;
  sha256: string;
  /** Where the vocabulary came from, or null when the model has none (commands that read text then need --vocab). */
  vocab: string | null;
  contextLength: number | undefined;
  model: ViLReF;
}

/** The name a file is registered under: the known model it is a released file of, else its base name. */
export function defaultModelName(file: string): string {
  const base = path.basename(file);
  for (const [name, e] of Object.entries(loadRegistry().models)) if (e.released?.files.includes(base)) return name;
  return base.replace(/\.(safetensors|pt|pth|bin)$/i, "");
}

/**
 * Converts `file` into the model folder and registers it: `<home>/<name>.safetensors` (a known
 * model's own file name) with the vocabulary inside, listed in `<home>/models.json`. A known
 * model's architecture, vocabulary sha256 and context length come from the registry.
 */
export async function addModel(file: string, options: AddModelOptions = {}): Promise<AddedModel> {
  if (!existsSync(file)) throw new Error(`${file}: no such checkpoint`);
  const name = options.name ?? defaultModelName(file);
  if (!MODEL_NAME.test(name))
    throw new RangeError(`--name ${JSON.stringify(name)}: a model name is letters, digits, '.', '-' and '_'`);
  const home = modelHome(options.dir);
  const entry: RegistryEntry | undefined = loadRegistry().models[name];
  const out = path.join(home, entry ? entry.file : `${name}.safetensors`);
  if (path.resolve(out) === path.resolve(file))
    throw new Error(`${file} is already the model folder's file for ${name}`);
  if (existsSync(out) && !options.force) throw new Error(`${out} exists (model ${name}); --force replaces it`);
  const beside = path.join(path.dirname(path.resolve(file)), "vocab.txt");
  const vocab = options.vocab ?? (existsSync(beside) ? beside : undefined);
  mkdirSync(home, { recursive: true });
  const config = options.config ?? (entry && /\.(pt|pth|bin)$/i.test(file) ? entry.config : undefined);
  const contextLength = options.contextLength ?? entry?.context_length;
  const model = await convertCheckpoint(file, out, {
    ...(config ? { config: config as ModelConfigInput } : {}),
    ...(vocab !== undefined ? { vocab } : {}),
    ...(entry?.vocab ? { expectVocabSha256: entry.vocab.sha256 } : {}),
    ...(contextLength !== undefined ? { contextLength } : {}),
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
  const sha256 = await fileSha256(out);
  if (!entry) {
    const reg = readUserRegistry(home);
    reg.models[name] = {
      file: path.basename(out),
      source: path.resolve(file),
      sha256,
      added: new Date().toISOString(),
    };
    await atomicWriteFile(
      path.join(home, USER_REGISTRY_FILE),
      new TextEncoder().encode(JSON.stringify(reg, null, 2) + "\n"),
    );
  }
  const vocabFrom = vocab ?? (model.vocab !== undefined ? `${file} (inside)` : null);
  if (vocabFrom === null)
    options.onWarning?.(
      `${name} has no vocabulary inside: commands that read text will need --vocab (register it again with ` +
        "--vocab vocab.txt to store one)",
    );
  return { name, path: out, sha256, vocab: vocabFrom, contextLength: model.contextLength, model };
}
