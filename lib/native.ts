/**
 * Finds LibTorch, loads the prebuilt or freshly built addon, and gives the rest of vilref one
 * typed interface of the native surface.
 *
 * Routes, in order: a prebuild in prebuilds/<platform>-<arch>/ whose stamp matches this LibTorch's
 * flavour and the hash of native/; the cmake-js build in build/ when its stamp matches; a fresh
 * cmake-js build. When none can work, the error says what is missing.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { ensureAddon, packageRoot, readStamp } from "./build/addon.js";
import type { Stamp } from "./build/addon.js";
import { locateLibTorch, missingMessage } from "./build/libtorch.js";
import type { LibTorch } from "./build/libtorch.js";

export type { LibTorch } from "./build/libtorch.js";
export type { Stamp } from "./build/addon.js";

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

export interface NativeHead {
  forward(input: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<Record<string, TensorData<Float32Array>>>;
  loadStateDict(state: Record<string, TensorData<Float32Array>>): Promise<void>;
  readonly config: Required<Omit<HeadConfig, "seed">>;
  /** Calls queued or running on this object. */
  readonly pending: number;
}

/** Architecture of a Segmenter (native/segment.h); omitted keys take the defaults shown. */
export interface SegmenterConfig {
  /** Side of the square tiles it takes (64); a multiple of patch. */
  tile?: number;
  /** ViT patch size, a power of two (8): the decoder has log2(patch) ×2 stages. */
  patch?: number;
  width?: number;
  layers?: number;
  heads?: number;
  /** 1-based blocks whose patch tokens the decoder reads (default: 1/4, 2/4, 3/4, 4/4 of the depth). */
  taps?: number[];
  /** Channels of the convolutional stem at full resolution (16), doubled per level up to 4×. */
  stemChannels?: number;
  /** Channels of the token bottleneck (64). */
  decoderChannels?: number;
}

export interface SegmenterOptions {
  seed?: number;
  /** AdamW lr of stem, decoder and head (1e-3). */
  lr?: number;
  /** AdamW lr of the ViT backbone (default: lr). */
  backboneLr?: number;
  weightDecay?: number;
  /** The backbone takes no gradient and is left out of the optimizer. */
  freezeBackbone?: boolean;
  diceWeight?: number;
  bceWeight?: number;
}

export interface SegmentBatch {
  /** [N, 3, tile, tile] normalised images. */
  images: TensorData<Float32Array>;
  /** [N, 1, tile, tile] in [0, 1]. */
  targets: TensorData<Float32Array>;
  /** [N, 1, tile, tile] in [0, 1]: per-pixel loss weights (the field of view). */
  weights?: TensorData<Float32Array>;
}

export interface NativeSegmenter {
  step(
    batch: SegmentBatch,
    options?: { lr?: number; backboneLr?: number },
  ): Promise<{ loss: number; bce: number; dice: number }>;
  /** [N, 3, tile, tile] → probabilities [N, 1, tile, tile]. */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>>;
  loadStateDict(
    state: Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>,
    options?: { strict?: boolean },
  ): Promise<{ missing: string[]; unexpected: string[] }>;
  readonly config: Required<SegmenterConfig>;
  readonly steps: number;
  readonly pending: number;
}

export interface FinetunerOptions {
  /** Number of (multi-label) outputs. */
  classes: number;
  /** Head lr (1e-3). */
  lr?: number;
  /** Backbone lr (1e-6). */
  backboneLr?: number;
  weightDecay?: number;
  /** Backbone without gradient, out of the optimizer: its weights stay bit-identical. */
  frozen?: boolean;
  seed?: number;
}

