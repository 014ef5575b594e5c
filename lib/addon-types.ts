/**
 * The addon's whole surface, typed in one place (node-llama-cpp keeps its `AddonTypes.ts` the same
 * way): every function, namespace and class that native/addon.cc registers, with the shapes of what
 * crosses the boundary. `ADDON_EXPORTS`, `ADDON_NAMESPACES` and `ADDON_CLASSES` list the same names
 * at run time; the compiler checks that each list equals its interface's keys, and
 * test/addon-types.test.ts compares them with the loaded addon, so an export cannot go untyped.
 *
 * Only the public wrappers (ViLReF, Trainer, Segmenter, Finetuner, Head, losses, dist) touch these
 * objects; user code never sees them.
 */
import type { z } from "zod";
import type { KeyReport, LoadStateOptions } from "./config/options.js";
import type { ResolvedFinetunerOptions } from "./finetune/finetuner.js";
import type { ViLReFHandle } from "./model/vilref.js";
import type { ModelConfig } from "./model/config.js";
import type { Dtype, ResolvedCreateOptions, ResolvedEncodeOptions, StateTensor } from "./model/vilref.js";
import type { ResolvedSegmenterConfig, ResolvedSegmenterOptions, SegmenterStepOptions } from "./segment/segmenter.js";
import type {
  EffectiveTrainerOptions,
  QueueState,
  ResolvedTrainerOptions,
  StepResult,
  TrainBatch,
  TrainerStateRecord,
  TrainerStepOptions,
} from "./train/trainer.js";
import type { ClipLossArgs, LossResult, WsclLossArgs } from "./train/losses.js";
import type { DistBackend, ProcessGroup, processGroupSchema } from "./train/dist.js";

/** Typed arrays the boundary accepts, by the LibTorch dtype they become. */
export type TensorArray =
  Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array;

/** A tensor as JavaScript sees it: row-major data and an explicit shape. */
export interface TensorData<T extends TensorArray = Float32Array> {
  data: T;
  shape: number[];
}

export interface BuildInfo {
  sourceHash: string;
  flavour: string;
  torchHeaderVersion: string;
  napiVersion: number;
  cxx11Abi: number;
  cudaCompiled: boolean;
  parallel: string;
  config: string;
}

export interface CudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  capability: string;
  multiprocessors: number;
}

export interface CudaInfo {
  available: boolean;
  deviceCount: number;
  devices: CudaDevice[];
}

/** The CUDA caching allocator's counters for one device, in bytes (all 0 on "cpu" or without CUDA). */
export interface CudaMemory {
  /** Bytes held by live tensors. */
  allocated: number;
  /** Bytes the allocator holds from the driver (allocated + cached free blocks). */
  reserved: number;
  peakAllocated: number;
  peakReserved: number;
}

/** Where a trainer's tensors live ("cpu", "cuda:0", ...; "mixed" if they are on several devices). */
export interface TrainerDevices {
  parameters: string;
  momentum: string;
  queue: string;
  /** AdamW's moments; null before the first step. */
  optimizer: string | null;
  /** The last step's loss tensor; null before the first step. */
  loss: string | null;
}

export interface BlasLibrary {
  path: string;
  realPath: string;
}

export interface NativeBlasInfo {
  libraries: BlasLibrary[];
  openblasConfig?: string;
  openblasParallel?: "sequential" | "pthread" | "openmp" | "unknown";
  openblasThreads?: number;
}

export interface HeadConfig {
  inFeatures: number;
  hidden?: number[];
  outFeatures: number;
  activation?: "gelu" | "quick_gelu" | "relu" | "tanh";
  seed?: number;
}

/** Every key of a HeadConfig filled in (lib/head.ts's schema): what the native head takes. */
export type ResolvedHeadConfig = Required<HeadConfig>;

