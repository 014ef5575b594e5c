/** vilref's public API. */
export { loadNative, native, nativeAddon, setThreads, getThreads, defaultThreads } from "./native.js";
export type { TensorArray, TensorData, LoadedAddon, LoadOptions, LoadRoute, BuildInfo, CudaInfo, CudaDevice, HeadConfig, LibTorch, Stamp } from "./native.js";
export { locateLibTorch, requireLibTorch, flavourOf } from "./build/libtorch.js";
export { doctor, formatDoctor, classifyBlas } from "./doctor.js";
export type { DoctorReport, BlasReport, BlasKind } from "./doctor.js";
export { Head, headConfigSchema } from "./head.js";
export * from "./text/index.js";
export * from "./labels/index.js";
