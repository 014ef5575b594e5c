// @ts-check
/**
 * Finds the LibTorch that vilref builds against and loads with, in this order:
 *   1. the directory named by the LIBTORCH environment variable (an unpacked LibTorch);
 *   2. a Python torch install (found without importing torch, so it takes milliseconds);
 *   3. the system LibTorch (Debian's libtorch-dev).
 * Plain JavaScript so that the set-up and pack scripts and the loader share it before any
 * TypeScript is compiled. Run directly, it prints what it found:
 *   node lib/build/libtorch.js --json | --flavour | --version | --libdir
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * @typedef {"LIBTORCH" | "python" | "system"} LibTorchSource
 * @typedef {object} LibTorch
 * @property {LibTorchSource} source  where it was found
 * @property {string} root            the install prefix (LIBTORCH dir, torch package dir, or /usr)
 * @property {string | null} cmakePrefix  CMAKE_PREFIX_PATH entry holding Torch/TorchConfig.cmake
 *                                    (null: CMake's default path finds it)
 * @property {string[]} includeDirs   header directories (the C++ frontend's included)
 * @property {string} libDir          directory holding libtorch.so, libc10.so
 * @property {string[]} libs          libraries to link, without the lib prefix
 * @property {string} version         LibTorch version, e.g. "1.13.1" (no local suffix)
 * @property {string | null} cuda     CUDA version it was built for, e.g. "13.0"; null for CPU-only
 * @property {0 | 1} cxx11Abi         the _GLIBCXX_USE_CXX11_ABI value it needs
 * @property {string} flavour         e.g. "torch1.13.1-cpu", "torch2.11.0-cu130": what a prebuild is built for
 * @property {boolean} c10dGloo       c10d's ProcessGroupGloo can be compiled: its header and gloo's headers are
 *                                    here (Debian: libgloo-dev); the implementation is inside LibTorch
 * @typedef {{ source: LibTorchSource, detail: string }} Attempt
 * @typedef {{ torch: LibTorch | null, tried: Attempt[] }} LocateResult
 * @typedef {object} LocateOptions
 * @property {NodeJS.ProcessEnv} [env]        environment to read LIBTORCH / VILREF_PYTHON from
 * @property {string | null} [python]          Python interpreter to ask (null: skip Python)
 * @property {string[]} [systemPrefixes]       prefixes to search for a system LibTorch
 */

const MULTIARCH = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" };

/** @param {string} file @returns {string | null} */
function readText(file) {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
}

/** @param {string | null | undefined} v */
function cleanVersion(v) {
  return /^(\d+\.\d+\.\d+)/.exec(v ?? "")?.[1] ?? null;
}

/** @param {string} version @param {string | null} cuda */
export function flavourOf(version, cuda) {
  return `torch${version}-${cuda ? "cu" + cuda.replace(/\./g, "") : "cpu"}`;
}

/**
 * Reads the ABI flag from TorchConfig.cmake (`TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1"`).
 * @param {string} configDir @returns {0|1}
 */
function abiFrom(configDir) {
  const text = readText(join(configDir, "TorchConfig.cmake"));
  const m = text ? /_GLIBCXX_USE_CXX11_ABI=([01])/.exec(text) : null;
  return m ? /** @type {0|1} */ (Number(m[1])) : 1;
}

/** @param {string} libDir */
function libsIn(libDir) {
  const names = ["torch", "torch_cpu", "c10"];
  for (const extra of ["torch_cuda", "c10_cuda"]) if (existsSync(join(libDir, `lib${extra}.so`))) names.push(extra);
  return names;
}

/** @param {string} includeRoot */
function headerVersion(includeRoot) {
  const text = readText(join(includeRoot, "torch/csrc/api/include/torch/version.h"));
  const m = text ? /#define\s+TORCH_VERSION\s*\\?\s*"([^"]+)"/.exec(text) : null;
  return m ? cleanVersion(m[1]) : null;
}

/**
 * Checks one prefix laid out as LibTorch (include/, lib/, share/cmake/Torch) — the layout of both
 * an unpacked LibTorch and a pip torch package. Returns a reason string when it is not one.
 * @param {string} root @param {LibTorchSource} source @param {{version?: string|null, cuda?: string|null}} [hint]
 * @returns {LibTorch | string}
 */