export interface NativeHead {
  /** Frees the native memory after the calls already queued; later calls reject (lib/dispose.ts). */
  dispose(): Promise<void>;
  forward(input: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<Record<string, TensorData<Float32Array>>>;
  loadStateDict(state: Record<string, TensorData<Float32Array>>): Promise<void>;
  readonly config: Omit<ResolvedHeadConfig, "seed">;
  /** Calls queued or running on this object. */
  readonly pending: number;
}

export interface SegmentBatch {
  /** [N, 3, tile, tile] normalised images. */
  images: TensorData<Float32Array>;
  /** [N, 1, tile, tile] in [0, 1]. */
  targets: TensorData<Float32Array>;
  /** [N, 1, tile, tile] in [0, 1]: per-pixel loss weights (the field of view). */
  weights?: TensorData<Float32Array>;
}

export interface SegmentStepResult {
  /** bceWeight · bce + diceWeight · dice, before the update. */
  loss: number;
  bce: number;
  dice: number;
}

/** A segmenter step's learning rates, both given (lib/segment/segmenter.ts fills them in). */
export type NativeSegmenterStepOptions = Required<SegmenterStepOptions>;

/** The state dict of a module with integer buffers (BatchNorm's counters). */
export type NamedTensors = Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>;

export interface NativeSegmenter {
  /** Frees the native memory after the calls already queued; later calls reject (lib/dispose.ts). */
  dispose(): Promise<void>;
  step(batch: SegmentBatch, options: NativeSegmenterStepOptions): Promise<SegmentStepResult>;
  /** [N, 3, tile, tile] → probabilities [N, 1, tile, tile]. */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<NamedTensors>;
  loadStateDict(state: NamedTensors, options: ResolvedLoadStateOptions): Promise<KeyReport>;
  readonly config: ResolvedSegmenterConfig;
  /** The effective options (read back from the native object). */
  readonly options: ResolvedSegmenterOptions;
  readonly steps: number;
  readonly pending: number;
}

/** What a Finetuner reports as its `config`. */
export interface FinetunerConfig {
  classes: number;
  /** Width of the pre-projection features the head reads. */
  width: number;
  lr: number;
  backboneLr: number;
  weightDecay: number;
  frozen: boolean;
  loraLr: number;
  /** Whether LoRA adapters train instead of the backbone. */
  lora: boolean;
  /** Head, plus LoRA factors or (unless frozen) the image tower. */
  trainableParameters: number;
}

export interface FinetuneBatch {
  /** [N, 3, R, R] preprocessed images. */
  images: TensorData<Float32Array>;
  /** [N, classes] in [0, 1]. */
  labels: TensorData<Float32Array>;
}

export interface NativeFinetuner {
  /** Frees the native memory after the calls already queued; later calls reject (lib/dispose.ts). */
  dispose(): Promise<void>;
  step(batch: FinetuneBatch): Promise<{ loss: number }>;
  /** [N, 3, R, R] → probabilities [N, classes]. */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<NamedTensors>;
  loadStateDict(state: NamedTensors): Promise<void>;
  readonly config: FinetunerConfig;
  /** The effective options (read back from the native object). */
  readonly options: ResolvedFinetunerOptions;
  readonly steps: number;
}

/** native/lora.h: LoRA factors on a model's weights (released names). */
/** Complete (lib/adapt/lora.ts fills the defaults: alpha = rank, seed 0). */
export interface LoraOptions {
  rank: number;
  /** ΔW = (alpha / rank) · B·A. */
  alpha: number;
  /** Weight names: Linear and Conv2d weights, a ViT block's attn.in_proj_weight. */
  targets: string[];
  seed: number;
}

export interface NativeLora {
  /** The image tower's features with the adapters applied (eval mode). */
  encodeImages(images: TensorData<Float32Array>, options?: { features?: "projected" | "pre" }): Promise<TensorData>;
  /** "<weight>.lora_A" [rank, fan_in] and "<weight>.lora_B" [out, rank] (copies). */
  stateDict(): Promise<Record<string, TensorData<Float32Array>>>;
  loadStateDict(state: Record<string, TensorData<Float32Array>>): Promise<void>;
  /** W += ΔW in the model's weights, once. */
  merge(): Promise<void>;
  readonly config: { rank: number; alpha: number; scale: number; targets: string[]; parameters: number };
  readonly merged: boolean;
  /** Frees the factors after the calls queued on the model; a Finetuner using them then refuses to run. */
  dispose(): Promise<void>;
}

/** Multi-label ("multilabel": targets [n, C] of 0/1/NaN) or single-label ("single": int32 class indices [n]). */
export type FewShotTask = "multilabel" | "single";

export interface TipArgs {
  /** Normalised features [n, d]. */
  features: TensorData<Float32Array>;
  /** Cache keys [m, d] and values [m, C]. */
  keys: TensorData<Float32Array>;
  values: TensorData<Float32Array>;
  /** Zero-shot logits [n, C]. */
  zeroShot: TensorData<Float32Array>;
  /** A·V / rowsum(A) instead of A·V. */
  normalize?: boolean;
}

export interface FewShotTrainSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay?: number;
  seed?: number;
}

