// @ts-check
/**
 * The native addon's build identity and the ways to get one: the cmake-js build in build/ (when
 * its stamp matches), a prebuild from prebuilds/ (used only when its LibTorch flavour and source
 * hash match), or a fresh cmake-js build. A prebuild is a stripped copy of a cmake-js build
 * (makePrebuild: the same compile, so the compiler cache makes it seconds). Plain JavaScript so that
 * the set-up and pack scripts can use it before TypeScript is compiled (it is compiled to
 * dist/build/ with the rest). Run directly: `node lib/build/addon.js --hash`.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** @typedef {import("./libtorch.js").LibTorch} LibTorch */
/**
 * @typedef {object} Stamp  what a built addon was built from, written beside it as JSON
 * @property {string} name
 * @property {string} flavour
 * @property {string} torchVersion
 * @property {string | null} cuda
 * @property {0 | 1} cxx11Abi
 * @property {string} sourceHash
 * @property {string} libDir        LibTorch's library directory at build time
 * @property {string} torchSource
 * @property {number} napi
 * @property {string} platform
 * @property {string} arch
 * @property {string} builder       "cmake-js" (older prebuilds: "node-gyp")
 * @property {boolean} [c10dGloo]   built with c10d Gloo (process groups)
 * @property {string} builtAt
 */

export const ADDON_NAME = "vilref";
/** node-gyp-build's own reading of prebuild file names (runtime, napi, abi, libc tags). */
const nodeGypBuild = createRequire(import.meta.url)("node-gyp-build");
export const NAPI_VERSION = 8;

/** The package root (holds package.json, native/, prebuilds/). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** @param {string} root */
export function sourceFiles(root) {
  /** @type {string[]} */
  const out = [];
  /** @param {string} dir */
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (/\.(cc|cpp|cu|h|hpp)$/.test(entry.name)) out.push(relative(root, p).split("\\").join("/"));
    }
  };
  const native = join(root, "native");
  if (!existsSync(native)) throw new Error(`vilref's native sources are missing (${native}); reinstall the package`);
  walk(native);
  // The build description is part of the identity: a changed link or define makes prebuilds stale.
  if (existsSync(join(root, "CMakeLists.txt"))) out.push("CMakeLists.txt");
  return out.sort();
}

/** A short hash of the native sources and CMakeLists.txt: names and contents. @param {string} root */
export function sourceHash(root) {
  const h = createHash("sha256");
  for (const file of sourceFiles(root)) {
    h.update(file);
    h.update("\0");
    h.update(readFileSync(join(root, file)));
    h.update("\0");
  }
  return h.digest("hex").slice(0, 16);
}

/** @param {string} root */
export function prebuildDir(root) {
  return join(root, "prebuilds", `${process.platform}-${process.arch}`);
}

/**
 * File name of the prebuild for a flavour (prebuildify's `<name>.napi.node` with the flavour in the name).
 * @param {string} flavour
 */
export function prebuildName(flavour) {
  return `${ADDON_NAME}.${flavour}.napi.node`;
}

/** @param {string} addonPath */
export function stampPath(addonPath) {
  return addonPath.replace(/\.node$/, ".stamp.json");
}

/** @param {string} addonPath @returns {Stamp | null} */
export function readStamp(addonPath) {
  try {
    return JSON.parse(readFileSync(stampPath(addonPath), "utf8"));
  } catch {
    return null;
  }
}

/** @param {string} addonPath @param {Stamp} stamp */
export function writeStamp(addonPath, stamp) {
  const file = stampPath(addonPath);
  writeFileSync(`${file}.tmp`, JSON.stringify(stamp, null, 2) + "\n");
  renameSync(`${file}.tmp`, file);
}

/** @param {LibTorch} torch @param {string} hash @param {string} builder @returns {Stamp} */
export function makeStamp(torch, hash, builder) {
  return {
    name: ADDON_NAME,
    flavour: torch.flavour,
    torchVersion: torch.version,
    cuda: torch.cuda,
    cxx11Abi: torch.cxx11Abi,
    sourceHash: hash,
    libDir: torch.libDir,
    torchSource: torch.source,
    napi: NAPI_VERSION,
    platform: process.platform,
    arch: process.arch,
    builder,
    c10dGloo: torch.c10dGloo,
    builtAt: new Date().toISOString(),
  };
}

