/**
 * `vilref pretrain CONFIG [--resume] [--nproc N] [--timeout S]` and `vilref pretrain --demo`.
 * With --nproc N it starts N workers on this machine and supervises them; a process started with
 * the torchrun environment contract (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT, LOCAL_RANK) joins
 * that run as one worker.
 */
import path from "node:path";
import type { Command } from "commander";
import { backendFor, initProcessGroup, isDistWorker, readDistEnv } from "../train/dist.js";
import type { ProcessGroup } from "../train/dist.js";
import { launch } from "../train/launch.js";
import { formatDuration } from "../embed/progress.js";
import { loadConfig } from "../train/config.js";
import { prepareDemo } from "../train/demo.js";
import { pretrain } from "../train/pretrain.js";
import type { EvalMetrics, PretrainResult, ProgressEvent } from "../train/pretrain.js";

function printEval(e: EvalMetrics, out: NodeJS.WritableStream = process.stdout): void {
  const rows = Object.entries(e.auc).map(([id, auc]) => {
    const [p, n] = e.counts[id as keyof typeof e.counts] ?? [0, 0];
    return `  ${id.padEnd(24)} ${auc.toFixed(3)}  (vs 0.5: ${auc >= 0.5 ? "+" : ""}${(auc - 0.5).toFixed(3)})  ${p}+/${n}-`;
  });
  out.write(
    `zero-shot AUC at step ${e.step} on ${e.samples} held-out pairs:\n${rows.join("\n")}\n  ${"mean".padEnd(24)} ${e.meanAuc.toFixed(3)}\n`,
  );
  const r = (x: Record<string, number>) =>
    Object.entries(x)
      .map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`)
      .join(", ");
  out.write(`retrieval image→text: ${r(e.imageToText)}; text→image: ${r(e.textToImage)}\n`);
}

function reporter(): (e: ProgressEvent) => void {
  const err = process.stderr;
  return (e) => {
    if (e.kind === "start")
      err.write(
        `pretrain: ${e.trainSamples} training pairs, ${e.heldOutSamples} held out, ${e.totalSteps} steps${e.resumedFrom ? `, resuming from ${e.resumedFrom} (step ${e.step})` : ""}\n`,
      );
    else if (e.kind === "step") {
      const pct = Math.floor((30 * e.step) / e.totalSteps);
      const line = `[${"#".repeat(pct)}${".".repeat(30 - pct)}] ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imagesPerSecond.toFixed(0)} img/s ETA ${formatDuration(e.etaSeconds)}`;
      if (err.isTTY) err.write(`\r${line}`);
      else if (e.step % 10 === 0 || e.step === e.totalSteps || e.skipped) err.write(line + "\n");
    } else if (e.kind === "eval") {
      if (process.stderr.isTTY) err.write("\n");
      printEval(e);
    } else if (e.kind === "checkpoint") err.write(`${err.isTTY ? "\n" : ""}checkpoint ${e.path}\n`);
    else if (e.kind === "notice") err.write(`${err.isTTY ? "\n" : ""}pretrain: ${e.message}\n`);
    else if (e.kind === "done") err.write(`done: step ${e.step} in ${formatDuration(e.seconds)}\n`);
  };
}

export interface DemoCommandOptions {
  dir: string;
  loss?: string;
  steps?: string;
}

/** The pre-training demo: synthetic data, WSCL (or CLIP) pre-training on the CPU, the zero-shot table and the curves PNG. */
export async function runPretrainDemo(opts: DemoCommandOptions): Promise<PretrainResult> {
  if (opts.loss !== undefined && opts.loss !== "wscl" && opts.loss !== "clip")
    throw new Error(`--loss: expected wscl or clip, got ${opts.loss}`);
  const steps = opts.steps === undefined ? undefined : Number(opts.steps);
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1))
    throw new Error(`--steps: expected a positive integer, got ${opts.steps}`);
  process.stderr.write(`demo: synthetic fundus data in ${path.resolve(opts.dir)}\n`);
  let lastData = -1;
  const config = await prepareDemo({
    dir: opts.dir,
    ...(opts.loss ? { loss: opts.loss as "wscl" | "clip" } : {}),
    ...(steps !== undefined ? { steps } : {}),
    onData: (done, n) => {
      const pct = Math.floor((100 * done) / n);
      if (pct !== lastData && (pct % 25 === 0 || done === n))
        process.stderr.write(`  synthetic images: ${done}/${n}\n`);
      lastData = pct;
    },
  });
  // the demo's folder holds the demo's own run: a new demo replaces it
  const r = await pretrain(config, { onProgress: reporter(), overwrite: true });
  const e = r.lastEval;
  if (e) {
    const above = Object.values(e.auc).filter((a) => a > 0.5).length;
    console.log(
      `demo (${config.loss}): mean zero-shot AUC ${e.meanAuc.toFixed(3)} on ${e.samples} held-out pairs; ${above} of ${Object.keys(e.auc).length} labels above chance`,
    );
  }
  console.log(
    `model: ${r.output}/final/model.safetensors\ncurves: ${r.output}/curves.png\nmetrics: ${r.output}/metrics.jsonl\ntime: ${formatDuration(r.seconds)}`,
  );
  return r;
}

export function register(program: Command): void {
  program
    .command("pretrain")
    .description(
      "pre-train ViLReF (WSCL, momentum queues) from one JSON experiment config; --demo runs the synthetic demo",
    )
    .argument("[config]", "experiment config JSON (see lib/train/config.ts)")
    .option("--resume", "continue from the latest checkpoint in the config's output folder")
    .option("--overwrite", "replace the run the config's output folder holds (otherwise such a folder is refused)")
    .option("--demo", "make a synthetic set (1,500 + 300 held-out pairs) and pre-train a small model on it")
    .option("--demo-dir <dir>", "folder of the demo's data and run", "vilref-demo")
    .option("--loss <loss>", "demo only: wscl (default) or clip")
    .option(
      "--nproc <n>",
      "start N worker processes on this machine (Gloo on the CPU, NCCL on CUDA) and supervise them",
    )
    .option(
      "--timeout <seconds>",
      "multi-process: how long a collective waits for the other ranks (default: the config's dist.timeoutSeconds, 300)",
    )
    .action(
      async (
        file: string | undefined,
        opts: {
          resume?: boolean;
          overwrite?: boolean;
          demo?: boolean;
          demoDir: string;
          loss?: string;
          nproc?: string;
          timeout?: string;
        },
      ) => {
        const timeout = opts.timeout === undefined ? undefined : Number(opts.timeout);
        if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0))
          throw new Error(`--timeout: expected a positive number of seconds, got ${opts.timeout}`);
        if (opts.nproc !== undefined && !isDistWorker()) {
          const n = Number(opts.nproc);
          if (!Number.isInteger(n) || n < 1) throw new Error(`--nproc: expected a positive integer, got ${opts.nproc}`);
          if (opts.demo) throw new Error("--nproc: not with --demo; give a config file");
          if (!file) throw new Error("pretrain: give a config file");
          loadConfig(file); // fail here, once, rather than in every worker
          const self = process.argv[1]!;
          const argv = [
            ...process.execArgv,
            self,
            "pretrain",
            file,
            ...(opts.resume ? ["--resume"] : []),
            ...(opts.overwrite ? ["--overwrite"] : []),
            ...(opts.timeout !== undefined ? ["--timeout", opts.timeout] : []),
          ];
          process.stderr.write(`pretrain: starting ${n} worker processes\n`);
          const r = await launch({ nproc: n, command: [process.execPath, ...argv] });
          if (r.code !== 0)
            throw new Error(`pretrain --nproc ${n}: ${r.message ?? "a worker failed"}; the other workers were stopped`);
          return;
        }
        if (opts.demo && !isDistWorker()) {
          await runPretrainDemo({ dir: opts.demoDir, ...(opts.loss !== undefined ? { loss: opts.loss } : {}) });
          return;
        }
        let processGroup: ProcessGroup | undefined;
        let config;
        if (isDistWorker()) {
          if (opts.demo || !file) throw new Error("pretrain: a distributed worker needs a config file (not --demo)");
          const env = readDistEnv();
          const full = loadConfig(file);
          if (full.device === "cuda") full.device = `cuda:${env.localRank}`;
          const backend = full.dist.backend === "auto" ? backendFor(full.device) : full.dist.backend;
          processGroup = await initProcessGroup({
            ...env,
            backend,
            timeoutMs: 1000 * (timeout ?? full.dist.timeoutSeconds),
          });
          config = full;
        } else {
          if (!file) throw new Error("pretrain: give a config file (or --demo)");
          config = loadConfig(file);
        }
        const lead = (processGroup?.rank ?? 0) === 0;
        const r = await pretrain(config, {
          ...(lead ? { onProgress: reporter() } : {}),
          ...(opts.resume ? { resume: true } : {}),
          ...(opts.overwrite ? { overwrite: true } : {}),
          ...(processGroup ? { processGroup } : {}),
        });
        if (lead)
          console.log(
            `model: ${r.output}/final/model.safetensors; curves: ${r.output}/curves.png; metrics: ${r.output}/metrics.jsonl; ${formatDuration(r.seconds)}`,
          );
      },
    );
}
