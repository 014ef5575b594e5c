#!/usr/bin/env node
// Lists the node_modules folders (relative to the repository root) that the GPU run needs, one a
// line: the package's runtime dependencies without the build tools (the GPU run builds with cmake
// or g++, never cmake-js or node-gyp), the test runner (ava, tsx) and the Node-API headers, each
// with its own dependencies, resolved the way Node resolves them (nested node_modules first).
// Usage: node scripts/gpu/closure.mjs [ROOT]
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "../.."));
const BUILD_ONLY = new Set(["cmake-js", "node-gyp", "prebuildify"]);
const EXTRA = ["ava", "tsx", "node-api-headers"];

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const wanted = [...Object.keys(pkg.dependencies ?? {}).filter((d) => !BUILD_ONLY.has(d)), ...EXTRA];

function resolvePackage(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir || dir === dirname(root)) return null;
  }
}

const seen = new Set();
const missing = [];
function walk(name, from, optional) {
  const dir = resolvePackage(name, from);
  if (!dir) {
    if (!optional) missing.push(`${name} (needed from ${relative(root, from) || "."})`);
    return;
  }
  if (seen.has(dir)) return;
  seen.add(dir);
  const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  for (const d of Object.keys(pj.dependencies ?? {})) walk(d, dir, false);
  // optional dependencies are platform packages (sharp's libvips, esbuild's binary): those installed here
  for (const d of Object.keys(pj.optionalDependencies ?? {})) walk(d, dir, true);
}
for (const name of wanted) walk(name, root, false);
if (missing.length) {
  console.error(`closure: not installed: ${missing.join(", ")} (run npm install)`);
  process.exit(1);
}
// a folder inside another listed folder travels with it
const dirs = [...seen].map((d) => relative(root, d)).sort();
const top = dirs.filter((d) => !dirs.some((o) => o !== d && d.startsWith(`${o}/`)));
console.log(top.join("\n"));