/**
 * Why a stamped addon does not fit this LibTorch and these sources, or null when it does.
 * @param {Stamp | null} stamp @param {LibTorch} torch @param {string} hash
 */
export function mismatch(stamp, torch, hash) {
  if (!stamp) return "no stamp";
  if (stamp.flavour !== torch.flavour) return `built for ${stamp.flavour}, this LibTorch is ${torch.flavour}`;
  if (stamp.cxx11Abi !== torch.cxx11Abi)
    return `built with _GLIBCXX_USE_CXX11_ABI=${stamp.cxx11Abi}, LibTorch needs ${torch.cxx11Abi}`;
  if (stamp.sourceHash !== hash) return `stale: built from sources ${stamp.sourceHash}, native/ is now ${hash}`;
  if (stamp.platform !== process.platform || stamp.arch !== process.arch)
    return `built for ${stamp.platform}-${stamp.arch}`;
  // libgloo-dev installed after the build: rebuild so that process groups are in
  if (torch.c10dGloo && !stamp.c10dGloo)
    return "built without c10d Gloo, which can now be compiled (libgloo-dev is installed)";
  return null;
}

/**
 * The prebuild for this LibTorch and these sources, and why every other one was passed over.
 * @param {string} root @param {LibTorch} torch @param {string} hash
 * @returns {{ path: string | null, rejected: { path: string, reason: string }[] }}
 */
export function findPrebuild(root, torch, hash) {
  const dir = prebuildDir(root);
  /** @type {{ path: string, reason: string }[]} */
  const rejected = [];
  let files = [];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith(".node"))
      .sort();
  } catch {
    return { path: null, rejected };
  }
  const fitsThisNode = nodeGypBuild.matchTags("node", process.versions.modules);
  for (const f of files) {
    const path = join(dir, f);
    const tags = nodeGypBuild.parseTags(f);
    const reason =
      !fitsThisNode(tags) || !tags?.napi
        ? `its tags do not fit Node ${process.version} (N-API ${NAPI_VERSION} build expected)`
        : mismatch(readStamp(path), torch, hash);
    if (!reason) return { path, rejected };
    rejected.push({ path, reason });
  }
  return { path: null, rejected };
}

/**
 * A prebuild finds LibTorch through an rpath entry `$ORIGIN/libtorch-<flavour>`, a link the
 * loader points at the LibTorch found here (the build machine's path is also in the rpath, and
 * system libraries need neither). Returns false when the link cannot be made.
 * @param {string} addonPath @param {LibTorch} torch
 */
export function linkLibTorch(addonPath, torch) {
  const link = join(dirname(addonPath), `libtorch-${torch.flavour}`);
  try {
    if (readlinkSync(link) === torch.libDir) return true;
  } catch {
    /* absent or not a link */
  }
  try {
    const tmp = `${link}.${process.pid}.tmp`;
    rmSync(tmp, { force: true });
    symlinkSync(torch.libDir, tmp);
    renameSync(tmp, link);
    return true;
  } catch {
    return false;
  }
}

/** @param {string} root */
export function buildOutput(root) {
  return join(root, "build", "Release", `${ADDON_NAME}.node`);
}

