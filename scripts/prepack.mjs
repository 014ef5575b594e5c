#!/usr/bin/env node
// npm runs this before `npm pack` and `npm publish`: the package ships what installing must not
// have to make. 1. dist/ (compiled JavaScript, .d.ts and declaration maps, the data files), so that
// installing never runs tsc; 2. the prebuild for this machine's LibTorch (`npm run prebuild`), so
// that a matching LibTorch needs no compiler. Prebuilds made elsewhere (CUDA ones, from a GPU
// machine) may be copied into prebuilds/ before packing; any that do not fit native/ stop the pack.
import { spawnSync } from "node:child_process";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { compileDist } from "./dist.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const log = (m) => process.stderr.write(`vilref prepack: ${m}\n`);

try {
  log(`dist/: ${compileDist(root, { log })}`);
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
const prebuild = spawnSync(process.execPath, [join(root, "scripts/prebuild.mjs")], { cwd: root, stdio: "inherit" });
if (prebuild.status !== 0) process.exit(prebuild.status ?? 1);
const { stalePrebuilds } = await import("../lib/build/addon.js");
const stale = stalePrebuilds(root);
if (stale.length) {
  for (const s of stale) log(`${relative(root, s.path)}: ${s.reason}`);
  log("these prebuilds do not fit native/: rebuild them on their machines (npm run prebuild) or delete them");
  process.exit(1);
}