function checkPrefix(root, source, hint = {}) {
  const include = join(root, "include");
  const libDir = join(root, "lib");
  const configDir = join(root, "share/cmake/Torch");
  if (!existsSync(join(include, "torch/csrc/api/include/torch/torch.h")))
    return `no C++ headers (${join(include, "torch/csrc/api/include/torch/torch.h")} missing)`;
  if (!existsSync(join(libDir, "libtorch.so"))) return `no ${join(libDir, "libtorch.so")}`;
  if (!existsSync(join(configDir, "TorchConfig.cmake"))) return `no ${join(configDir, "TorchConfig.cmake")}`;
  const buildVersion = readText(join(root, "build-version"))?.trim() ?? null; // LibTorch zips: "2.5.1+cu124"
  const version = hint.version ?? cleanVersion(buildVersion) ?? headerVersion(include);
  if (!version) return "cannot tell its version (no build-version file or torch/version.h)";
  /** @type {string | null} */
  let cuda = hint.cuda ?? null;
  if (hint.cuda === undefined) {
    const m = /\+cu(\d+)(\d)$/.exec(buildVersion ?? "");
    cuda = m ? `${m[1]}.${m[2]}` : existsSync(join(libDir, "libtorch_cuda.so")) ? "unknown" : null;
  }
  return describe(source, root, join(root, "share/cmake"), include, libDir, configDir, version, cuda);
}

/**
 * @param {LibTorchSource} source @param {string} root @param {string | null} cmakePrefix
 * @param {string} include @param {string} libDir @param {string} configDir @param {string} version
 * @param {string | null} cuda @returns {LibTorch}
 */
function describe(source, root, cmakePrefix, include, libDir, configDir, version, cuda) {
  return {
    source,
    root,
    cmakePrefix,
    includeDirs: [include, join(include, "torch/csrc/api/include")],
    libDir,
    libs: libsIn(libDir),
    version,
    cuda,
    cxx11Abi: abiFrom(configDir),
    flavour: flavourOf(version, cuda),
    c10dGloo: hasGloo(include),
  };
}

/** Whether c10d Gloo can be compiled against the LibTorch headers under `include`. @param {string} include */
export function hasGloo(include) {
  if (!existsSync(join(include, "torch/csrc/distributed/c10d/ProcessGroupGloo.hpp"))) return false;
  return [include, "/usr/include", "/usr/local/include"].some((d) => existsSync(join(d, "gloo/config.h")));
}

