/** vilref's public API. */
export { loadNative, native, nativeAddon, setThreads, getThreads, defaultThreads } from "./native.js";
export type { TensorArray, TensorData, LoadedAddon, LoadOptions, LoadRoute, BuildInfo, CudaInfo, CudaDevice, HeadConfig, LibTorch, Stamp } from "./native.js";
export { locateLibTorch, requireLibTorch, flavourOf } from "./build/libtorch.js";
export { doctor, formatDoctor, classifyBlas } from "./doctor.js";
export type { DoctorReport, BlasReport, BlasKind } from "./doctor.js";
export { Head, headConfigSchema } from "./head.js";
export * from "./text/index.js";
export * from "./labels/index.js";
export { ViLReF, readCheckpoint, sha256Hex } from "./model/vilref.js";
export type { Device, Dtype, ModelOptions, LoadOptions as ModelLoadOptions, EncodeOptions, StateTensor, ModelMetadata } from "./model/vilref.js";
export { modelConfigSchema, parseModelConfig, presetConfig, presetNames, inferConfig, isResNet } from "./model/config.js";
export type { ModelConfig, ModelConfigInput } from "./model/config.js";
export { embedNpy } from "./model/embed-npy.js";
export { parseNpy, readNpy, encodeNpy, writeNpy, npyFromTensor, npyItemSize, NpyError } from "./io/npy.js";
export type { NpyArray, NpyDtype } from "./io/npy.js";
export { parseSafetensors, parseSafetensorsHeader, readSafetensors, encodeSafetensors, writeSafetensors, stItemSize, DEFAULT_MAX_HEADER_BYTES } from "./checkpoint/safetensors.js";
export type { StDtype, StTensor, StHeader, StHeaderEntry, SafetensorsOptions } from "./checkpoint/safetensors.js";
export { CheckpointError } from "./checkpoint/errors.js";
