/**
 * `vilref/model`: the ViLReF dual encoder (load, create, encode, save), its configs and presets,
 * classifier heads, and the encoders batch embedding uses.
 */
export { ViLReF, readCheckpoint, sha256Hex, canonicalVocabText, VOCAB_METADATA_KEY } from "./vilref.js";
export type {
  Device,
  Dtype,
  ModelOptions,
  LoadOptions as ModelLoadOptions,
  EncodeOptions,
  StateTensor,
  ModelMetadata,
  SaveOptions,
  PretrainedOptions,
} from "./vilref.js";
export {
  loadRegistry,
  modelHome,
  resolveModel,
  listModels,
  knownNames,
  ModelNotFoundError,
  REGISTRY_URL,
  USER_REGISTRY_FILE,
} from "./registry.js";
export type { Registry, RegistryEntry, ResolvedModel, ModelListing, UserRegistry } from "./registry.js";
export { addModel, convertCheckpoint, defaultModelName } from "./pretrained.js";
export type { AddModelOptions, AddedModel, ConvertOptions } from "./pretrained.js";
export { modelConfigSchema, parseModelConfig, presetConfig, presetNames, inferConfig, isResNet } from "./config.js";
export type { ModelConfig, ModelConfigInput } from "./config.js";
export { embedNpy } from "./embed-npy.js";
export type { EmbedNpyOptions } from "./embed-npy.js";
export { modelFromSpec, modelProvenance, fileSha256, ViLReFImageEncoder, ViLReFTextEncoder } from "./encoders.js";
export type { ModelOrigin, ModelSpecOptions } from "./encoders.js";
export { Head, headConfigSchema } from "../head.js";
export type { HeadConfig } from "../addon-types.js";
export type { TensorData, TensorArray } from "../addon-types.js";
