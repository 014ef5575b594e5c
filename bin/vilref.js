#!/usr/bin/env node
// The vilref command. It runs the compiled TypeScript in dist/ (shipped in the package; in a
// checkout, made by `npm run setup`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  console.error("vilref: dist/ is missing; in a checkout of vilref, run `npm run setup` first.");
  process.exit(1);
}
const { main } = await import(entry.href);
const code = await main(process.argv);
if (code) process.exitCode = code;