export interface NativeFewShot {
  /** zeroShot + alpha · exp(−beta (1 − F·Kᵀ)) · V (+ bias). */
  tipLogits(
    args: TipArgs & { beta: number; alpha: number; bias?: TensorData<Float32Array> },
  ): Promise<TensorData<Float32Array>>;
  /** The logits for every (beta, alpha): [B, A, n, C]. */
  tipGrid(args: TipArgs & { betas: number[]; alphas: number[] }): Promise<TensorData<Float32Array>>;
  /** Tip-Adapter-F: the keys (and, multi-label, a class bias) trained on the few-shot set. */
  trainTipF(
    args: TipArgs &
      FewShotTrainSettings & {
        targets: TensorData<Float32Array> | TensorData<Int32Array>;
        task: FewShotTask;
        /** [n]: the cache row of each training image (its own affinity masked), −1 none. */
        cacheIndex: TensorData<Int32Array>;
        beta: number;
        alpha: number;
      },
  ): Promise<{ keys: TensorData<Float32Array>; bias: TensorData<Float32Array>; losses: number[] }>;
  trainClipAdapter(
    args: FewShotTrainSettings & {
      features: TensorData<Float32Array>;
      text: TensorData<Float32Array>;
      targets: TensorData<Float32Array> | TensorData<Int32Array>;
      task: FewShotTask;
      ratio: number;
      scale: number;
      hidden: number;
    },
  ): Promise<{
    fc1: TensorData<Float32Array>;
    fc2: TensorData<Float32Array>;
    bias: TensorData<Float32Array>;
    losses: number[];
  }>;
  clipAdapterLogits(args: {
    features: TensorData<Float32Array>;
    text: TensorData<Float32Array>;
    task: FewShotTask;
    ratio: number;
    scale: number;
    fc1: TensorData<Float32Array>;
    fc2: TensorData<Float32Array>;
    bias: TensorData<Float32Array>;
  }): Promise<TensorData<Float32Array>>;
}

export interface EchoResult<T extends TensorArray> {
  output: TensorData<T>;
  inputAddress: bigint;
  outputAddress: bigint;
}

export interface CpuCacheStats {
  /** False when VILREF_CPU_CACHE_MB=0 turned the caching allocator off. */
  enabled: boolean;
  /** Freed blocks held for reuse. */
  cachedBytes: number;
  /** Blocks of 1 MiB and more in use by tensors. */
  liveBytes: number;
  limitBytes: number;
  hits: number;
  misses: number;
}

/** loadStateDict's options, filled in. */
export type ResolvedLoadStateOptions = Required<LoadStateOptions>;

export interface NativeViLReF {
  /** Frees the native memory after the calls already queued; later calls reject (lib/dispose.ts). */
  dispose(): Promise<void>;
  encodeImages(images: TensorData, options: ResolvedEncodeOptions): Promise<TensorData>;
  encodeTexts(
    ids: TensorData<BigInt64Array> | TensorData<Int32Array>,
    options: ResolvedEncodeOptions,
  ): Promise<TensorData>;
  similarity(image: TensorData, text: TensorData): Promise<TensorData>;
  stateDict(): Promise<NamedTensors>;
  loadStateDict(state: Record<string, unknown>, options: ResolvedLoadStateOptions): Promise<KeyReport>;
  parameters(): { name: string; shape: number[]; dtype: string }[];
  resizePositionalEmbedding(resolution: number): Promise<void>;
  readonly config: ModelConfig;
  readonly device: string;
  readonly dtype: Dtype;
  readonly pending: number;
}

export interface NativeViLReFConstructor {
  new (config: ModelConfig, options: ResolvedCreateOptions): NativeViLReF;
}

/** A trainer step's learning rate, given (lib/train/trainer.ts fills it in). */
export type NativeTrainerStepOptions = Required<TrainerStepOptions>;

