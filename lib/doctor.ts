/**
 * `vilref doctor`: what this installation runs on — Node, the addon and how it was loaded,
 * LibTorch, CUDA, the BLAS actually mapped into the process, threads — with loud warnings for
 * set-ups that make vilref slow.
 */
import { availableParallelism } from "node:os";
import { locateLibTorch } from "./build/libtorch.js";
import type { Attempt, LibTorch } from "./build/libtorch.js";
import { nativeAddon } from "./native.js";
import type { CpuCacheStats, CudaInfo, LoadRoute, NativeBlasInfo } from "./native.js";

export type BlasKind =
  "openblas-openmp" | "openblas-pthread" | "openblas-sequential" | "mkl" | "reference" | "other" | "unknown";

export interface BlasReport {
  kind: BlasKind;
  detail: string;
  /** A message when this BLAS makes LibTorch slow, else null. */
  warning: string | null;
  libraries: string[];
}

/**
 * Decides which BLAS serves LibTorch from what the addon saw in the process (libraries mapped,
 * OpenBLAS's own report) and LibTorch's build configuration (for a BLAS linked in statically).
 */
export function classifyBlas(info: NativeBlasInfo, torchConfig = ""): BlasReport {
  const libraries = info.libraries.map((l) => l.realPath);
  const make = (kind: BlasKind, detail: string, warning: string | null = null): BlasReport => ({
    kind,
    detail,
    warning,
    libraries,
  });
  if (info.openblasParallel) {
    const detail = info.openblasConfig ?? "OpenBLAS";
    if (info.openblasParallel === "openmp") return make("openblas-openmp", detail);
    if (info.openblasParallel === "pthread") {
      return make(
        "openblas-pthread",
        detail,
        "OpenBLAS is the pthread build: its threads fight LibTorch's OpenMP pool and the ViT runs 1.3-3x " +
          `slower. On Debian: apt-get install libopenblas0-openmp, then ${openmpAlternatives(libraries)}`,
      );
    }
    return make(
      "openblas-sequential",
      detail,
      "OpenBLAS is the single-threaded build: matrix products use one core. On Debian: " +
        "apt-get install libopenblas0-openmp",
    );
  }
  if (libraries.some((p) => /mkl/i.test(p))) return make("mkl", "Intel MKL");
  const reference = libraries.find(
    (p) => /\/blas\/libblas\.so/.test(p) || (/libblas\.so/.test(p) && !/openblas|blis|atlas|mkl/i.test(p)),
  );
  if (reference) {
    return make(
      "reference",
      reference,
      "the reference BLAS (netlib) serves LibTorch: the ViT runs up to 60x slower. On Debian: " +
        "apt-get install libopenblas0-openmp (never libopenblas0-pthread)",
    );
  }
  if (libraries.length) return make("other", libraries.join(", "));
  const staticBlas = /BLAS_INFO=(\w+)/.exec(torchConfig)?.[1];
  if (staticBlas) return make(/mkl/i.test(staticBlas) ? "mkl" : "other", `${staticBlas}, linked into LibTorch`);
  return make("unknown", "no BLAS library is mapped and LibTorch names none");
}

/**
 * The Debian commands that point the BLAS alternatives at the OpenMP build. Installing it is not
 * enough once the pthread build is there (pulled in by python3-scipy or -sklearn, say): the pthread
 * build's alternatives have the higher priority, and removing it can remove what depends on it.
 */
