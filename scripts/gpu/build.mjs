#!/usr/bin/env node
// The build stage of scripts/gpu/run.sh: compiles native/ against the LibTorch the locator finds
// (on the GPU machine: python3's torch, CUDA), installs the addon where the loader looks first —
// ROOT/prebuilds/<platform>-<arch>/vilref.<flavour>.napi.node with its stamp — and writes a JSON
// report. No cmake-js and no network: plain CMake with the repository's CMakeLists.txt (the same
// compile lines as the cmake-js build, so ccache hits them), or, when CMake cannot configure (its
// Torch/CUDA discovery), one g++ line per source file, as ../shared/GPU.md describes.
//
// A source file that does not compile is retried once with VILREF_CONSERVATIVE (the LibTorch
// 2.x fast paths written without a 2.x LibTorch to compile them: see native/, grep the macro),
// and native/dist.cc with c10d off (VILREF_NO_DIST), so that one API difference in an untested
// LibTorch costs a feature, not the run. The report lists every attempt and its first errors.
//
// Usage: node scripts/gpu/build.mjs --root DIR --build-dir DIR [--mode auto|cmake|gxx] [--jobs N] [--report FILE]
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const root = resolve(opt("--root", process.cwd()));
const buildDir = resolve(opt("--build-dir", join(root, "build-gpu")));
const mode = opt("--mode", "auto");
const jobs = Number(opt("--jobs", String(availableParallelism())));
const reportFile = opt("--report", null);
const log = (m) => process.stderr.write(`build: ${m}\n`);

const { linkLibTorch, makeStamp, prebuildDir, prebuildName, sourceFiles, sourceHash, writeStamp } = await import(
  join(root, "lib/build/addon.js")
);
const { requireLibTorch } = await import(join(root, "lib/build/libtorch.js"));

const torch = requireLibTorch();
const hash = sourceHash(root);
const headers = [join(root, "node_modules/node-api-headers/include"), join(root, "node_modules/node-addon-api")];
for (const h of headers) if (!existsSync(h)) throw new Error(`build: Node-API headers missing: ${h}`);
log(`LibTorch ${torch.flavour} (${torch.source}: ${torch.libDir}), sources ${hash}, ${jobs} jobs`);

const report = { flavour: torch.flavour, torchSource: torch.source, sourceHash: hash, attempts: [], ok: false };
const started = Date.now();
const onPath = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
const ccache = onPath("ccache") && !process.env.VILREF_NO_CCACHE ? "ccache" : null;

/** Runs a command, keeping its output; resolves { code, output }. */
function run(cmd, argv, options = {}) {
  return new Promise((done) => {
    const child = spawn(cmd, argv, { cwd: options.cwd ?? root, env: { ...process.env, ...(options.env ?? {}) } });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", (e) => done({ code: -1, output: `${output}\n${e.message}` }));
    child.on("close", (code) => done({ code: code ?? -1, output }));
  });
}

/** The first compiler errors of a log, for the report. */
function firstErrors(text, n = 12) {
  return text
    .split("\n")
    .filter((l) => /error|FAILED|Error/.test(l))
    .slice(0, n);
}

// ---- CMake ----
async function cmakeAttempt(flags) {
  const t0 = Date.now();
  const defines = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION",
    `-DCMAKE_JS_INC=${headers.join(";")}`,
    `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${join(buildDir, "Release")}`,
    `-DVILREF_SOURCE_HASH=${hash}`,
    `-DVILREF_FLAVOUR=${torch.flavour}`,
    `-DVILREF_TORCH_LIBDIR=${torch.libDir}`,
    `-DVILREF_NO_DIST=${flags.noDist ? "ON" : "OFF"}`,
    `-DVILREF_CONSERVATIVE=${flags.conservative ? "ON" : "OFF"}`,
  ];
  if (torch.cmakePrefix) defines.push(`-DCMAKE_PREFIX_PATH=${torch.cmakePrefix}`);
  const generator = onPath("ninja") ? ["-G", "Ninja"] : [];
  if (!existsSync(join(buildDir, "CMakeCache.txt"))) mkdirSync(buildDir, { recursive: true });
  const conf = await run("cmake", ["-S", root, "-B", buildDir, ...generator, ...defines]);
  const attempt = { builder: "cmake", ...flags, seconds: 0, ok: false, failed: [], errors: [] };
  report.attempts.push(attempt);
  if (conf.code !== 0) {
    attempt.stage = "configure";
    attempt.errors = firstErrors(conf.output, 20);
    attempt.log = conf.output.slice(-6000);
    attempt.seconds = (Date.now() - t0) / 1000;
    return null;
  }
  const keepGoing = generator.length ? ["--", "-k", "0"] : ["--", "-k"];
  const b = await run("cmake", ["--build", buildDir, "--parallel", String(jobs), ...keepGoing]);
  attempt.seconds = (Date.now() - t0) / 1000;
  const out = join(buildDir, "Release", "vilref.node");
  if (b.code === 0 && existsSync(out)) {
    attempt.ok = true;
    attempt.c10d = /vilref: c10d Gloo on/.test(conf.output);
    attempt.nccl = /vilref: c10d NCCL on/.test(conf.output);
    return out;
  }
  attempt.stage = "compile";
  attempt.failed = [...new Set([...b.output.matchAll(/FAILED: \S*native\/(\w+)\.cc\.o/g)].map((m) => m[1]))];
  attempt.errors = firstErrors(b.output);
  attempt.log = b.output.slice(-6000);
  return undefined;
}