export interface NativeTrainer {
  /** Frees the native memory after the calls already queued; later calls reject (lib/dispose.ts). */
  dispose(): Promise<void>;
  step(batch: TrainBatch, options: NativeTrainerStepOptions): Promise<StepResult>;
  queueState(): Promise<QueueState>;
  momentumStateDict(): Promise<NamedTensors>;
  exportState(): Promise<TrainerStateRecord>;
  importState(state: TrainerStateRecord): Promise<void>;
  /** The effective options (read back from the native object; the process group aside). */
  readonly options: EffectiveTrainerOptions;
  /** Where the online and momentum weights, the queue, the optimizer state and the loss live. */
  devices(): Promise<TrainerDevices>;
  readonly skipped: number;
}

export interface LossScalerResult {
  scale: number;
  goodSteps: number;
  applied: boolean[];
}

export interface NativeTrainerConstructor {
  new (model: ViLReFHandle, options: ResolvedTrainerOptions): NativeTrainer;
  /** The float16 loss scaler's rule over a run of finite / non-finite steps. */
  lossScalerUpdate(scale: number, goodSteps: number, finite: boolean[], interval: number): LossScalerResult;
}

export interface NativeLosses {
  /** threshold and gamma given (lib/train/losses.ts fills them in). */
  wscl(args: Required<Omit<WsclLossArgs, "queue">> & Pick<WsclLossArgs, "queue">): Promise<LossResult>;
  clip(args: ClipLossArgs): Promise<LossResult>;
}

/** dist.init's options, every one given (lib/train/dist.ts fills them in). */
export type NativeDistInit = Omit<z.output<typeof processGroupSchema>, "localRank">;

/** native/dist.cc's ProcessGroup class; instances are the public `ProcessGroup`. */
export interface NativeProcessGroupConstructor {
  readonly prototype: ProcessGroup;
}

export interface NativeDist {
  available: boolean;
  reason: string | null;
  backends: DistBackend[];
  init(options: NativeDistInit): Promise<ProcessGroup>;
  ProcessGroup: NativeProcessGroupConstructor;
}

/**
 * Where and how native/jpeg.cc takes its pixels (lib/data/jpeg.ts's WHOLE_IMAGE gives each field's
 * neutral value; the addon requires every key). Geometry in source pixels.
 */
export interface JpegGeometry {
  left: number;
  top: number;
  /** The crop's width and height; both 0: the whole image. */
  width: number;
  height: number;
  flip: boolean;
  /** Decode at a reduced DCT scale (M/8) when the output allows. */
  shrink: boolean;
  /** The resize: native/resample.h's kernel or LibTorch's _upsample_bicubic2d_aa (the same filter). */
  resampler: "native" | "libtorch";
}

/** The colour jitter (lib/data/jpeg.ts's NO_JITTER: none). */
export interface JpegJitter {
  brightness: number;
  contrast: number;
  saturation: number;
  /** Jitter order: a permutation of 0 (brightness), 1 (contrast), 2 (saturation). */
  order: [number, number, number];
}

/** How native/jpeg.cc renders one JPEG into a batch. */
export interface JpegDecodeOptions extends JpegGeometry, JpegJitter {
  size: number;
  /** 3 × 256 floats: 8-bit value → normalised value, per channel (lib/data/transforms.ts normTable). */
  table: Float32Array;
}

/** The packer's resize: the geometry, the output size and the JPEG quality. */
export interface JpegResizeOptions extends JpegGeometry {
  /** The output size (both 0 when `shortSide` is given). */
  outWidth: number;
  outHeight: number;
  /** Else (0: not used): the region scaled so that its short side is this, never enlarged. */
  shortSide: number;
  quality: number;
}

/**
 * What became of one JPEG: "ok" (written), "corrupt" (libjpeg warned: bad or truncated data),
 * "error" (TurboJPEG could not decode it; sharp may), "fallback" (a kind the fast path leaves to sharp).
 */
export interface JpegDecodeResult {
  status: "ok" | "corrupt" | "error" | "fallback";
  /** This image's own decoder message (one TurboJPEG handle per call). */
  message?: string;
  width: number;
  height: number;
  decodedWidth: number;
  decodedHeight: number;
  /** The DCT scaling factor used (M/8). */
  scale: number;
  /** resize: the JPEG written. */
  data?: Uint8Array;
  /** A file that could not be read (a path given): its errno name, with fs's message. */
  code?: string;
}

