#!/usr/bin/env node
// `npm run format:check`: fails when a file differs from what the formatters write — prettier for
// TypeScript/JavaScript (.prettierrc.json, 120 columns), clang-format for native/ (.clang-format).
// `npm run format` rewrites them. CI runs this check (.ci/run).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const write = process.argv.includes("--write");
let failed = false;

const prettier = join(root, "node_modules", "prettier", "bin", "prettier.cjs");
const p = spawnSync(
  process.execPath,
  [prettier, write ? "--write" : "--check", "--log-level", "warn", "**/*.{ts,js,mjs}"],
  {
    cwd: root,
    stdio: "inherit",
  },
);
if (p.status !== 0) failed = true;

const natives = readdirSync(join(root, "native"))
  .filter((f) => /\.(cc|h)$/.test(f))
  .map((f) => join("native", f));
const c = spawnSync("clang-format", [write ? "-i" : "--dry-run", ...(write ? [] : ["--Werror"]), ...natives], {
  cwd: root,
  stdio: "inherit",
});
if (c.error) {
  console.error("clang-format is not installed (Debian: apt-get install clang-format)");
  failed = true;
} else if (c.status !== 0) failed = true;

// Function length (≤ 80 lines in lib/, bin/, scripts/, native/): scripts/check-size.mjs.
if (!write && spawnSync(process.execPath, [join(root, "scripts", "check-size.mjs")], { stdio: "inherit" }).status !== 0)
  failed = true;

if (failed && !write) console.error("format check failed: run `npm run format` and commit the result");
process.exit(failed ? 1 : 0);
