#!/usr/bin/env node
// Brings a checkout of vilref to a working state on this machine; `npm test` and `npm run demo`
// run it first, so a fresh clone needs no other step. (An installed package never runs it: it
// ships dist/ and a prebuild, and the loader builds on first use when no prebuild fits.)
//   1. npm install, when node_modules is missing or older than package.json / package-lock.json;
//   2. system packages, on Debian as root (VILREF_NO_APT=1 forbids), in one apt-get call:
//      libtorch-dev and libopenblas0-openmp when there is no LibTorch, libgloo-dev (the headers
//      c10d's Gloo process groups compile against: multi-process pre-training), cmake, make and
//      g++ when missing, zlib1g-dev (inflating .pt archives), libturbojpeg0-dev (the data
//      loader's native JPEG path), and ccache (a compiler cache: rebuilds, other checkouts and the tests'
//      scratch builds reuse unchanged objects). Elsewhere it says what to install. Nothing else is
//      ever downloaded;
//   3. compiles the TypeScript in lib/ to dist/ when it is out of date (scripts/dist.mjs);
//   4. the addon: the cmake-js build in build/ when current, else a matching prebuild, else a build.
// Flags: --rebuild (rebuild the addon even when current).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { compileDist } from "./dist.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const log = (m) => process.stderr.write(`vilref setup: ${m}\n`);

function run(cmd, argv, opts = {}) {
  log(`$ ${cmd} ${argv.join(" ")}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ["ignore", process.stderr, process.stderr], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (exit ${r.status ?? r.signal})`);
}

function fail(message) {
  log(message);
  process.exit(1);
}

// ---- 1. node_modules ----
function depsHash() {
  const h = createHash("sha256");
  for (const f of ["package.json", "package-lock.json"])
    if (existsSync(join(root, f))) h.update(readFileSync(join(root, f)));
  return h.digest("hex");
}
const depsMarker = join(root, "node_modules", ".vilref-deps");
const want = depsHash();
if (!existsSync(depsMarker) || readFileSync(depsMarker, "utf8") !== want) {
  run("npm", ["install", "--no-audit", "--no-fund"]);
  writeFileSync(depsMarker, depsHash());
}

// ---- 2. LibTorch and the tools to build against it ----
const { isDebian, locateLibTorch, missingMessage } = await import("../lib/build/libtorch.js");
const { buildOutput, ensureAddon, missingBuildTools, stampPath } = await import("../lib/build/addon.js");
const isRoot = process.getuid?.() === 0;
const mayApt = isDebian() && isRoot && process.env.VILREF_NO_APT !== "1";
const onPath = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
function debInstalled(pkg) {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8" });
  return r.status === 0 && r.stdout.includes("install ok installed");
}

let located;
try {
  located = locateLibTorch();
} catch (e) {
  fail(e.message);
}
/** @type {string[]} what this machine lacks, as Debian packages */
const wanted = [];
const systemTorch = !located.torch || located.torch.source === "system";
if (!located.torch) wanted.push("libtorch-dev");
// Without OpenBLAS-openmp LibTorch runs on the reference BLAS (up to 60x slower) or fights a pthread one.
if (isDebian() && systemTorch && !debInstalled("libopenblas0-openmp")) wanted.push("libopenblas0-openmp");
// Multi-process pre-training (c10d Gloo) compiles against gloo's headers; LibTorch has the rest.
if (isDebian() && systemTorch && !located.torch?.c10dGloo) wanted.push("libgloo-dev");
if (missingBuildTools()) wanted.push("cmake", "make", "g++");
if (!onPath("ccache")) wanted.push("ccache");
// Deflated entries of .pt archives are inflated with zlib (native/torch_zip.cc); without it they are refused.
if (isDebian() && !existsSync("/usr/include/zlib.h")) wanted.push("zlib1g-dev");
// The data loader's JPEG fast path (native/jpeg.cc) compiles against TurboJPEG; without it the addon
// still builds and JPEGs decode through sharp (`vilref doctor` says so).
if (isDebian() && !existsSync("/usr/include/turbojpeg.h")) wanted.push("libturbojpeg0-dev");
if (wanted.length && mayApt) {
  log(`installing from Debian: ${wanted.join(" ")}`);
  run("apt-get", ["update", "-qq"]);
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...wanted], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  located = locateLibTorch();
} else if (wanted.length) {
  log(`WARNING: missing ${wanted.join(", ")}${isDebian() ? ` (apt-get install ${wanted.join(" ")})` : ""}`);
}
const torch = located.torch;
if (!torch) fail(missingMessage(located.tried));
log(
  `LibTorch ${torch.version} ${torch.cuda ? `CUDA ${torch.cuda}` : "CPU"} from ` +
    `${torch.source} (${torch.libDir}); c10d Gloo ${torch.c10dGloo ? "yes" : "no"}`,
);

// ---- 3. TypeScript → dist/ ----
try {
  compileDist(root, { log });
} catch (e) {
  fail(e.message);
}

// ---- 4. the addon ----
if (args.has("--rebuild")) rmSync(stampPath(buildOutput(root)), { force: true });
let addon;
try {
  addon = ensureAddon(root, torch, { log, prebuilds: !args.has("--rebuild") });
} catch (e) {
  fail(e.message);
}
for (const r of addon.rejected) log(`prebuild ${relative(root, r.path)} not used: ${r.reason}`);
log(`addon: ${addon.route} ${relative(root, addon.path)} (sources ${addon.hash}, ${torch.flavour})`);
log("ready");