/** native/jpeg_inspect.cc: a JPEG's header, and why the fast path leaves it to sharp (null: it does not). */
export interface JpegInspection {
  jpeg: boolean;
  width: number;
  height: number;
  components: number;
  orientation: number | null;
  fallback: string | null;
}

/** native/jpeg.cc: the JPEG fast path of the data loader. */
export interface NativeJpeg {
  /** False when the addon was built without TurboJPEG; `reason` then says what to install. */
  available: boolean;
  reason: string | null;
  /** The OpenMP runtime whose thread count a decode with `resampler: "libtorch"` sets to 1 (null: none found). */
  openmp: string | null;
  /**
   * Decodes a JPEG (its bytes, or a file path read on the worker thread) into
   * out[offset, offset + 3·size²) (CHW, normalised) on the libuv pool; "fallback" for what
   * jpeg_inspect.cc leaves to sharp (and for a file that is not a JPEG).
   */
  decodeInto(
    src: Uint8Array | string,
    out: Float32Array,
    offset: number,
    options: JpegDecodeOptions,
  ): Promise<JpegDecodeResult>;
  /** The header of a JPEG and whether the fast path takes it (synchronous). */
  inspect(bytes: Uint8Array): JpegInspection;
  /**
   * Decodes all of the entropy-coded data (at the smallest scale, CMYK files in CMYK) only to learn
   * whether libjpeg warns: "ok", "corrupt" (with this image's message) or "error".
   */
  validate(bytes: Uint8Array): Promise<JpegDecodeResult>;
  /**
   * Decodes a JPEG (its bytes, or a file path read on the worker thread) at the DCT scale that
   * covers the output, crops left/top/width/height (source pixels; none: the whole image), resizes
   * to outWidth×outHeight or to `shortSide` (antialiased bicubic) and encodes a JPEG (4:2:0,
   * `quality`): the packer's resize. "fallback" for what jpeg_inspect.cc leaves to sharp.
   */
  resize(src: Uint8Array | string, options: JpegResizeOptions): Promise<JpegDecodeResult>;
  /** The native colour jitter on interleaved RGB, in place (for tests against the JS one). */
  jitter(rgb: Uint8Array, plan: JpegJitter): void;
}

export interface NativeDebug {
  echo<T extends TensorArray>(
    tensor: TensorData<T>,
    options?: { transpose?: boolean; cast?: "bfloat16" | "float16"; finite?: boolean },
  ): Promise<EchoResult<T>>;
  addressOf(array: TensorArray): bigint;
  /** internal: a failed TORCH_INTERNAL_ASSERT (whose "report a bug to PyTorch" vilref rewrites). */
  torchError(message: string, async?: boolean, internal?: boolean): Promise<void> | undefined;
}

/** Rows of a float matrix [n, d] for the block-wise similarity functions (native/rank.h). */
export type FeatureMatrix = TensorData<Float32Array> | TensorData<Float64Array>;

/** The k best index rows of each query: scores and indices [n, k'], best first, ties by ascending index. */
export interface TopKResult {
  scores: FeatureMatrix;
  indices: TensorData<Int32Array>;
}

export interface NativeTopKOptions {
  k: number;
  /** Index of the first row of `index` in the whole index (streaming over pieces). */
  offset?: number;
  /** The result over the earlier pieces (indices below offset), merged in. */
  previous?: TopKResult;
  /** Score elements one block may hold (default 2^24). */
  block?: number;
}

/** native/rank.h: scores are inner products of the rows as given (cosine for unit rows). */
export interface NativeRank {
  /** 0-based rank of each target ([n] or [n, t] rows of the index): other rows scoring at least as high. */
  targetRanks(
    query: FeatureMatrix,
    index: FeatureMatrix,
    targets: TensorData<Int32Array>,
    options?: { block?: number },
  ): Promise<TensorData<Int32Array>>;
  topK(query: FeatureMatrix, index: FeatureMatrix, options: NativeTopKOptions): Promise<TopKResult>;
}

