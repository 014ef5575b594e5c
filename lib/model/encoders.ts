/**
 * The ViLReF towers as the encoders `vilref embed` streams through (lib/embed): images → the
 * image tower, report texts → the released tokenizer → the text tower.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { resolve } from "node:path";
import type { ImageEncoder, TextEncoder } from "../embed/encoders.js";
import type { TensorData } from "../native.js";
import { BertTokenizer } from "../text/index.js";
import { presetNames } from "./config.js";
import { ModelNotFoundError, resolveModel } from "./registry.js";
import type { ResolvedModel } from "./registry.js";
import type { ModelConfigInput } from "./config.js";
import { sha256Hex, ViLReF } from "./vilref.js";
import type { Device, Dtype, EncodeOptions } from "./vilref.js";

export interface ModelSpecOptions {
  config?: ModelConfigInput;
  device?: Device;
  dtype?: Dtype;
  /** The model folder names are resolved in (default VILREF_HOME; see lib/model/registry.ts). */
  dir?: string;
}

/** What a spec named: a checkpoint file (by path or by name) or a preset with random weights. */
export type ModelOrigin =
  { kind: "file"; path: string; name?: string } | { kind: "preset"; preset: string; seed: number };

/**
 * A model from a spec: a checkpoint path (.safetensors, or a released .pt), a model name resolved
 * in the model folder (`vilref models list`; lib/model/registry.ts), or `preset:<name>[:seed]` for
 * a randomly initialised preset (smoke tests, benchmarks). `name` describes the weights in
 * outputs; `origin` says what they are (provenance records hash the file).
 */
export async function modelFromSpec(
  spec: string,
  options: ModelSpecOptions = {},
): Promise<{ model: ViLReF; name: string; origin: ModelOrigin }> {
  const device = {
    ...(options.device ? { device: options.device } : {}),
    ...(options.dtype ? { dtype: options.dtype } : {}),
  };
  const preset = /^preset:([\w-]+)(?::(\d+))?$/.exec(spec);
  if (preset) {
    const [, name, seed] = preset;
    if (!presetNames().includes(name!))
      throw new RangeError(`--model ${spec}: unknown preset (presets: ${presetNames().join(", ")})`);
    const s = seed ? Number(seed) : 0;
    const model = ViLReF.create(name!, { ...device, seed: s });
    model.source = spec;
    return { model, name: `vilref:${spec}`, origin: { kind: "preset", preset: name!, seed: s } };
  }
  let r: ResolvedModel;
  try {
    r = resolveModel(spec, options.dir !== undefined ? { dir: options.dir } : {});
  } catch (e) {
    if (e instanceof ModelNotFoundError) throw new ModelNotFoundError(`--model ${spec}: ${e.message}`, e.model, e.dir);
    throw e;
  }
  if (r.source === "path" && !existsSync(spec)) {
    const hint = presetNames().includes(spec) ? `; for random weights of that preset say preset:${spec}` : "";
    throw new Error(
      `--model ${spec}: no such checkpoint (give a .safetensors or .pt file, a model name, ` +
        `preset:<name>[:seed], or pool-head[:dim[:seed]])${hint}`,
    );
  }
  const model = await ViLReF.loadResolved(r, { ...device, ...(options.config ? { config: options.config } : {}) });
  const file = resolve(r.path);
  return {
    model,
    name: r.name ? `vilref:${r.name}:${file}` : `vilref:${file}`,
    origin: { kind: "file", path: file, ...(r.name ? { name: r.name } : {}) },
  };
}

/** sha256 of a file, streamed (hex). */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** What a provenance record says about a model: its file's sha256, or the preset and seed. */
export async function modelProvenance(origin: ModelOrigin): Promise<Record<string, unknown>> {
  return origin.kind === "file"
    ? { sha256: await fileSha256(origin.path) }
    : { preset: origin.preset, seed: origin.seed };
}

export class ViLReFImageEncoder implements ImageEncoder {
  readonly imageSize: number;
  readonly provenance: unknown;
  /** `model`: the provenance of the weights (modelProvenance); default the name. */
  constructor(
    readonly model: ViLReF,
    readonly name: string,
    readonly options: EncodeOptions = {},
    weights?: Record<string, unknown>,
  ) {
    this.imageSize = model.config.image_resolution;
    this.provenance = {
      model: weights ?? { name },
      features: options.features ?? "projected",
      resolution: this.imageSize,
      dtype: model.dtype,
    };
  }
  encodeImages(batch: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.model.encodeImages(batch, this.options);
  }
}

export class ViLReFTextEncoder implements TextEncoder {
  readonly name: string;
  readonly provenance: unknown;
  constructor(
    readonly model: ViLReF,
    name: string,
    readonly tokenizer: BertTokenizer,
    readonly contextLength = 52,
    readonly options: EncodeOptions = {},
    weights?: Record<string, unknown>,
  ) {
    if (contextLength > model.config.text_max_position_embeddings) {
      throw new RangeError(
        `context length ${contextLength} is longer than the model's ` +
          `${model.config.text_max_position_embeddings} positions`,
      );
    }
    this.name = `${name}:ctx${contextLength}`;
    this.provenance = {
      model: weights ?? { name },
      features: options.features ?? "projected",
      contextLength,
      vocab: sha256Hex(tokenizer.vocab.toText()),
      dtype: model.dtype,
    };
  }
  encodeTexts(texts: string[]): Promise<TensorData<Float32Array>> {
    return this.model.encodeTexts(this.tokenizer.encodeBatch(texts, this.contextLength), this.options);
  }
}

export { BertTokenizer };