export function openmpAlternatives(libraries: readonly string[]): string {
  const triplet = libraries.map((p) => /\/usr\/lib\/([^/]+)\/openblas-pthread\//.exec(p)?.[1]).find(Boolean);
  const arch = triplet ?? "x86_64-linux-gnu";
  const set = (name: string) => `update-alternatives --set ${name}-${arch} /usr/lib/${arch}/openblas-openmp/${name}`;
  const commands = ["libblas.so.3", "liblapack.so.3", "libopenblas.so.0"].map(set).join(" && ");
  return `point the alternatives at it (the pthread build has the higher priority): ${commands}`;
}

export interface DoctorReport {
  node: { version: string; platform: string; arch: string };
  libtorch: { found: LibTorch | null; tried: Attempt[] };
  addon:
    | {
        route: LoadRoute;
        built: boolean;
        path: string;
        sourceHash: string;
        flavour: string;
        rejected: { path: string; reason: string }[];
      }
    | { error: string };
  cuda: CudaInfo | null;
  blas: BlasReport | null;
  threads: { intraOp: number; cores: number } | null;
  cpuCache: CpuCacheStats | null;
  parallel: string | null;
  /** The data loader's native JPEG path (TurboJPEG), or why it is off. */
  jpeg: { available: boolean; reason: string | null; openmp: string | null } | null;
  warnings: string[];
  ok: boolean;
}

export function doctor(): DoctorReport {
  const warnings: string[] = [];
  const node = { version: process.version, platform: process.platform, arch: process.arch };
  let libtorch: DoctorReport["libtorch"];
  try {
    const r = locateLibTorch();
    libtorch = { found: r.torch, tried: r.tried };
  } catch (e) {
    libtorch = { found: null, tried: [{ source: "LIBTORCH", detail: (e as Error).message }] };
  }
  const report: DoctorReport = {
    node,
    libtorch,
    addon: { error: "not loaded" },
    cuda: null,
    blas: null,
    threads: null,
    cpuCache: null,
    parallel: null,
    jpeg: null,
    warnings,
    ok: false,
  };
  let loaded;
  try {
    loaded = nativeAddon();
  } catch (e) {
    report.addon = { error: (e as Error).message };
    warnings.push("the native addon could not be loaded: tensor work is unavailable");
    return report;
  }
  const { addon } = loaded;
  const info = addon.buildInfo();
  report.addon = {
    route: loaded.route,
    built: loaded.built,
    path: loaded.path,
    sourceHash: info.sourceHash,
    flavour: info.flavour,
    rejected: loaded.rejected,
  };
  report.cuda = addon.cuda();
  report.blas = classifyBlas(addon.blas(), info.config);
  if (report.blas.warning) warnings.push(report.blas.warning);
  report.threads = { intraOp: addon.getNumThreads(), cores: availableParallelism() };
  report.parallel = info.parallel;
  report.cpuCache = addon.cpuCache();
  report.jpeg = { available: addon.jpeg.available, reason: addon.jpeg.reason, openmp: addon.jpeg.openmp };
  if (!addon.jpeg.available) warnings.push(`the JPEG fast path is off: ${addon.jpeg.reason}`);
  if (report.threads.intraOp > report.threads.cores)
    warnings.push(`${report.threads.intraOp} threads on ${report.threads.cores} cores: oversubscribed`);
  if (info.cudaCompiled && !report.cuda.available)
    warnings.push("the addon is built for CUDA but no GPU is usable (driver missing or CUDA_VISIBLE_DEVICES empty)");
  report.ok = !report.blas.warning;
  return report;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The report as lines for a terminal. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(10)} ${v}`);
  row("node", `${r.node.version} (${r.node.platform}-${r.node.arch})`);
  const t = r.libtorch.found;
  row(
    "libtorch",
    t
      ? `${t.version} ${t.cuda ? `CUDA ${t.cuda}` : "CPU"} [${t.flavour}] from ${t.source}: ${t.libDir}`
      : `not found (${r.libtorch.tried.map((a) => `${a.source}: ${a.detail}`).join("; ")})`,
  );
  if ("error" in r.addon) row("addon", `NOT LOADED: ${r.addon.error}`);
  else
    row(
      "addon",
      `${r.addon.route === "prebuild" ? "prebuild" : r.addon.built ? "fresh build" : "build"} ${r.addon.path} ` +
        `(sources ${r.addon.sourceHash}, ${r.addon.flavour})`,
    );
  if (r.cuda) {
    row("cuda", r.cuda.available ? `${r.cuda.deviceCount} device(s)` : "not available");
    for (const d of r.cuda.devices)
      row("", `cuda:${d.index} ${d.name}, ${gib(d.totalMemory)}, sm ${d.capability}, ${d.multiprocessors} SMs`);
  }
  if (r.blas) row("blas", `${r.blas.kind}: ${r.blas.detail}`);
  if (r.threads)
    row("threads", `${r.threads.intraOp} intra-op (of ${r.threads.cores} cores; set VILREF_THREADS or setThreads())`);
  if (r.cpuCache)
    row(
      "cpu cache",
      r.cpuCache.enabled
        ? `on: freed tensors ≥ 1 MiB reused, up to ${gib(r.cpuCache.limitBytes)} (VILREF_CPU_CACHE_MB)`
        : "off (VILREF_CPU_CACHE_MB=0)",
    );
  if (r.jpeg)
    row(
      "jpeg",
      r.jpeg.available
        ? "native TurboJPEG path on (DCT-scaled decode, antialiased bicubic, jitter and normalisation in C++)"
        : `sharp only: ${r.jpeg.reason}`,
    );
  for (const w of r.warnings) lines.push(`WARNING: ${w}`);
  lines.push(r.ok ? "doctor: ok" : "doctor: problems found");
  return lines.join("\n");
}
