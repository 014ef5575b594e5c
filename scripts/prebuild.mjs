#!/usr/bin/env node
// `npm run prebuild [-- --out DIR]`: builds prebuilds/<platform>-<arch>/vilref.<flavour>.napi.node
// with prebuildify and node-gyp (binding.gyp) against the LibTorch found here, and stamps it
// with the flavour and the hash of native/. The loader uses it only where both match.
import { cpSync, existsSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { makeStamp, packageRoot, prebuildName, sourceHash, writeStamp } from "../lib/build/addon.js";
import { requireLibTorch } from "../lib/build/libtorch.js";

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const out = resolve(outIndex >= 0 ? (args[outIndex + 1] ?? ".") : packageRoot);
const root = resolve(args.includes("--root") ? args[args.indexOf("--root") + 1] : packageRoot);

const torch = requireLibTorch();
const hash = sourceHash(root);

// node-gyp runs in a staging copy so its `rebuild` cannot touch the cmake-js build in build/.
const stage = mkdtempSync(join(tmpdir(), "vilref-prebuild-"));
try {
  for (const p of ["binding.gyp", "package.json", "native", "lib/build"])
    cpSync(join(root, p), join(stage, p), { recursive: true });
  symlinkSync(join(packageRoot, "node_modules"), join(stage, "node_modules"));

  // Node's own headers, so that node-gyp downloads nothing.
  const nodeDir = [process.env.npm_config_nodedir, resolve(dirname(process.execPath), "..")].find(
    (d) => d && existsSync(join(d, "include/node/node_api.h")),
  );
  const env = {
    ...process.env,
    JOBS: String(availableParallelism()),
    ...(nodeDir ? { npm_config_nodedir: nodeDir } : {}),
  };
  if (!nodeDir)
    console.error("vilref prebuild: Node's headers not found beside node; node-gyp may try to download them");

  const prebuildify = require("prebuildify");
  const nodeGyp = join(packageRoot, "node_modules/.bin/node-gyp");
  console.error(`vilref prebuild: ${torch.flavour} (${torch.source}: ${torch.libDir}), sources ${hash}`);
  Object.assign(process.env, env);
  await new Promise((done, fail) =>
    prebuildify(
      {
        cwd: stage,
        out: stage,
        napi: true,
        strip: true,
        name: "vilref",
        nodeGyp,
        targets: [{ runtime: "node", target: process.versions.node }],
      },
      (err) => (err ? fail(err) : done(undefined)),
    ),
  );
  const built = join(stage, "prebuilds", `${process.platform}-${process.arch}`);
  const file = readdirSync(built).find((f) => f.endsWith(".node"));
  if (!file) throw new Error(`prebuildify left no addon in ${built}`);
  const destDir = join(out, "prebuilds", `${process.platform}-${process.arch}`);
  cpSync(built, destDir, { recursive: true });
  const dest = join(destDir, prebuildName(torch.flavour));
  renameSync(join(destDir, file), dest);
  writeStamp(dest, makeStamp(torch, hash, "node-gyp"));
  console.error(`vilref prebuild: wrote ${dest}`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
