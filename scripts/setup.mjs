#!/usr/bin/env node
// Brings vilref to a working state on this machine; `npm test`, `npm run demo` and `npm install`
// run it first, so a fresh clone needs no other step.
//   1. npm install, when node_modules is missing or older than package.json / package-lock.json;
//   2. LibTorch: LIBTORCH, a Python torch, or the system's; on Debian as root with none, installs
//      libtorch-dev and libopenblas0-openmp from apt (VILREF_NO_APT=1 forbids), and libgloo-dev
//      (the headers c10d's Gloo process groups compile against: multi-process pre-training) and
//      libturbojpeg0-dev (the data loader's native JPEG path; not when installed as a dependency);
//      elsewhere says what to install. Nothing else is ever downloaded;
//   3. compiles the TypeScript in lib/ to dist/ when it is out of date;
//   4. the addon: a prebuild when flavour and source hash match, else a cmake-js build.
// Flags: --install-phase (run by npm's install hook: skips step 1 and never fails the install),
//        --rebuild (rebuild the addon even when current).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const installPhase = args.has("--install-phase");
const log = (m) => process.stderr.write(`vilref setup: ${m}\n`);

function run(cmd, argv, opts = {}) {
  log(`$ ${cmd} ${argv.join(" ")}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ["ignore", process.stderr, process.stderr], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (exit ${r.status ?? r.signal})`);
}

function fail(message) {
  if (installPhase) {
    log(`WARNING: ${message}`);
    log("vilref's tensor features will not work until this is fixed; then run `npm run setup` in the vilref package.");
    process.exit(0);
  }
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
if (!installPhase) {
  const want = depsHash();
  const have = existsSync(depsMarker) ? readFileSync(depsMarker, "utf8") : "";
  if (have !== want) {
    run("npm", ["install", "--no-audit", "--no-fund"]);
    writeFileSync(depsMarker, depsHash());
  }
}

// ---- 2. LibTorch and the tools to build against it ----
const { isDebian, locateLibTorch, missingMessage } = await import("../lib/build/libtorch.js");
const isRoot = process.getuid?.() === 0;
const mayApt = isDebian() && isRoot && process.env.VILREF_NO_APT !== "1";
let aptUpdated = false;
function aptInstall(packages) {
  if (!aptUpdated) run("apt-get", ["update", "-qq"]);
  aptUpdated = true;
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}
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
if (!located.torch && mayApt) {
  log("no LibTorch found; installing Debian's (libtorch-dev, libopenblas0-openmp)");
  aptInstall(["libtorch-dev", "libopenblas0-openmp"]);
  located = locateLibTorch();
}
const torch = located.torch;
if (!torch) fail(missingMessage(located.tried));
if (torch.source === "system" && isDebian() && !debInstalled("libopenblas0-openmp")) {
  // Without it LibTorch runs on the reference BLAS (up to 60x slower) or fights a pthread one.
  if (mayApt) aptInstall(["libopenblas0-openmp"]);
  else
    log("WARNING: libopenblas0-openmp is not installed; LibTorch will be slow (apt-get install libopenblas0-openmp)");
}
if (torch.source === "system" && isDebian() && !torch.c10dGloo) {
  // Multi-process pre-training (c10d Gloo) compiles against gloo's headers; LibTorch has the rest.
  if (mayApt) {
    aptInstall(["libgloo-dev"]);
    located = locateLibTorch();
  } else
    log(
      "WARNING: libgloo-dev is not installed; multi-process pre-training (vilref pretrain --nproc) will be unavailable (apt-get install libgloo-dev)",
    );
}
// Installed as another package's dependency (npm runs the install hook inside its node_modules):
// optional system packages are then left to the user, with a warning.
const asDependency =
  installPhase &&
  (root.split(sep).includes("node_modules") || (!!process.env.INIT_CWD && resolve(process.env.INIT_CWD) !== root));
if (isDebian() && !debInstalled("libturbojpeg0-dev")) {
  // The data loader's JPEG fast path (native/jpeg.cc) compiles against TurboJPEG; without it the
  // addon still builds and JPEGs decode through sharp (`vilref doctor` says so). Installed by the
  // repository's own set-up only, not when vilref is installed as a dependency.
  if (mayApt && !asDependency) aptInstall(["libturbojpeg0-dev"]);
  else
    log(
      "WARNING: libturbojpeg0-dev is not installed; JPEGs will decode through sharp, about 2x slower (apt-get install libturbojpeg0-dev, then npm run build:native)",
    );
}
const torchNow = located.torch ?? torch;
log(
  `LibTorch ${torchNow.version} ${torchNow.cuda ? `CUDA ${torchNow.cuda}` : "CPU"} from ${torchNow.source} (${torchNow.libDir}); c10d Gloo ${torchNow.c10dGloo ? "yes" : "no"}`,
);

// ---- 3. TypeScript → dist/ ----
function newest(dir, filter) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, filter));
    else if (filter(p)) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const distStamp = join(root, "dist", ".built");
const srcTime = Math.max(
  newest(join(root, "lib"), () => true),
  statSync(join(root, "tsconfig.json")).mtimeMs,
  statSync(join(root, "tsconfig.build.json")).mtimeMs,
);
if (existsSync(tsc) && (!existsSync(distStamp) || statSync(distStamp).mtimeMs < srcTime)) {
  rmSync(join(root, "dist"), { recursive: true, force: true });
  run(process.execPath, [tsc, "-p", "tsconfig.build.json"]);
  // Data files (rules, presets, prompts) travel with the code.
  cpSync(join(root, "lib"), join(root, "dist"), {
    recursive: true,
    filter: (src) => statSync(src).isDirectory() || src.endsWith(".json"),
  });
  writeFileSync(distStamp, new Date().toISOString());
} else if (!existsSync(join(root, "dist", "index.js"))) {
  fail("dist/ is missing and TypeScript is not installed to build it (run npm install in the vilref package)");
}

// ---- 4. the addon ----
const { buildOutput, ensureAddon, missingBuildTools, stampPath } = await import("../lib/build/addon.js");
if (args.has("--rebuild")) rmSync(stampPath(buildOutput(root)), { force: true });
const route = { log, prebuilds: !args.has("--rebuild") };
let addon;
try {
  addon = ensureAddon(root, torchNow, route);
} catch (e) {
  if (!(missingBuildTools() && mayApt)) fail(e.message);
  aptInstall(["cmake", "make", "g++"]);
  try {
    addon = ensureAddon(root, torchNow, route);
  } catch (again) {
    fail(again.message);
  }
}
for (const r of addon.rejected) log(`prebuild ${relative(root, r.path)} not used: ${r.reason}`);
log(`addon: ${addon.route} ${relative(root, addon.path)} (sources ${addon.hash}, ${torchNow.flavour})`);
log("ready");