/** @param {string} cmd */
function onPath(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** What is missing to build here, or null. */
export function missingBuildTools() {
  const missing = ["cmake", "make", "c++"].filter((c) => !onPath(c));
  return missing.length
    ? `building vilref's addon needs ${missing.join(", ")} (on Debian: apt-get install -y cmake make g++)`
    : null;
}

/** @param {number} ms */
function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Runs `body` holding a lock directory, so that processes loading vilref at the same moment
 * build once. A lock left by a dead process is taken over.
 * @template T @param {string} lockDir @param {() => T} body @param {(msg: string) => void} log
 */
function withLock(lockDir, body, log) {
  mkdirSync(dirname(lockDir), { recursive: true });
  let announced = false;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(join(lockDir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if (/** @type {NodeJS.ErrnoException} */ (e).code !== "EEXIST") throw e;
      let pid = NaN;
      try {
        pid = Number(readFileSync(join(lockDir, "pid"), "utf8"));
      } catch {
        /* being written */
      }
      let alive = true;
      if (Number.isInteger(pid)) {
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
      } else if (Date.now() - (statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 10000) alive = false;
      if (!alive) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (!announced) log(`waiting for another process building the addon (${lockDir})`);
      announced = true;
      sleep(500);
    }
  }
  try {
    return body();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/**
 * Builds the addon with cmake-js into `<root>/build` and stamps it. Reconfigures (cheap) so
 * that the source hash define is current, then builds incrementally.
 * @param {string} root @param {LibTorch} torch
 * @param {{ log?: (msg: string) => void, jobs?: number, quiet?: boolean }} [opts]
 * @returns {string} the addon's path
 */
export function buildAddon(root, torch, opts = {}) {
  const log = opts.log ?? ((m) => process.stderr.write(`vilref: ${m}\n`));
  const tools = missingBuildTools();
  if (tools) throw new Error(tools);
  return withLock(
    join(root, "build", ".lock"),
    () => {
      const hash = sourceHash(root);
      const out = buildOutput(root);
      if (!mismatch(readStamp(out), torch, hash) && existsSync(out)) return out;
      // The cmake-js of the package being built (its node_modules), so that the include paths it
      // passes are the same relative to the package root whichever process builds it (ccache hits).
      let cmakeJsPackage;
      try {
        cmakeJsPackage = createRequire(join(root, "package.json")).resolve("cmake-js/package.json");
      } catch {
        cmakeJsPackage = fileURLToPath(import.meta.resolve("cmake-js/package.json"));
      }
      const cmakeJs = join(dirname(cmakeJsPackage), "bin", "cmake-js");
      const defines = [
        `--CDVILREF_SOURCE_HASH=${hash}`,
        `--CDVILREF_FLAVOUR=${torch.flavour}`,
        `--CDVILREF_TORCH_LIBDIR=${torch.libDir}`,
      ];
      if (torch.cmakePrefix) defines.push(`--CDCMAKE_PREFIX_PATH=${torch.cmakePrefix}`);
      const common = ["-d", root, "-O", join(root, "build"), "--log-level", "warn", ...defines];
      const jobs = String(opts.jobs ?? availableParallelism());
      log(
        `building the addon against ${torch.flavour} (${torch.source}: ${torch.libDir}) with cmake-js; ` +
          "this takes a few minutes",
      );
      const started = Date.now();
      const stdio = opts.quiet ? "pipe" : ["ignore", process.stderr, process.stderr];
      for (const args of [
        ["configure", ...common],
        ["build", ...common, "--parallel", jobs],
      ]) {
        const r = spawnSync(process.execPath, [cmakeJs, ...args], {
          cwd: root,
          stdio: /** @type {any} */ (stdio),
          encoding: "utf8",
        });
        if (r.status !== 0) {
          const detail = opts.quiet
            ? `\n${String(r.stdout ?? "").slice(-4000)}${String(r.stderr ?? "").slice(-4000)}`
            : "";
          throw new Error(`cmake-js ${args[0]} failed (exit ${r.status ?? r.signal}); see the output above${detail}`);
        }
      }
      if (!existsSync(out)) throw new Error(`cmake-js finished but ${out} does not exist`);
      writeStamp(out, makeStamp(torch, hash, "cmake-js"));
      log(`addon built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${out}`);
      return out;
    },
    log,
  );
}

/**
 * The addon for this LibTorch and these sources, by the first route that fits: the cmake-js build
 * in build/ when current (a checkout, or an install that had to build), a prebuild whose stamp
 * matches (its LibTorch link made), a fresh cmake-js build (unless `build` is false). Otherwise an
 * error saying what is missing.
 * @param {string} root @param {LibTorch} torch
 * @param {{ build?: boolean, prebuilds?: boolean, log?: (msg: string) => void, quiet?: boolean }} [opts]
 * @returns {{ path: string, route: "prebuild" | "build", built: boolean, hash: string,
 *   rejected: { path: string, reason: string }[] }}
 */
export function ensureAddon(root, torch, opts = {}) {
  const hash = sourceHash(root);
  const out = buildOutput(root);
  if (existsSync(out) && !mismatch(readStamp(out), torch, hash))
    return { path: out, route: "build", built: false, hash, rejected: [] };
  const { path: prebuilt, rejected } =
    opts.prebuilds === false ? { path: null, rejected: [] } : findPrebuild(root, torch, hash);
  if (prebuilt) {
    linkLibTorch(prebuilt, torch);
    return { path: prebuilt, route: "prebuild", built: false, hash, rejected };
  }
  const passed = rejected.length
    ? ` (prebuilds passed over: ${rejected.map((r) => `${r.path}: ${r.reason}`).join("; ")})`
    : "";
  if (opts.build === false) {
    throw new Error(
      `vilref's addon is not built for ${torch.flavour} with sources ${hash}${passed}, ` +
        "and building is switched off (VILREF_NO_BUILD=1 or build: false); allow it once, " +
        `e.g. \`npx vilref doctor\`, to build`,
    );
  }
  const tools = missingBuildTools();
  if (tools)
    throw new Error(`no prebuilt vilref addon fits ${torch.flavour} with sources ${hash}${passed}, and ${tools}`);
  /** @type {{ log?: (msg: string) => void, quiet?: boolean }} */
  const buildOpts = {};
  if (opts.log) buildOpts.log = opts.log;
  if (opts.quiet) buildOpts.quiet = true;
  return { path: buildAddon(root, torch, buildOpts), route: "build", built: true, hash, rejected };
}

/**
 * `npm run prebuild`: brings the cmake-js build in `<root>/build` up to date (the same compile as
 * every build, so ccache makes it seconds when nothing changed) and copies it, stripped, to
 * `<out>/prebuilds/<platform>-<arch>/vilref.<flavour>.napi.node` with its stamp. The file appears
 * atomically and its stamp after it, so a process loading meanwhile sees a whole prebuild or none.
 * @param {string} root @param {LibTorch} torch
 * @param {{ out?: string, log?: (msg: string) => void, quiet?: boolean }} [opts]
 * @returns {string} the prebuild's path
 */
export function makePrebuild(root, torch, opts = {}) {
  /** @type {{ log?: (msg: string) => void, quiet?: boolean }} */
  const buildOpts = {};
  if (opts.log) buildOpts.log = opts.log;
  if (opts.quiet) buildOpts.quiet = true;
  const built = buildAddon(root, torch, buildOpts);
  const stamp = readStamp(built);
  if (!stamp) throw new Error(`${built} has no stamp`);
  const dir = prebuildDir(opts.out ?? root);
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, prebuildName(torch.flavour));
  const tmp = `${dest}.${process.pid}.tmp`;
  copyFileSync(built, tmp);
  // Symbols only the linker needed (prebuildify strips the same way); the addon exports one.
  if (onPath("strip")) spawnSync("strip", ["-S", "-x", tmp], { stdio: "ignore" });
  rmSync(stampPath(dest), { force: true });
  renameSync(tmp, dest);
  writeStamp(dest, { ...stamp, builtAt: new Date().toISOString() });
  return dest;
}

/**
 * The prebuilds in `<root>/prebuilds/` that do not fit the sources in `<root>/native/` (a release
 * must not ship them: they would only be passed over).
 * @param {string} root @returns {{ path: string, reason: string }[]}
 */
export function stalePrebuilds(root) {
  const hash = sourceHash(root);
  /** @type {{ path: string, reason: string }[]} */
  const stale = [];
  const base = join(root, "prebuilds");
  for (const platform of existsSync(base) ? readdirSync(base, { withFileTypes: true }) : []) {
    if (!platform.isDirectory()) continue;
    for (const f of readdirSync(join(base, platform.name)).filter((n) => n.endsWith(".node"))) {
      const path = join(base, platform.name, f);
      const stamp = readStamp(path);
      if (!stamp) stale.push({ path, reason: "no stamp" });
      else if (stamp.sourceHash !== hash)
        stale.push({ path, reason: `built from sources ${stamp.sourceHash}, native/ is ${hash}` });
    }
  }
  return stale;
}

// Command-line use: the source hash of the package in the current directory.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === "--hash") console.log(sourceHash(process.cwd()));
  else {
    console.error("usage: node lib/build/addon.js --hash");
    process.exit(2);
  }
}
