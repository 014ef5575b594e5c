/**
 * The cost of the native boundary, against JavaScript baselines run in the same process:
 *  - an async call with a tiny tensor, against one event-loop turn (setImmediate) — the floor any
 *    off-loop call pays;
 *  - a 64 MiB tensor through LibTorch and back (zero-copy in and out, one clone inside), against
 *    Float32Array.prototype.slice of the same array (one memcpy in JS).
 * Run: npx tsx bench/boundary.ts   (after npm run setup)
 */
import { execSync } from "node:child_process";
import { cpus } from "node:os";
import { native } from "../lib/native.js";

const addon = native();

async function timeIt(label: string, rounds: number, body: () => Promise<unknown> | unknown): Promise<number> {
  for (let i = 0; i < Math.min(rounds, 50); i++) await body();
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) await body();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const perSecond = rounds / seconds;
  console.log(
    `  ${label.padEnd(52)} ${perSecond.toFixed(1).padStart(10)} /s   ` +
      `${((seconds / rounds) * 1e6).toFixed(1).padStart(9)} µs`,
  );
  return perSecond;
}

const tiny = { data: new Float32Array(16), shape: [16] };
const big = { data: new Float32Array(16 * 2 ** 20).fill(1.5), shape: [16 * 2 ** 20] };

console.log(
  `vilref boundary benchmark — ${new Date().toISOString()}, ${cpus()[0]?.model ?? "cpu"} × ${cpus().length}, ` +
    `commit ${execSync("git rev-parse --short HEAD").toString().trim()}`,
);
console.log("small calls");
const turn = await timeIt(
  "baseline: one event-loop turn (setImmediate)",
  20000,
  () => new Promise((r) => setImmediate(r)),
);
const call = await timeIt("vilref: async echo of 16 floats", 20000, () => addon.debug.echo(tiny));
console.log("64 MiB tensors");
const slice = await timeIt("baseline: Float32Array.slice (JS memcpy)", 40, () => big.data.slice());
const echo = await timeIt("vilref: async echo (zero-copy in/out, one clone)", 40, () => addon.debug.echo(big));
console.log("ratios (vilref / baseline throughput)");
console.log(`  small call vs event-loop turn: ${(call / turn).toFixed(2)}`);
console.log(`  64 MiB round trip vs JS copy:  ${(echo / slice).toFixed(2)}`);