// ---- g++, one line per file ----
function cudaIncludes() {
  const dirs = [process.env.CUDA_HOME, "/usr/local/cuda"].filter(Boolean).map((d) => join(d, "include"));
  // the nvidia-* wheels beside a pip torch hold the CUDA headers too (site-packages/nvidia/*/include)
  const nvidia = join(dirname(torch.root), "nvidia");
  if (existsSync(nvidia)) for (const d of readdirSync(nvidia)) dirs.push(join(nvidia, d, "include"));
  return dirs.filter((d) => existsSync(join(d, "cuda_runtime_api.h")) || existsSync(join(d, "nccl.h")));
}

/** The compile flags every file gets (the cmake-js build's, as one g++ line). */
function gxxBaseFlags(cuda, inc) {
  return [
    "-O3",
    "-DNDEBUG",
    "-fPIC",
    "-std=c++17",
    "-fvisibility=hidden",
    "-Wall",
    "-Wno-unused-parameter",
    `-D_GLIBCXX_USE_CXX11_ABI=${torch.cxx11Abi}`,
    "-DBUILDING_NODE_EXTENSION",
    "-DNAPI_VERSION=8",
    "-DNODE_ADDON_API_CPP_EXCEPTIONS",
    "-DNODE_ADDON_API_CPP_EXCEPTIONS_ALL",
    "-DNODE_ADDON_API_DISABLE_DEPRECATED",
    ...(cuda ? ["-DVILREF_WITH_CUDA"] : []),
    ...inc.map((d) => `-I${d}`),
  ];
}

/**
 * Compiles one source file to objDir/<name>.o; resolves { name, obj, code, output, dist }. A retry
 * also drops VILREF_WITH_CUDA (runtime.cc's device properties, profile.cc's Kineto), in case the
 * CUDA headers those need were not found: CUDA itself still works through LibTorch.
 */
async function gxxCompile(ctx, src, conservative, noDist, retry = false) {
  const name = basename(src, ".cc");
  const extra = [];
  if (name === "runtime") extra.push(`-DVILREF_SOURCE_HASH="${hash}"`, `-DVILREF_FLAVOUR="${torch.flavour}"`);
  if (name === "dist" && !noDist && ctx.glooInc && torch.c10dGloo) {
    extra.push("-DUSE_C10D_GLOO", "-DUSE_DISTRIBUTED", `-I${ctx.glooInc}`);
    if (ctx.cuda && ctx.ncclInc) extra.push("-DUSE_C10D_NCCL");
  }
  if (conservative) extra.push("-DVILREF_CONSERVATIVE");
  const obj = join(ctx.objDir, `${name}.o`);
  const flagsHere = retry ? ctx.base.filter((f) => f !== "-DVILREF_WITH_CUDA") : ctx.base;
  const argv = [...flagsHere, ...extra, "-c", join(root, src), "-o", obj];
  const r = ccache ? await run(ccache, ["g++", ...argv]) : await run("g++", argv);
  return { name, obj, ...r, dist: extra.includes("-DUSE_C10D_GLOO") };
}

/** Compiles every source, `jobs` at a time; a file that fails is retried once with the fallbacks. */
async function gxxCompileAll(ctx, attempt, flags) {
  const results = [];
  const queue = sourceFiles(root).filter((f) => f.endsWith(".cc"));
  await Promise.all(
    Array.from({ length: Math.max(1, jobs) }, async () => {
      for (let src = queue.shift(); src; src = queue.shift()) {
        let r = await gxxCompile(ctx, src, flags.conservative, flags.noDist);
        if (r.code !== 0) {
          attempt.errors.push(...firstErrors(r.output, 8).map((l) => `${r.name}: ${l}`));
          r = await gxxCompile(ctx, src, true, r.name === "dist", true);
          attempt.retried.push({ file: r.name, ok: r.code === 0 });
        }
        results.push({ src, ...r });
      }
    }),
  );
  return results;
}

