/** vilref's public API. */
export {
  loadNative,
  native,
  nativeAddon,
  setThreads,
  getThreads,
  defaultThreads,
  cpuCache,
  emptyCpuCache,
} from "./native.js";
export type {
  CpuCacheStats,
  TensorArray,
  TensorData,
  LoadedAddon,
  LoadOptions,
  LoadRoute,
  BuildInfo,
  CudaInfo,
  CudaDevice,
  HeadConfig,
  LibTorch,
  Stamp,
} from "./native.js";
export { locateLibTorch, requireLibTorch, flavourOf } from "./build/libtorch.js";
export { doctor, formatDoctor, classifyBlas } from "./doctor.js";
export type { DoctorReport, BlasReport, BlasKind } from "./doctor.js";
export { Head, headConfigSchema } from "./head.js";
export * from "./text/index.js";
export * from "./labels/index.js";
export { ViLReF, readCheckpoint, sha256Hex } from "./model/vilref.js";
export type {
  Device,
  Dtype,
  ModelOptions,
  LoadOptions as ModelLoadOptions,
  EncodeOptions,
  StateTensor,
  ModelMetadata,
} from "./model/vilref.js";
export {
  modelConfigSchema,
  parseModelConfig,
  presetConfig,
  presetNames,
  inferConfig,
  isResNet,
} from "./model/config.js";
export type { ModelConfig, ModelConfigInput } from "./model/config.js";
export { embedNpy } from "./model/embed-npy.js";
export { parseNpy, readNpy, encodeNpy, writeNpy, npyFromTensor, npyItemSize, NpyError } from "./io/npy.js";
export type { NpyArray, NpyDtype } from "./io/npy.js";
export { TableError, decodeUtf8, delimiterOf, parseRows, parseTable, readTable, readText } from "./io/table.js";
export type { Delimiter, Table, TableRow } from "./io/table.js";
export {
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  encodeSafetensors,
  writeSafetensors,
  stItemSize,
  DEFAULT_MAX_HEADER_BYTES,
} from "./checkpoint/safetensors.js";
export type { StDtype, StTensor, StHeader, StHeaderEntry, SafetensorsOptions } from "./checkpoint/safetensors.js";
export { CheckpointError } from "./checkpoint/errors.js";
export * from "./data/transforms.js";
export * from "./data/manifest.js";
export * from "./data/loader.js";
export * from "./data/inputs.js";
export { hashSeed, mulberry32, permutation } from "./data/rng.js";
export * from "./synth/index.js";
export * from "./embed/index.js";
export { losses } from "./train/losses.js";
export type { ClipLossArgs, WsclLossArgs, LossResult } from "./train/losses.js";
export { Trainer } from "./train/trainer.js";
export type { TrainerOptions, TrainBatch, StepResult, QueueState, TrainerStateRecord } from "./train/trainer.js";
export { pretrain, NonFiniteLossError, listCheckpoints, loadPrompts, buildPrompts } from "./train/pretrain.js";
export type { ProgressEvent, EvalMetrics, TrainMetrics, CheckpointState } from "./train/pretrain.js";
export {
  parseConfig as parsePretrainConfig,
  loadConfig as loadPretrainConfig,
  pretrainConfigSchema,
} from "./train/config.js";
export type { PretrainConfig, PretrainConfigInput } from "./train/config.js";
export { cosineSchedule } from "./train/schedule.js";
export {
  distAvailability,
  initProcessGroup,
  readDistEnv,
  isDistWorker,
  backendFor,
  DIST_VARIABLES,
} from "./train/dist.js";
export type { DistBackend, DistEnv, ProcessGroup, ProcessGroupOptions } from "./train/dist.js";
export { launch, freePort } from "./train/launch.js";
export type { LaunchOptions, LaunchResult } from "./train/launch.js";
export { prepareDemo } from "./train/demo.js";
export * from "./eval/metrics.js";
export * from "./eval/dataset.js";
export * from "./eval/evaluate.js";
export { encodeImageSet, normalizeRows, textEncoder, tokenizerFor } from "./eval/features.js";
export type { ImageFeatures, EncodeImagesOptions, TextEncodeFn } from "./eval/features.js";
export {
  zeroShot,
  loadPromptBank,
  classPrompts,
  encodeClassPrompts,
  multiLabelScores,
  singleLabelProbabilities,
  DEFAULT_PROMPTS_URL,
  MULTI_LABEL_SCORINGS,
} from "./eval/zeroshot.js";
export type {
  PromptBank,
  ClassEntry,
  ClassPrompts,
  ClassFeatures,
  ZeroShotOptions,
  ZeroShotResult,
  MultiLabelScoring,
} from "./eval/zeroshot.js";
export { linearProbe, trainProbe, fitLinear, predictProba, convergenceWarning, DEFAULT_C_GRID } from "./eval/probe.js";
export type {
  ProbeOptions,
  ProbeResult,
  LinearModel,
  FittedLinear,
  FitProblem,
  ProbeTargets,
  TrainedProbe,
  SelectionRow,
  NonConvergence,
} from "./eval/probe.js";
export { retrieval, retrievalFromRanks, pairedRanks, directionReport, namedRecall } from "./eval/retrieval.js";
export type { RetrievalResult, DirectionReport, PairedRanks } from "./eval/retrieval.js";
export { targetRanks, topK, topKStream, featureMatrix } from "./eval/rank.js";
export type { BlockOptions, TopKOptions, FeatureMatrix, TopKResult } from "./eval/rank.js";
export { writeReport, rocSvg, confusionSvg, svgToPng } from "./eval/report.js";
export type { Overlay, ReportOptions, Reportable } from "./eval/report.js";
export * from "./eval/adapters/index.js";
export * from "./segment/index.js";
export * from "./finetune/index.js";
export * from "./adapt/index.js";
export { registerSegment, registerFinetune } from "./cli/segment.js";