export interface NativeFinetuner {
  step(batch: { images: TensorData<Float32Array>; labels: TensorData<Float32Array> }): Promise<{ loss: number }>;
  /** [N, 3, R, R] → probabilities [N, classes]. */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>>;
  stateDict(): Promise<Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>>;
  loadStateDict(state: Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>): Promise<void>;
  readonly config: {
    classes: number;
    width: number;
    lr: number;
    backboneLr: number;
    weightDecay: number;
    frozen: boolean;
  };
  readonly steps: number;
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

/** The addon's exports, exactly. */
export interface NativeAddon {
  cpuCache(): CpuCacheStats;
  emptyCpuCache(): void;
  buildInfo(): BuildInfo;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  cuda(): CudaInfo;
  blas(): NativeBlasInfo;
  Head: new (config: HeadConfig) => NativeHead;
  Segmenter: new (config: SegmenterConfig, options?: SegmenterOptions) => NativeSegmenter;
  /** model: a ViLReF's nativeHandle. */
  Finetuner: new (model: unknown, options: FinetunerOptions) => NativeFinetuner;
  debug: {
    echo<T extends TensorArray>(
      tensor: TensorData<T>,
      options?: { transpose?: boolean; cast?: "bfloat16" | "float16"; finite?: boolean },
    ): Promise<EchoResult<T>>;
    addressOf(array: TensorArray): bigint;
    torchError(message: string, async?: boolean): Promise<void> | undefined;
  };
}

export type LoadRoute = "prebuild" | "build";

export interface LoadedAddon {
  addon: NativeAddon;
  route: LoadRoute;
  /** True when this call compiled the addon. */
  built: boolean;
  path: string;
  stamp: Stamp;
  torch: LibTorch;
  /** Prebuilds looked at and passed over, with the reason. */
  rejected: { path: string; reason: string }[];
}

export interface LoadOptions {
  /** Package root holding native/, prebuilds/ and build/ (default: this package). */
  root?: string;
  /** Use this LibTorch instead of locating one. */
  torch?: LibTorch;
  /** Compile when no prebuild or build fits (default: true unless VILREF_NO_BUILD=1). */
  build?: boolean;
  /** Progress messages (default: stderr). */
  log?: (message: string) => void;
  /** Hide the compiler's output unless it fails. */
  quiet?: boolean;
}

const require = createRequire(import.meta.url);

/** Loads the addon by the first route that fits; see the module comment. */
export function loadNative(options: LoadOptions = {}): LoadedAddon {
  const root = options.root ?? packageRoot;
  let torch = options.torch;
  if (!torch) {
    const located = locateLibTorch();
    if (!located.torch) throw new Error(missingMessage(located.tried));
    torch = located.torch;
  }
  const found = ensureAddon(root, torch, {
    build: options.build ?? process.env.VILREF_NO_BUILD !== "1",
    ...(options.log ? { log: options.log } : {}),
    ...(options.quiet ? { quiet: true } : {}),
  });
  return finish(found.path, found.route, found.built, found.rejected);

  function finish(
    path: string,
    route: LoadRoute,
    didBuild: boolean,
    rejected: { path: string; reason: string }[],
  ): LoadedAddon {
    const stamp = readStamp(path);
    if (!stamp) throw new Error(`vilref addon ${path} has no stamp`);
    let addon: NativeAddon;
    try {
      addon = require(path) as NativeAddon;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(
        `cannot load vilref's addon ${path}: ${msg}${/cannot open shared object/.test(msg) ? ` (LibTorch libraries expected in ${torch!.libDir})` : ""}`,
      );
    }
    const info = addon.buildInfo();
    if (info.sourceHash !== stamp.sourceHash) {
      throw new Error(
        `vilref addon ${path} reports sources ${info.sourceHash} but its stamp says ${stamp.sourceHash}; delete it and run \`npm run setup\``,
      );
    }
    return { addon, route, built: didBuild, path, stamp, torch: torch!, rejected };
  }
}

let loaded: LoadedAddon | undefined;

/** Reads VILREF_THREADS, or the machine's cores. */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.VILREF_THREADS;
  if (raw === undefined || raw === "") return availableParallelism();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`VILREF_THREADS: expected a positive integer, got "${raw}"`);
  return n;
}

/** The process's addon, loaded on first use with the default thread count applied. */
export function nativeAddon(): LoadedAddon {
  if (!loaded) {
    const threads = defaultThreads();
    const addon = loadNative();
    addon.addon.setNumThreads(threads);
    loaded = addon;
  }
  return loaded;
}

/** The addon's exports (loads it on first use). */
export function native(): NativeAddon {
  return nativeAddon().addon;
}

/** Sets the number of CPU threads LibTorch uses for each operation (default: the machine's cores). */
export function setThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError(`threads: expected a positive integer, got ${threads}`);
  native().setNumThreads(threads);
}

export function getThreads(): number {
  return native().getNumThreads();
}

/** LibTorch's CPU block cache: freed tensors of 1 MiB and more are kept for reuse (see README). */
export function cpuCache(): CpuCacheStats {
  return native().cpuCache();
}

/** Returns every cached block to the system. */
export function emptyCpuCache(): void {
  native().emptyCpuCache();
}
