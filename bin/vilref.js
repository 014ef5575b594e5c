#!/usr/bin/env node
// The vilref command. It runs the compiled TypeScript in dist/ (shipped in the package; in a
// checkout, made by `npm run setup`).
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";

// libuv's thread pool runs image decodes (and the addon's other async calls): one thread per core
// plus two, unless set (Node's default is 4). Read when the pool starts, so set before any async I/O.
process.env.UV_THREADPOOL_SIZE ??= String(Math.min(128, availableParallelism() + 2));

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  console.error("vilref: dist/ is missing; in a checkout of vilref, run `npm run setup` first.");
  process.exit(1);
}
const { main } = await import(entry.href);
const code = await main(process.argv);
if (code) process.exitCode = code;
