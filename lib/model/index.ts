/**
 * `vilref/model`: the ViLReF dual encoder (load, create, encode, save), its configs and presets,
 * classifier heads, and the encoders batch embedding uses.
 */
export { ViLReF, readCheckpoint, sha256Hex } from "./vilref.js";
export type {
  Device,
  Dtype,
  ModelOptions,
  LoadOptions as ModelLoadOptions,
  EncodeOptions,
  StateTensor,
  ModelMetadata,
} from "./vilref.js";
export { modelConfigSchema, parseModelConfig, presetConfig, presetNames, inferConfig, isResNet } from "./config.js";
export type { ModelConfig, ModelConfigInput } from "./config.js";
export { embedNpy } from "./embed-npy.js";
export type { EmbedNpyOptions } from "./embed-npy.js";
export { modelFromSpec, ViLReFImageEncoder, ViLReFTextEncoder } from "./encoders.js";
export type { ModelSpecOptions } from "./encoders.js";
export { Head, headConfigSchema } from "../head.js";
export type { HeadConfig } from "../addon-types.js";
export type { TensorData, TensorArray } from "../addon-types.js";
