/**
 * ViLReF: the dual encoder (image tower + Chinese BERT) in LibTorch. Load released `.pt`
 * checkpoints or vilref `.safetensors` files, encode preprocessed images and token ids, score
 * image–text pairs, save.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { checkConfigAgainstShapes } from "../checkpoint/config-check.js";
import { CheckpointError, readSafetensors, writeSafetensors } from "../checkpoint/safetensors.js";
import { parseJson } from "../io/json.js";
import type { StTensor } from "../checkpoint/safetensors.js";
import { z } from "zod";
import { loadStateSchema, parseOptions, seedSchema } from "../config/options.js";
import type { KeyReport, LoadStateOptions } from "../config/options.js";
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { NativeViLReF, TensorData } from "../native.js";
import { inferConfig, parseModelConfig, presetConfig } from "./config.js";
import type { ModelConfig, ModelConfigInput } from "./config.js";
import { resolveModel } from "./registry.js";
import { Vocab } from "../text/vocab.js";
import type { ResolvedModel } from "./registry.js";

export type Device = "cpu" | "cuda" | `cuda:${number}`;
export type Dtype = "float32" | "bfloat16" | "float16";

export const modelOptionFields = {
  /** "cpu", "cuda" or "cuda:N" (whether it exists is checked natively). Default: "cpu". */
  device: z
    .string()
    .regex(/^(cpu|cuda(:\d+)?)$/, 'expected "cpu", "cuda" or "cuda:N"')
    .transform((d) => d as Device)
    .default("cpu"),
  /** Weight dtype: float32; bfloat16 and float16 on CUDA only. Default: "float32". */
  dtype: z.enum(["float32", "bfloat16", "float16"]).default("float32"),
};
export const modelOptionsSchema = z.object(modelOptionFields).strict();
/** Where a model lives and in which dtype. */
export type ModelOptions = z.input<typeof modelOptionsSchema>;

export const createOptionFields = {
  ...modelOptionFields,
  /** Seed of the random initialisation. Default: 0. */
  seed: seedSchema().default(0),
};
export const createOptionsSchema = z.object(createOptionFields).strict();
/** ViLReF.create's options. */
export type CreateOptions = z.input<typeof createOptionsSchema>;
/** Every option filled in: what the native model takes. */
export type ResolvedCreateOptions = z.output<typeof createOptionsSchema>;

