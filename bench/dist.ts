/**
 * Data-parallel step time on the CPU (c10d Gloo): one process with the global batch (all cores)
 * against 2 processes with half of it each (the cores split between them), the tiny-vit preset,
 * WSCL with a queue. Prints the median step time of each and, for 2 processes, the time in
 * all-gather (features, labels, momentum features) and all-reduce (gradients) and their share.
 * Run: npx tsx bench/dist.ts [--batch 32] [--steps 12] [--warmup 2]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../lib/train/launch.js";
import type { StepsOutput } from "../test/helpers/dist-worker.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : dflt);
const batch = Number(opt("--batch", "32"));
const steps = Number(opt("--steps", "12"));
const warmup = Number(opt("--warmup", "2"));
const worker = fileURLToPath(new URL("../test/helpers/dist-worker.ts", import.meta.url));
const cores = availableParallelism();

function run(world: number): Promise<StepsOutput> {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-bench-dist-"));
  const out = path.join(dir, "out.json");
  const spec = JSON.stringify({ mode: "steps", steps: warmup + steps, batch, out, timeoutMs: 120000 });
  return (async () => {
    const port = await freePort();
    const children = Array.from({ length: world }, (_, rank) => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        VILREF_THREADS: String(Math.max(1, Math.floor(cores / world))),
        VILREF_TEST_SPEC: spec,
      };
      if (world > 1)
        Object.assign(env, {
          MASTER_ADDR: "127.0.0.1",
          MASTER_PORT: String(port),
          WORLD_SIZE: String(world),
          RANK: String(rank),
          LOCAL_RANK: String(rank),
        });
      const c = spawn(process.execPath, ["--import=tsx", worker], { env, stdio: ["ignore", "inherit", "inherit"] });
      return new Promise<number | null>((resolve) => c.on("exit", (code) => resolve(code)));
    });
    const codes = await Promise.all(children);
    if (codes.some((c) => c !== 0)) throw new Error(`a worker failed: exit codes ${codes.join(", ")}`);
    return JSON.parse(readFileSync(out, "utf8")) as StepsOutput;
  })();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (s: number) => (1000 * s).toFixed(1);

const one = await run(1);
const two = await run(2);
const t1 = median(one.stepSeconds.slice(warmup));
const t2 = median(two.stepSeconds.slice(warmup));
const g = median(two.allGatherSeconds.slice(warmup));
const r = median(two.allReduceSeconds.slice(warmup));
console.log(
  `tiny-vit, WSCL + queue 12, global batch ${batch}, ${steps} timed steps after ${warmup} warm-up; ` +
    `${cores} cores (${cpus()[0]?.model ?? "?"})`,
);
console.log("| processes | threads each | median step ms | all-gather ms | all-reduce ms | collective share |");
console.log("|---:|---:|---:|---:|---:|---:|");
console.log(`| 1 | ${cores} | ${ms(t1)} | – | – | – |`);
console.log(
  `| 2 | ${Math.max(1, Math.floor(cores / 2))} | ${ms(t2)} | ${ms(g)} | ${ms(r)} | ` +
    `${((100 * (g + r)) / t2).toFixed(1)}% |`,
);
console.log(
  `speed-up 2 vs 1: ${(t1 / t2).toFixed(2)}×; loss after the last step: ` +
    `1 proc ${one.losses.at(-1)!.toFixed(6)}, 2 procs ${two.losses.at(-1)!.toFixed(6)}`,
);