/** native/logistic.h: L2 logistic regression (C: scikit-learn's inverse strength), L-BFGS in float64. */
export interface LogisticFitArgs {
  /** Features [n, d]. */
  x: TensorData<Float64Array>;
  /** "sigmoid": K independent one-vs-rest problems on `y`; "softmax": one multinomial problem on `t`. */
  kind: "sigmoid" | "softmax";
  /** [n, K]: 1, 0 or NaN (unknown: the row is left out of that class). */
  y?: TensorData<Float64Array>;
  /** [n] class indices below `classes`. */
  t?: TensorData<Int32Array>;
  classes?: number;
  C: number;
  /** Warm start: W [K, d], b [K]. */
  init?: { W: TensorData<Float64Array>; b: TensorData<Float64Array> };
  /** Complete L-BFGS options (defaults: LBFGS_DEFAULTS in lib/eval/probe.ts). */
  maxIter: number;
  gradTol: number;
  memory: number;
}

export interface LogisticProblemReport {
  /** The objective at the end (mean loss + λ/2‖w‖²). */
  value: number;
  iterations: number;
  converged: boolean;
}

export interface LogisticFitResult {
  W: TensorData<Float64Array>;
  b: TensorData<Float64Array>;
  /** One per class ("sigmoid") or one in all ("softmax"). */
  problems: LogisticProblemReport[];
}

export interface NativeLogistic {
  fit(args: LogisticFitArgs): Promise<LogisticFitResult>;
  /** Probabilities [n, K]: sigmoid of each score, or softmax over the classes. */
  predict(
    x: TensorData<Float64Array>,
    model: { kind: "sigmoid" | "softmax"; W: TensorData<Float64Array>; b: TensorData<Float64Array> },
  ): Promise<TensorData<Float64Array>>;
}

export interface ImportedCheckpoint {
  tensors: Record<string, StateTensor>;
}

/** The addon's exports, exactly (checked against ADDON_EXPORTS below and at run time in a test). */
export interface NativeAddon {
  cpuCache(): CpuCacheStats;
  emptyCpuCache(): void;
  buildInfo(): BuildInfo;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  cuda(): CudaInfo;
  blas(): NativeBlasInfo;
  /** The CUDA caching allocator's counters for `device` ("cuda", "cuda:N"; "cpu" gives zeros). */
  cudaMemory(device: string): CudaMemory;
  /** Starts the peaks of cudaMemory(device) again from the current values. */
  resetCudaPeakMemory(device: string): void;
  /** Returns the CUDA caching allocator's unused blocks to the driver. */
  emptyCudaCache(): void;
  /**
   * Reads a released PyTorch `.pt` checkpoint (bytes): the archive, its CRCs and sizes, the pickle and
   * every tensor against its storage are checked before LibTorch's restricted unpickler builds
   * anything; `name` is for errors. maxUncompressedBytes: default 4 × the file's size + 1 MiB.
   */
  importTorchCheckpoint(
    bytes: Uint8Array,
    name: string,
    options?: { maxUncompressedBytes?: number },
  ): Promise<ImportedCheckpoint>;
  losses: NativeLosses;
  dist: NativeDist;
  jpeg: NativeJpeg;
  rank: NativeRank;
  logistic: NativeLogistic;
  fewshot: NativeFewShot;
  debug: NativeDebug;
  Head: new (config: ResolvedHeadConfig) => NativeHead;
  ViLReF: NativeViLReFConstructor;
  Trainer: NativeTrainerConstructor;
  Segmenter: new (config: ResolvedSegmenterConfig, options: ResolvedSegmenterOptions) => NativeSegmenter;
  /** model: a ViLReF's nativeHandle. */
  Finetuner: new (model: ViLReFHandle, options: ResolvedFinetunerOptions & { lora?: NativeLora }) => NativeFinetuner;
  /** model: a ViLReF's nativeHandle. */
  Lora: new (model: ViLReFHandle, options: LoraOptions) => NativeLora;
}

// ---- the same names at run time, checked against the interfaces by the compiler ----

/** True when the two unions hold the same members (a compile-time equality of key sets). */
type SameKeys<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
function exactly<T extends true>(): void {}