/** @param {string} python @returns {{ dir: string } | string} */
function pythonTorchDir(python) {
  const code =
    "import importlib.util as u\ns=u.find_spec('torch')\nprint(s.submodule_search_locations[0] " +
    "if s and s.submodule_search_locations else '')";
  try {
    const out = execFileSync(python, ["-c", code], {
      encoding: "utf8",
      timeout: 20000,
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return out ? { dir: out } : `${python} has no torch package`;
  } catch (e) {
    const err = /** @type {NodeJS.ErrnoException} */ (e);
    return err.code === "ENOENT"
      ? `no ${python} on PATH`
      : `${python} failed to answer (${err.message.split("\n")[0]})`;
  }
}

/** Version and CUDA of a Python torch from torch/version.py, read as text. @param {string} dir */
function pythonTorchVersion(dir) {
  const text = readText(join(dir, "version.py")) ?? "";
  const version = cleanVersion(/__version__\s*(?::[^=]*)?=\s*['"]([^'"]+)['"]/.exec(text)?.[1]);
  const cudaMatch = /^cuda\s*(?::[^=]*)?=\s*(?:['"]([^'"]+)['"]|None)/m.exec(text);
  return { version, cuda: cudaMatch ? (cudaMatch[1] ?? null) : undefined };
}

/** @param {string} pkg @returns {string | null} */
function debianVersion(pkg) {
  try {
    const out = execFileSync("dpkg-query", ["-W", "-f=${Version}", pkg], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    return cleanVersion(out.trim());
  } catch {
    return null;
  }
}

/** @param {string} prefix @returns {LibTorch | string} */
function checkSystem(prefix) {
  const multiarch = MULTIARCH[/** @type {"x64"|"arm64"} */ (process.arch)] ?? "";
  const include = join(prefix, "include");
  if (!existsSync(join(include, "torch/csrc/api/include/torch/torch.h")))
    return `no ${join(include, "torch/csrc/api/include/torch/torch.h")}`;
  const libDir = [join(prefix, "lib", multiarch), join(prefix, "lib")].find((d) => existsSync(join(d, "libtorch.so")));
  if (!libDir) return `no libtorch.so under ${join(prefix, "lib")}`;
  const configDir =
    [join(libDir, "cmake/Torch"), join(prefix, "share/cmake/Torch")].find((d) =>
      existsSync(join(d, "TorchConfig.cmake")),
    ) ?? null;
  if (!configDir) return `no TorchConfig.cmake under ${libDir}/cmake or ${prefix}/share/cmake`;
  // Debian's headers say 1.13.0 for the 1.13.1 package: the package manager knows better.
  const version = (prefix === "/usr" ? debianVersion("libtorch-dev") : null) ?? headerVersion(include);
  if (!version) return "cannot tell its version";
  const cuda = existsSync(join(libDir, "libtorch_cuda.so")) ? "unknown" : null;
  // CMake's default search path finds Debian's TorchConfig; other prefixes are passed explicitly.
  const cmakePrefix = configDir.endsWith("share/cmake/Torch") || prefix !== "/usr" ? resolve(configDir, "..") : null;
  return describe("system", prefix, cmakePrefix, include, libDir, configDir, version, cuda);
}

/**
 * Locates LibTorch. Never downloads or installs anything.
 * @param {LocateOptions} [opts]
 * @returns {LocateResult}
 */
export function locateLibTorch(opts = {}) {
  const env = opts.env ?? process.env;
  /** @type {Attempt[]} */
  const tried = [];
  if (env.LIBTORCH) {
    const found = checkPrefix(resolve(env.LIBTORCH), "LIBTORCH");
    if (typeof found !== "string") return { torch: found, tried };
    // An explicit choice that does not work is an error, not something to route around.
    throw new Error(
      `LIBTORCH=${env.LIBTORCH} is not a LibTorch directory: ${found}. Unset LIBTORCH or point it at an ` +
        "unpacked LibTorch (with include/, lib/ and share/cmake/Torch).",
    );
  }
  tried.push({ source: "LIBTORCH", detail: "LIBTORCH is not set" });

  const python = opts.python === undefined ? env.VILREF_PYTHON || "python3" : opts.python;
  if (python) {
    const dir = pythonTorchDir(python);
    if (typeof dir === "string") tried.push({ source: "python", detail: dir });
    else {
      const hint = pythonTorchVersion(dir.dir);
      const found = checkPrefix(dir.dir, "python", hint);
      if (typeof found !== "string") return { torch: found, tried };
      tried.push({ source: "python", detail: `torch at ${dir.dir} is not usable from C++: ${found}` });
    }
  } else tried.push({ source: "python", detail: "Python lookup disabled" });

  for (const prefix of opts.systemPrefixes ?? ["/usr", "/usr/local"]) {
    const found = checkSystem(prefix);
    if (typeof found !== "string") return { torch: found, tried };
    tried.push({ source: "system", detail: `${prefix}: ${found}` });
  }
  return { torch: null, tried };
}

/** True on Debian (or a derivative with apt and dpkg). */
export function isDebian() {
  return existsSync("/etc/debian_version") && existsSync("/usr/bin/apt-get");
}

/**
 * What to tell someone who has no LibTorch: the one thing to install here.
 * @param {Attempt[]} tried
 */
export function missingMessage(tried) {
  const lines = tried.map((t) => `  - ${t.source}: ${t.detail}`).join("\n");
  const fix = isDebian()
    ? "Install Debian's LibTorch as root: apt-get install -y --no-install-recommends libtorch-dev libopenblas0-openmp"
    : "Install a LibTorch and set LIBTORCH to its directory, or install PyTorch for python3 (pip install torch); " +
      "vilref then builds against it";
  return `vilref needs LibTorch (the C++ library of PyTorch) and found none.\n${lines}\n${fix}.`;
}

/**
 * Finds LibTorch or throws the message above.
 * @param {LocateOptions} [opts]
 * @returns {LibTorch}
 */
export function requireLibTorch(opts) {
  const { torch, tried } = locateLibTorch(opts);
  if (!torch) throw new Error(missingMessage(tried));
  return torch;
}

/** Lists the files of a directory, or nothing. @param {string} dir */
export function listDir(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// Command-line use, for shell scripts.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const torch = requireLibTorch();
  const what = process.argv[2] ?? "--json";
  const out = {
    "--json": () => JSON.stringify(torch, null, 2),
    "--libdir": () => torch.libDir,
    "--flavour": () => torch.flavour,
    "--version": () => torch.version,
  }[what];
  if (!out) {
    console.error(`unknown option ${what}`);
    process.exit(2);
  }
  console.log(out());
}