export interface LoadOptions extends ModelOptions, LoadStateOptions {
  /** The config, when the file has none (released `.pt` files): its head widths cannot be inferred. */
  config?: ModelConfigInput;
  /** A `.pt` archive's largest uncompressed size in bytes (default 4 × the file's size + 1 MiB). */
  maxUncompressedBytes?: number;
  /** Told what was guessed (a `.pt` without a config: the head widths). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

/** What readCheckpoint takes besides the path and config. */
export interface ReadCheckpointOptions {
  /** As LoadOptions.strict: with false, a checkpoint may lack tensors of the config. Default true. */
  strict?: boolean;
  maxUncompressedBytes?: number;
}

export const encodeOptionFields = {
  /** "projected": the joint embedding; "pre": the tower's features before the projection. Default: "projected". */
  features: z.enum(["projected", "pre"]).default("projected"),
};
export const encodeOptionsSchema = z.object(encodeOptionFields).strict();
export type EncodeOptions = z.input<typeof encodeOptionsSchema>;
export type ResolvedEncodeOptions = z.output<typeof encodeOptionsSchema>;

/** A state dict entry as the native side takes it: 16-bit floats travel as raw bits. */
export type StateTensor =
  | TensorData<Float32Array>
  | TensorData<Float64Array>
  | TensorData<BigInt64Array>
  | TensorData<Int32Array>
  | (TensorData<Uint16Array & Float32Array> & { dtype: "bfloat16" | "float16" });

/** The native model object a ViLReF wraps; trainers and fine-tuners take it (opaque to users). */
export type ViLReFHandle = NativeViLReF;

/** What a vilref safetensors file carries besides tensors (metadata key "vilref", JSON). */
export interface ModelMetadata {
  format: 1;
  config: ModelConfig;
  /** Label names, in the order of any label vectors the model was trained with. */
  labels?: string[];
  /** sha256 of the vocabulary file the text tower was trained with (of the text in the "vocab"
   * entry when there is one). */
  vocab_sha256?: string;
  /** Tokens per text the model was trained with (the default context length of its tokenizer). */
  context_length?: number;
}

/** The safetensors metadata key holding the vocabulary's text (vocab.txt, one token a line). */
export const VOCAB_METADATA_KEY = "vocab";

export interface SaveOptions {
  labels?: string[];
  /** Record this vocabulary's sha256 only (the vocabulary itself stays a separate file). */
  vocabSha256?: string;
  /**
   * The vocabulary's text (vocab.txt): stored in the file, as its tokens (Vocab.toText: one per line,
   * no BOM, CR or surrounding spaces) with their sha256, so the model is one file.
   */
  vocab?: string;
  contextLength?: number;
}

export interface PretrainedOptions extends ModelOptions {
  /** The model folder (default VILREF_HOME, else $XDG_CACHE_HOME/vilref or ~/.cache/vilref). */
  dir?: string;
  /** The config of a .pt given as a path (a known name brings its own). */
  config?: ModelConfigInput;
  /** As LoadOptions. */
  maxUncompressedBytes?: number;
  /** As LoadOptions. */
  onWarning?: (message: string) => void;
}

/** A vocabulary's text as a checkpoint stores and hashes it: its tokens (Vocab.toText), whatever
 * the file's BOM, CRs or spaces. */
export function canonicalVocabText(text: string): string {
  return Vocab.fromText(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).toText();
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function toStateTensor(name: string, t: StTensor): StateTensor {
  switch (t.dtype) {
    case "F32":
    case "F64":
    case "I64":
    case "I32":
      return { data: t.data, shape: t.shape } as StateTensor;
    case "BF16":
      return { data: t.data, shape: t.shape, dtype: "bfloat16" } as StateTensor;
    case "F16":
      return { data: t.data, shape: t.shape, dtype: "float16" } as StateTensor;
    default:
      throw new TypeError(`tensor "${name}": dtype ${t.dtype} is not a model parameter type`);
  }
}

function toStTensor(t: TensorData<Float32Array> | TensorData<BigInt64Array>): StTensor {
  return t.data instanceof BigInt64Array
    ? { dtype: "I64", shape: t.shape, data: t.data }
    : { dtype: "F32", shape: t.shape, data: t.data };
}

/**
 * The model. It owns native memory: `dispose()` (or `await using`) frees the weights without waiting
 * for the garbage collector, after the calls already made; trainers and fine-tuners made on it are
 * disposed with it.
 */
export class ViLReF extends NativeResource {
  readonly #native: NativeViLReF;
  readonly #config: ModelConfig;
  labels: string[] | undefined;
  vocabSha256: string | undefined;
  /** The vocabulary's text when the checkpoint carries it (vilref safetensors written with one). */
  vocab: string | undefined;
  /** Tokens per text the model was trained with, when recorded. */
  contextLength: number | undefined;
  /** Where the weights came from: a registry name, a file path, or a preset spec. */
  source: string | undefined;
  /** The checkpoint file the weights were loaded from (undefined for a created model). */
  file: string | undefined;

  private constructor(nativeModel: NativeViLReF, config: ModelConfig, meta: Partial<ModelMetadata> = {}) {
    super();
    this.#native = nativeModel;
    this.#config = config;
    this.labels = meta.labels;
    this.vocabSha256 = meta.vocab_sha256;
    this.vocab = undefined;
    this.contextLength = meta.context_length;
    this.source = undefined;
    this.file = undefined;
  }

  /** A randomly initialised model (the released initialisation, seeded) from a config or preset name. */
  static create(config: ModelConfigInput | string, options: CreateOptions = {}): ViLReF {
    const parsed = typeof config === "string" ? presetConfig(config) : parseModelConfig(config);
    return new ViLReF(new (native().ViLReF)(parsed, parseOptions(createOptionsSchema, options)), parsed);
  }

  /**
   * Loads a `.safetensors` file written by vilref (config in its metadata) or a released
   * `.pt` checkpoint (config from `options.config`, else inferred from shapes with 64-wide heads).
   */
  static async load(path: string, options: LoadOptions = {}): Promise<ViLReF> {
    const { tensors, metadata, config, headsGuessed } = await readCheckpoint(path, options.config, {
      ...(options.strict !== undefined ? { strict: options.strict } : {}),
      ...(options.maxUncompressedBytes !== undefined ? { maxUncompressedBytes: options.maxUncompressedBytes } : {}),
    });
    if (headsGuessed)
      (options.onWarning ?? ((m: string) => process.emitWarning(m, { code: "VILREF_HEADS_GUESSED" })))(
        `${path} has no config: its attention heads were guessed as the released 64-wide ones ` +
          `(vision_head_width 64, text_num_attention_heads ${config.text_num_attention_heads}); ` +
          "if the model was trained otherwise its features will be wrong — give the released config (--config / " +
          "{ config })",
      );
    const model = ViLReF.create(config, { device: options.device, dtype: options.dtype });
    model.labels = metadata.labels;
    model.vocabSha256 = metadata.vocab_sha256;
    model.vocab = metadata.vocab;
    model.contextLength = metadata.context_length;
    model.source = path;
    model.file = path;
    try {
      await model.loadStateDict(tensors, { strict: options.strict ?? true });
    } catch (e) {
      throw new Error(`${path}: ${(e as Error).message}`);
    }
    return model;
  }

  /**
   * A model by name or path. A name is looked up in the model folder (`dir`, else VILREF_HOME, else
   * the user's cache folder): the registry's released checkpoints (lib/model/registry.json) and the
   * ones `vilref models add` registered. Nothing is downloaded: a missing file is an error naming
   * it, where it is published and the folder to put it in. A released `.pt` is loaded with the
   * registry's architecture and records the registry's vocabulary sha256 and context length.
   */
  static async fromPretrained(nameOrPath: string, options: PretrainedOptions = {}): Promise<ViLReF> {
    const r = resolveModel(nameOrPath, options.dir !== undefined ? { dir: options.dir } : {});
    return ViLReF.loadResolved(r, options);
  }

  /** @internal Loads what resolveModel found (registry defaults filled in where the file has none). */
  static async loadResolved(r: ResolvedModel, options: Omit<PretrainedOptions, "dir"> = {}): Promise<ViLReF> {
    const config = r.config ?? options.config;
    const model = await ViLReF.load(r.path, {
      ...(config ? { config } : {}),
      ...(options.device ? { device: options.device } : {}),
      ...(options.dtype ? { dtype: options.dtype } : {}),
      ...(options.maxUncompressedBytes !== undefined ? { maxUncompressedBytes: options.maxUncompressedBytes } : {}),
      ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    });
    if (model.vocabSha256 === undefined && r.vocabSha256) model.vocabSha256 = r.vocabSha256;
    if (model.contextLength === undefined && r.contextLength) model.contextLength = r.contextLength;
    if (r.name) model.source = r.name;
    return model;
  }

  protected get nativeResource(): NativeViLReF {
    return this.#native;
  }

  /** @internal The native model, for objects that work on it (the trainer). */
  get nativeHandle(): ViLReFHandle {
    return this.#native;
  }

  /** The config in the released names (image_resolution follows resizePositionalEmbedding). */
  get config(): ModelConfig {
    return { ...this.#config, image_resolution: this.#native.config.image_resolution };
  }
  get device(): string {
    return this.#native.device;
  }
  get dtype(): Dtype {
    return this.#native.dtype;
  }
  /** Calls queued or running on this model. */
  get pending(): number {
    return this.#native.pending;
  }

  /** images: float32 [N, 3, R, R], already normalised → [N, embed_dim] (or the tower's width with features: "pre"). */
  async encodeImages(images: TensorData, options: EncodeOptions = {}): Promise<TensorData> {
    return this.#native.encodeImages(images, parseOptions(encodeOptionsSchema, options));
  }

  /** ids: [N, L] token ids (BigInt64Array or Int32Array), 0-padded → [N, embed_dim] (or
   * text_hidden_size with features: "pre"). */
  async encodeTexts(
    ids: TensorData<BigInt64Array> | TensorData<Int32Array>,
    options: EncodeOptions = {},
  ): Promise<TensorData> {
    return this.#native.encodeTexts(ids, parseOptions(encodeOptionsSchema, options));
  }

  /** exp(logit_scale) · normalised image features @ normalised text features^T: logits per image [N, M]. */
  similarity(imageFeatures: TensorData, textFeatures: TensorData): Promise<TensorData> {
    return this.#native.similarity(imageFeatures, textFeatures);
  }

  /** Copies of every parameter and buffer, by the released names, as float32 (int64 for counters). */
  stateDict(): Promise<Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>> {
    return this.#native.stateDict();
  }

  /** Replaces parameters by name; missing and unexpected names are reported (an error when strict). */
  async loadStateDict(state: Record<string, StateTensor>, options: LoadStateOptions = {}): Promise<KeyReport> {
    return this.#native.loadStateDict(state, parseOptions(loadStateSchema, options));
  }

  /** Names, shapes and dtypes of the parameters and buffers. */
  parameters(): { name: string; shape: number[]; dtype: string }[] {
    return this.#native.parameters();
  }

  /** Resizes the positional embedding (bicubic) so the model takes images of `resolution` pixels. */
  resizePositionalEmbedding(resolution: number): Promise<void> {
    return this.#native.resizePositionalEmbedding(resolution);
  }

  /**
   * Writes the model as safetensors: every tensor by its released name; config, labels, context
   * length and the vocabulary (its text and sha256, when the model has one or `vocab` is given) in
   * the metadata. A `vocab` whose sha256 differs from `vocabSha256` or from the one the model
   * records is refused.
   */
  async save(path: string, extra: SaveOptions = {}): Promise<void> {
    const meta: ModelMetadata = { format: 1, config: this.config };
    const labels = extra.labels ?? this.labels;
    const vocab = extra.vocab !== undefined ? canonicalVocabText(extra.vocab) : this.vocab;
    let sha = extra.vocabSha256 ?? this.vocabSha256;
    if (vocab !== undefined) {
      const have = sha256Hex(vocab);
      const want = extra.vocabSha256 ?? (extra.vocab !== undefined ? this.vocabSha256 : undefined);
      if (want !== undefined && want !== have)
        throw new Error(
          `vocab: sha256 ${have.slice(0, 12)}… is not the vocabulary the model records (${want.slice(0, 12)}…)`,
        );
      sha = have;
    }
    const contextLength = extra.contextLength ?? this.contextLength;
    if (labels) meta.labels = labels;
    if (sha) meta.vocab_sha256 = sha;
    if (contextLength !== undefined) meta.context_length = contextLength;
    const state = await this.stateDict();
    const tensors = new Map(Object.entries(state).map(([k, v]) => [k, toStTensor(v)] as const));
    const metadata: Record<string, string> = { vilref: JSON.stringify(meta) };
    if (vocab !== undefined) metadata[VOCAB_METADATA_KEY] = vocab;
    await writeSafetensors(path, tensors, metadata);
  }
}

/**
 * Reads a checkpoint's tensors and config without building a model, and checks the config against
 * the tensors' shapes (so a config that would not fit is refused before anything is allocated).
 * `headsGuessed`: a `.pt` without a config, whose head widths were assumed.
 */
export async function readCheckpoint(
  path: string,
  config?: ModelConfigInput,
  options: ReadCheckpointOptions = {},
): Promise<{
  tensors: Record<string, StateTensor>;
  metadata: Partial<ModelMetadata> & { vocab?: string };
  config: ModelConfig;
  headsGuessed: boolean;
}> {
  const kind = extname(path).toLowerCase();
  let tensors: Record<string, StateTensor>;
  let metadata: Partial<ModelMetadata> & { vocab?: string } = {};
  if (kind === ".safetensors") {
    const file = await readSafetensors(path);
    tensors = Object.fromEntries([...file.tensors].map(([k, t]) => [k, toStateTensor(k, t)]));
    if (file.metadata.vilref !== undefined) {
      let parsed: unknown;
      try {
        parsed = parseJson(file.metadata.vilref, `${path}: its "vilref" metadata`);
      } catch (e) {
        throw new CheckpointError((e as Error).message, { file: path });
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
        throw new CheckpointError(`${path}: its "vilref" metadata is not a JSON object`, { file: path });
      metadata = parsed as Partial<ModelMetadata>;
    }
    const vocab = file.metadata[VOCAB_METADATA_KEY];
    if (vocab !== undefined) {
      if (metadata.vocab_sha256 !== undefined && sha256Hex(vocab) !== metadata.vocab_sha256)
        throw new CheckpointError(
          `${path}: its vocabulary's sha256 ${sha256Hex(vocab).slice(0, 12)}… is not the one it records ` +
            `(${metadata.vocab_sha256.slice(0, 12)}…): the file is damaged`,
        );
      metadata.vocab = vocab;
    }
  } else if (kind === ".pt" || kind === ".pth" || kind === ".bin") {
    const bytes = new Uint8Array(await readFile(path));
    const opts =
      options.maxUncompressedBytes !== undefined ? { maxUncompressedBytes: options.maxUncompressedBytes } : {};
    try {
      tensors = (await native().importTorchCheckpoint(bytes, path, opts)).tensors;
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError) throw e; // a bad argument, not a bad file
      throw new CheckpointError((e as Error).message, { file: path, cause: e });
    }
  } else {
    throw new RangeError(`${path}: unknown checkpoint type "${kind}" (expected .safetensors or a PyTorch .pt)`);
  }
  const shapes = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape]));
  let resolved: ModelConfig;
  let source: string;
  if (config) ((resolved = parseModelConfig(config, `${path} config`)), (source = "the config given"));
  else if (metadata.config)
    ((resolved = parseModelConfig(metadata.config, `${path} metadata config`)), (source = "its metadata config"));
  else {
    try {
      resolved = inferConfig(shapes);
    } catch (e) {
      throw new CheckpointError(`${path}: ${(e as Error).message}`, { file: path, cause: e });
    }
    source = "the inferred config";
  }
  checkConfigAgainstShapes(resolved, shapes, path, { strict: options.strict ?? true, source });
  return { tensors, metadata, config: resolved, headsGuessed: !config && !metadata.config };
}