/** Every top-level export of the addon. */
export const ADDON_EXPORTS = [
  "cpuCache",
  "emptyCpuCache",
  "buildInfo",
  "setNumThreads",
  "getNumThreads",
  "cuda",
  "blas",
  "cudaMemory",
  "resetCudaPeakMemory",
  "emptyCudaCache",
  "importTorchCheckpoint",
  "losses",
  "dist",
  "jpeg",
  "rank",
  "logistic",
  "fewshot",
  "debug",
  "Head",
  "ViLReF",
  "Trainer",
  "Segmenter",
  "Finetuner",
  "Lora",
] as const;
exactly<SameKeys<(typeof ADDON_EXPORTS)[number], keyof NativeAddon>>();

/** The members of the addon's namespace objects. */
export const ADDON_NAMESPACES = {
  losses: ["wscl", "clip"],
  dist: ["available", "reason", "backends", "init", "ProcessGroup"],
  jpeg: ["available", "reason", "openmp", "decodeInto", "inspect", "validate", "resize", "jitter"],
  debug: ["echo", "addressOf", "torchError"],
  rank: ["targetRanks", "topK"],
  logistic: ["fit", "predict"],
  fewshot: ["tipLogits", "tipGrid", "trainTipF", "trainClipAdapter", "clipAdapterLogits"],
} as const;
exactly<SameKeys<(typeof ADDON_NAMESPACES)["losses"][number], keyof NativeLosses>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["dist"][number], keyof NativeDist>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["jpeg"][number], keyof NativeJpeg>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["debug"][number], keyof NativeDebug>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["rank"][number], keyof NativeRank>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["logistic"][number], keyof NativeLogistic>>();
exactly<SameKeys<(typeof ADDON_NAMESPACES)["fewshot"][number], keyof NativeFewShot>>();

/** Instance members (methods and accessors) of the addon's classes, and their static methods. */
export const ADDON_CLASSES = {
  Head: { instance: ["forward", "stateDict", "loadStateDict", "config", "pending", "dispose"], static: [] },
  ViLReF: {
    instance: [
      "encodeImages",
      "encodeTexts",
      "similarity",
      "stateDict",
      "loadStateDict",
      "parameters",
      "resizePositionalEmbedding",
      "config",
      "device",
      "dtype",
      "pending",
      "dispose",
    ],
    static: [],
  },
  Trainer: {
    instance: [
      "step",
      "queueState",
      "momentumStateDict",
      "exportState",
      "importState",
      "options",
      "devices",
      "skipped",
      "dispose",
    ],
    static: ["lossScalerUpdate"],
  },
  Segmenter: {
    instance: ["step", "predict", "stateDict", "loadStateDict", "config", "options", "steps", "pending", "dispose"],
    static: [],
  },
  Finetuner: {
    instance: ["step", "predict", "stateDict", "loadStateDict", "config", "options", "steps", "dispose"],
    static: [],
  },
  Lora: {
    instance: ["encodeImages", "stateDict", "loadStateDict", "merge", "config", "merged", "dispose"],
    static: [],
  },
  "dist.ProcessGroup": {
    instance: ["allReduce", "allGather", "barrier", "rank", "worldSize", "backend", "timeoutMs", "dispose"],
    static: [],
  },
} as const;
exactly<SameKeys<(typeof ADDON_CLASSES)["Head"]["instance"][number], keyof NativeHead>>();
exactly<SameKeys<(typeof ADDON_CLASSES)["ViLReF"]["instance"][number], keyof NativeViLReF>>();
exactly<SameKeys<(typeof ADDON_CLASSES)["Trainer"]["instance"][number], keyof NativeTrainer>>();
exactly<SameKeys<(typeof ADDON_CLASSES)["Segmenter"]["instance"][number], keyof NativeSegmenter>>();
exactly<SameKeys<(typeof ADDON_CLASSES)["Finetuner"]["instance"][number], keyof NativeFinetuner>>();
exactly<SameKeys<(typeof ADDON_CLASSES)["Lora"]["instance"][number], keyof NativeLora>>();
exactly<
  SameKeys<(typeof ADDON_CLASSES)["dist.ProcessGroup"]["instance"][number], Extract<keyof ProcessGroup, string>>
>();
exactly<
  SameKeys<(typeof ADDON_CLASSES)["Trainer"]["static"][number], Exclude<keyof NativeTrainerConstructor, "prototype">>
>();
