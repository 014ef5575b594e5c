/**
 * vilref's public API: `import { ... } from "vilref"` gives what a script uses every day; each
 * family has a subpath with all of its public names:
 *
 *   vilref/model    ViLReF, configs and presets, heads, encoders     lib/model/index.ts
 *   vilref/text     tokenizer, vocabularies                          lib/text/index.ts
 *   vilref/labels   expert-rule labeler, rules, label evaluation     lib/labels/index.ts
 *   vilref/data     preprocessing, manifests, the batch loader       lib/data/index.ts
 *   vilref/train    losses, Trainer, pretrain, schedules, dist       lib/train/index.ts
 *   vilref/eval     zero-shot, probe, retrieval, metrics, reports    lib/eval/index.ts
 *   vilref/segment  Segmenter and its training / evaluation          lib/segment/index.ts
 *   vilref/finetune Finetuner and its loop                           lib/finetune/index.ts
 *   vilref/adapt    few-shot adapters (Tip, CLIP-Adapter), LoRA      lib/adapt/index.ts
 *   vilref/embed    resumable batch embedding to .npy                lib/embed/index.ts
 *   vilref/synth    synthetic fundus images and reports              lib/synth/index.ts
 *   vilref/io       .npy, safetensors, strict CSV/TSV and text       lib/io/index.ts
 *
 * To extend: export a new public name from its family's index.ts (it is then in that subpath);
 * add it here too only when a typical script needs it. A new family gets lib/<family>/index.ts, a
 * line above, and an entry in package.json "exports" ("./<family>": dist/<family>/index.{d.ts,js});
 * test/package.test.ts checks that every subpath resolves in the installed package. Not public:
 * the addon loader and the raw addon (lib/native.ts), CLI registrars (lib/cli/), test hooks —
 * tests and benches import those from lib/ paths.
 */

// ---- the runtime ----
export {
  setThreads,
  getThreads,
  cpuCache,
  emptyCpuCache,
  cudaMemory,
  resetCudaPeakMemory,
  emptyCudaCache,
} from "./native.js";
export type { CpuCacheStats, CudaMemory, TensorArray, TensorData } from "./native.js";
export { doctor, formatDoctor } from "./doctor.js";
export type { DoctorReport } from "./doctor.js";
export type { NativeResource } from "./dispose.js";

// ---- the model ----
export { ViLReF, Head, presetNames, presetConfig, parseModelConfig } from "./model/index.js";
export type {
  Device,
  Dtype,
  ModelOptions,
  ModelLoadOptions,
  EncodeOptions,
  StateTensor,
  ModelMetadata,
  ModelConfig,
  ModelConfigInput,
  HeadConfig,
} from "./model/index.js";

// ---- text and labels ----
export { BertTokenizer, Vocab, DEFAULT_CONTEXT_LENGTH } from "./text/index.js";
export type { TokenizerOptions, TokenBatch } from "./text/index.js";
export { Labeler, labelReport, loadRules, LABEL_IDS, toLabelVector } from "./labels/index.js";
export type { LabelResult, LabelOptions, LabelId, LabelMap, Rules } from "./labels/index.js";

// ---- data ----
export {
  preprocess,
  preprocessInto,
  CLIP_MEAN,
  CLIP_STD,
  Loader,
  readManifest,
  readImageFolder,
} from "./data/index.js";
export type { TransformOptions, LoaderOptions, Batch, Sample } from "./data/index.js";

// ---- training ----
export { losses, Trainer, pretrain, loadPretrainConfig, parsePretrainConfig, cosineSchedule } from "./train/index.js";
export { distAvailability, initProcessGroup, readDistEnv } from "./train/index.js";
export type {
  ClipLossArgs,
  WsclLossArgs,
  LossResult,
  TrainerOptions,
  TrainBatch,
  StepResult,
  PretrainConfig,
  PretrainConfigInput,
  PretrainOptions,
  PretrainResult,
  ProcessGroup,
} from "./train/index.js";

// ---- evaluation ----
export {
  zeroShot,
  linearProbe,
  retrieval,
  textEncoder,
  encodeImageSet,
  loadDataset,
  writeReport,
  rocAuc,
  averagePrecision,
  bootstrap,
} from "./eval/index.js";
export type { ZeroShotResult, ProbeResult, RetrievalResult, EvalDataset } from "./eval/index.js";

// ---- segmentation, fine-tuning, batch embedding ----
export { Segmenter, readDrive, normalise, trainSegmenter, evaluateSegmenter } from "./segment/index.js";
export type { SegmenterConfig, SegmenterOptions } from "./segment/index.js";
export { Finetuner, finetune } from "./finetune/index.js";
export type { FinetunerOptions, FinetuneResult } from "./finetune/index.js";
export { fewShotAdapter, loraFewShot, sampleShots, Lora, aggregatePatients } from "./adapt/index.js";
export type { FewShotResult, LoraFewShotResult, LoraOptions } from "./adapt/index.js";
export { embedImages, embedTexts } from "./embed/index.js";
export type { EmbedResult } from "./embed/index.js";

// ---- files ----
export { readNpy, writeNpy, parseNpy, encodeNpy, NpyError } from "./io/index.js";
export { readSafetensors, writeSafetensors, parseSafetensors, encodeSafetensors, CheckpointError } from "./io/index.js";
export { readTable, TableError } from "./io/index.js";
export type { NpyArray, NpyDtype, StTensor, StDtype, Table, TableRow } from "./io/index.js";
