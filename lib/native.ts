/**
 * Finds LibTorch, loads the prebuilt or freshly built addon, and gives the rest of vilref one
 * typed interface of the native surface.
 *
 * Routes, in order: a prebuild in prebuilds/<platform>-<arch>/ whose stamp matches this LibTorch's
 * flavour and the hash of native/; the cmake-js build in build/ when its stamp matches; a fresh
 * cmake-js build. When none can work, the error says what is missing. The addon's exports are
 * typed in ./addon-types.ts.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { ensureAddon, packageRoot, readStamp } from "./build/addon.js";
import type { Stamp } from "./build/addon.js";
import { locateLibTorch, missingMessage } from "./build/libtorch.js";
import type { LibTorch } from "./build/libtorch.js";

export type { LibTorch } from "./build/libtorch.js";
export type { Stamp } from "./build/addon.js";

export type * from "./addon-types.js";
import type { CpuCacheStats, CudaMemory, NativeAddon } from "./addon-types.js";

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
  const ensureOptions = {
    build: options.build ?? process.env.VILREF_NO_BUILD !== "1",
    ...(options.log ? { log: options.log } : {}),
    ...(options.quiet ? { quiet: true } : {}),
  };
  const found = ensureAddon(root, torch, ensureOptions);
  if (found.route === "prebuild") {
    // A prebuild whose stamp fits can still fail to load: a system library it links (libturbojpeg
    // when the prebuild was made with the JPEG fast path) missing here. Pass it over for a build.
    const failure = loadFailure(found.path);
    if (failure) {
      const rejected = [...found.rejected, { path: found.path, reason: `cannot be loaded: ${failure}` }];
      const rebuilt = ensureAddon(root, torch, { ...ensureOptions, prebuilds: false });
      return finish(rebuilt.path, rebuilt.route, rebuilt.built, [...rejected, ...rebuilt.rejected]);
    }
  }
  return finish(found.path, found.route, found.built, found.rejected);

  function loadFailure(path: string): string | undefined {
    try {
      require(path);
      return undefined;
    } catch (e) {
      return e instanceof Error ? e.message.split("\n")[0] : String(e);
    }
  }

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
        `cannot load vilref's addon ${path}: ` +
          `${msg}${/cannot open shared object/.test(msg) ? ` (LibTorch libraries expected in ${torch!.libDir})` : ""}`,
      );
    }
    const info = addon.buildInfo();
    if (info.sourceHash !== stamp.sourceHash) {
      throw new Error(
        `vilref addon ${path} reports sources ${info.sourceHash} but its stamp says ${stamp.sourceHash}; ` +
          "delete it (and its .stamp.json) so that it is rebuilt",
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

/** The CUDA caching allocator's counters for `device` ("cuda", "cuda:N"; zeros for "cpu"), in bytes. */
export function cudaMemory(device = "cuda"): CudaMemory {
  return native().cudaMemory(device);
}

/** Starts the peaks that cudaMemory reports again from the current values. */
export function resetCudaPeakMemory(device = "cuda"): void {
  native().resetCudaPeakMemory(device);
}

/** Returns the CUDA caching allocator's unused blocks to the driver (after dispose(), say). */
export function emptyCudaCache(): void {
  native().emptyCudaCache();
}
