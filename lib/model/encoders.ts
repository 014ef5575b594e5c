/**
 * The ViLReF towers as the encoders `vilref embed` streams through (lib/embed): images → the
 * image tower, report texts → the released tokenizer → the text tower.
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import type { ImageEncoder, TextEncoder } from "../embed/encoders.js";
import type { TensorData } from "../native.js";
import { BertTokenizer } from "../text/index.js";
import { presetNames } from "./config.js";
import type { ModelConfigInput } from "./config.js";
import { ViLReF } from "./vilref.js";
import type { Device, Dtype, EncodeOptions } from "./vilref.js";

export interface ModelSpecOptions {
  config?: ModelConfigInput;
  device?: Device;
  dtype?: Dtype;
}

/**
 * A model from a spec: a checkpoint path (.safetensors, or a released .pt), or
 * `preset:<name>[:seed]` for a randomly initialised preset (smoke tests, benchmarks).
 * The returned name fingerprints the weights for resumable runs.
 */
export async function modelFromSpec(
  spec: string,
  options: ModelSpecOptions = {},
): Promise<{ model: ViLReF; name: string }> {
  const device = {
    ...(options.device ? { device: options.device } : {}),
    ...(options.dtype ? { dtype: options.dtype } : {}),
  };
  const preset = /^preset:([\w-]+)(?::(\d+))?$/.exec(spec);
  if (preset) {
    const [, name, seed] = preset;
    if (!presetNames().includes(name!))
      throw new RangeError(`--model ${spec}: unknown preset (presets: ${presetNames().join(", ")})`);
    return { model: ViLReF.create(name!, { ...device, seed: seed ? Number(seed) : 0 }), name: `vilref:${spec}` };
  }
  let stat;
  try {
    stat = statSync(spec);
  } catch {
    const hint = presetNames().includes(spec) ? `; for random weights of that preset say preset:${spec}` : "";
    throw new Error(
      `--model ${spec}: no such checkpoint (give a .safetensors or .pt file, preset:<name>[:seed], or pool-head[:dim[:seed]])${hint}`,
    );
  }
  const model = await ViLReF.load(spec, { ...device, ...(options.config ? { config: options.config } : {}) });
  return { model, name: `vilref:${resolve(spec)}:${stat.size}:${Math.round(stat.mtimeMs)}` };
}

export class ViLReFImageEncoder implements ImageEncoder {
  readonly imageSize: number;
  constructor(
    readonly model: ViLReF,
    readonly name: string,
    readonly options: EncodeOptions = {},
  ) {
    this.imageSize = model.config.image_resolution;
  }
  encodeImages(batch: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.model.encodeImages(batch, this.options);
  }
}

export class ViLReFTextEncoder implements TextEncoder {
  readonly name: string;
  constructor(
    readonly model: ViLReF,
    name: string,
    readonly tokenizer: BertTokenizer,
    readonly contextLength = 52,
    readonly options: EncodeOptions = {},
  ) {
    if (contextLength > model.config.text_max_position_embeddings) {
      throw new RangeError(
        `context length ${contextLength} is longer than the model's ${model.config.text_max_position_embeddings} positions`,
      );
    }
    this.name = `${name}:ctx${contextLength}`;
  }
  encodeTexts(texts: string[]): Promise<TensorData<Float32Array>> {
    return this.model.encodeTexts(this.tokenizer.encodeBatch(texts, this.contextLength), this.options);
  }
}

export { BertTokenizer };
