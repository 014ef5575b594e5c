#!/usr/bin/env node
// `npm run prebuild [-- --out DIR] [-- --root DIR]`: the prebuild for the LibTorch found here,
// prebuilds/<platform>-<arch>/vilref.<flavour>.napi.node (e.g. vilref.torch1.13.1-cpu.napi.node,
// vilref.torch2.11.0-cu130.napi.node on a machine whose python3 has a CUDA PyTorch) and its stamp
// (flavour, C++ ABI, hash of native/). It is a stripped copy of the cmake-js build in build/, brought
// up to date first: the same compile as every build, so with ccache it takes seconds when nothing
// changed. The loader uses it only where flavour, ABI and source hash match. (No npm script may be
// named `build`: npm would run this one before it.)
import { resolve } from "node:path";
import { makePrebuild, packageRoot, sourceHash } from "../lib/build/addon.js";
import { requireLibTorch } from "../lib/build/libtorch.js";

const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? resolve(args[args.indexOf(name) + 1] ?? ".") : undefined);
const root = option("--root") ?? packageRoot;
const out = option("--out") ?? root;
const log = (m) => process.stderr.write(`vilref prebuild: ${m}\n`);

try {
  const torch = requireLibTorch();
  log(`${torch.flavour} (${torch.source}: ${torch.libDir}), sources ${sourceHash(root)}`);
  log(`wrote ${makePrebuild(root, torch, { out, log })}`);
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