/** Links the objects into objDir/vilref.node; resolves its path, or undefined (the attempt says why). */
async function gxxLink(objDir, results, attempt) {
  const out = join(objDir, "vilref.node");
  const libs = torch.libs.map((l) => `-l${l}`);
  const link = await run("g++", [
    "-shared",
    "-o",
    out,
    ...results.map((r) => r.obj),
    `-L${torch.libDir}`,
    // libtorch_cuda registers the CUDA kernels when it loads: keep it linked though nothing names it
    "-Wl,--no-as-needed",
    ...libs,
    "-Wl,--as-needed",
    `-Wl,-rpath,$ORIGIN/libtorch-${torch.flavour}`,
    `-Wl,-rpath,${torch.libDir}`,
  ]);
  if (link.code !== 0) {
    attempt.stage = "link";
    attempt.errors.push(...firstErrors(link.output));
    attempt.log = link.output.slice(-6000);
    return undefined;
  }
  return out;
}

async function gxxAttempt(flags) {
  const t0 = Date.now();
  const objDir = join(buildDir, "gxx");
  mkdirSync(objDir, { recursive: true });
  const cuda = torch.cuda !== null;
  const inc = [...headers, ...torch.includeDirs, ...(cuda ? cudaIncludes() : [])];
  const glooInc = [torch.includeDirs[0], "/usr/include", "/usr/local/include"].find((d) =>
    existsSync(join(d, "gloo/config.h")),
  );
  const ncclInc = inc.find((d) => existsSync(join(d, "nccl.h")));
  const ctx = { base: gxxBaseFlags(cuda, inc), objDir, glooInc, ncclInc, cuda };
  const attempt = { builder: "g++", ...flags, seconds: 0, ok: false, failed: [], errors: [], retried: [] };
  report.attempts.push(attempt);
  const results = await gxxCompileAll(ctx, attempt, flags);
  attempt.failed = results.filter((r) => r.code !== 0).map((r) => r.name);
  attempt.c10d = results.some((r) => r.name === "dist" && r.code === 0 && r.dist);
  if (attempt.failed.length) {
    attempt.log = results
      .filter((r) => r.code !== 0)
      .map((r) => r.output.slice(-3000))
      .join("\n");
    attempt.seconds = (Date.now() - t0) / 1000;
    return undefined;
  }
  const out = await gxxLink(objDir, results, attempt);
  attempt.seconds = (Date.now() - t0) / 1000;
  if (out) attempt.ok = true;
  return out;
}

async function build() {
  if (mode !== "gxx") {
    let flags = { conservative: false, noDist: false };
    let out = await cmakeAttempt(flags);
    if (out) return { out, flags, builder: "cmake" };
    const last = report.attempts.at(-1);
    if (out === undefined) {
      // compiled but some files failed: retry once with the fallbacks those files need
      flags = {
        conservative: last.failed.some((f) => f !== "dist") || last.failed.length === 0,
        noDist: last.failed.includes("dist"),
      };
      out = await cmakeAttempt(flags);
      if (out) return { out, flags, builder: "cmake" };
    }
    if (mode === "cmake") return null;
    log("CMake did not give an addon; trying g++ file by file");
  }
  const flags = { conservative: false, noDist: false };
  const out = await gxxAttempt(flags);
  return out ? { out, flags, builder: "g++" } : null;
}

const built = await build();
report.seconds = (Date.now() - started) / 1000;
if (built) {
  const dir = prebuildDir(root);
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, prebuildName(torch.flavour));
  rmSync(dest, { force: true });
  copyFileSync(built.out, dest);
  const last = report.attempts.at(-1);
  const retried = last.retried?.map((r) => r.file) ?? [];
  const conservative = built.flags.conservative || retried.some((f) => f !== "dist");
  const distOff = built.flags.noDist || retried.includes("dist") || !last.c10d;
  const stamp = {
    ...makeStamp(torch, hash, built.builder === "cmake" ? "cmake" : "g++"),
    // the loader compares this with what the LibTorch here could compile; a fallback build without
    // c10d still loads for this run, and the report says not to commit it
    c10dGloo: torch.c10dGloo,
    built: { c10d: !distOff, conservative, nccl: !!last.nccl },
  };
  writeStamp(dest, stamp);
  linkLibTorch(dest, torch);
  Object.assign(report, {
    ok: true,
    builder: built.builder,
    addon: dest,
    bytes: statSync(dest).size,
    c10d: !distOff,
    conservative,
    committable: !conservative && (!torch.c10dGloo || !distOff),
  });
  log(`${built.builder}: ${dest} (${(report.bytes / 1048576).toFixed(1)} MiB) in ${report.seconds.toFixed(0)} s`);
} else {
  log(
    "no addon: " +
      JSON.stringify(
        report.attempts.map((a) => ({ builder: a.builder, failed: a.failed, errors: a.errors.slice(0, 4) })),
      ),
  );
}
const text = JSON.stringify(report, null, 2) + "\n";
if (reportFile) writeFileSync(reportFile, text);
else process.stdout.write(text);
process.exit(built ? 0 : 1);
