/**
 * `vilref pretrain CONFIG [--resume | --overwrite] [--nproc N] [--timeout S]` and `vilref pretrain --demo`.
 * With --nproc N it starts N workers on this machine and supervises them; a process started with
 * the torchrun environment contract (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT, LOCAL_RANK) joins
 * that run as one worker.
 */
import path from "node:path";
import { Option } from "commander";
import type { Command } from "commander";
import { backendFor, initProcessGroup, isDistWorker, readDistEnv } from "../train/dist.js";
import type { ProcessGroup } from "../train/dist.js";
import { launch } from "../train/launch.js";
import type { Device } from "../model/vilref.js";
import { formatDuration, progress } from "../progress.js";
import type { Progress } from "../progress.js";
import { loadConfig, parseConfig } from "../train/config.js";
import type { PretrainConfig } from "../train/config.js";
import { prepareDemo } from "../train/demo.js";
import { pretrain } from "../train/pretrain.js";
import type { EvalMetrics, PretrainResult, ProgressEvent } from "../train/pretrain.js";
import {
  UsageError,
  device,
  examples,
  float,
  int,
  lossOption,
  progressOption,
  progressSpec,
  threadsOption,
} from "./options.js";

function printEval(e: EvalMetrics, out: NodeJS.WritableStream = process.stdout): void {
  const rows = Object.entries(e.auc).map(([id, auc]) => {
    const [p, n] = e.counts[id as keyof typeof e.counts] ?? [0, 0];
    return (
      `  ${id.padEnd(24)} ${auc.toFixed(3)}  (vs 0.5: ${auc >= 0.5 ? "+" : ""}${(auc - 0.5).toFixed(3)})  ` +
      `${p}+/${n}-`
    );
  });
  out.write(
    `zero-shot AUC at step ${e.step} on ${e.samples} held-out pairs:\n${rows.join("\n")}\n` +
      `  ${"mean".padEnd(24)} ${e.meanAuc.toFixed(3)}\n`,
  );
  const r = (x: Record<string, number>) =>
    Object.entries(x)
      .map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`)
      .join(", ");
  out.write(`retrieval image→text: ${r(e.imageToText)}; text→image: ${r(e.textToImage)}\n`);
}

/** Renders pre-training's events: one progress bar over the steps, eval tables and checkpoints between. */
function reporter(o: { progress?: boolean }): (e: ProgressEvent) => void {
  let bar: Progress = progress(false);
  let last = 0;
  return (e) => {
    if (e.kind === "start") {
      process.stderr.write(
        `pretrain: ${e.trainSamples} training pairs, ${e.heldOutSamples} held out, ` +
          `${e.totalSteps} steps${e.resumedFrom ? `, resuming from ${e.resumedFrom} (step ${e.step})` : ""}\n`,
      );
      bar = progress(progressSpec(o, { label: "pretrain", unit: "step", total: e.totalSteps, already: e.step }));
      last = e.step;
    } else if (e.kind === "step") {
      bar.status(`loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${e.imagesPerSecond.toFixed(0)} img/s`);
      bar.tick(e.step - last);
      last = e.step;
      if (e.skipped) bar.log(`pretrain: step ${e.step} skipped (non-finite loss)`);
    } else if (e.kind === "eval") {
      bar.clear();
      printEval(e);
    } else if (e.kind === "checkpoint") bar.log(`checkpoint ${e.path}`);
    else if (e.kind === "notice") bar.log(`pretrain: ${e.message}`);
    else if (e.kind === "done") {
      bar.done();
      process.stderr.write(`done: step ${e.step} in ${formatDuration(e.seconds)}\n`);
    }
  };
}

export interface DemoCommandOptions {
  dir: string;
  loss?: "wscl" | "clip";
  steps?: number;
  device?: Device;
  threads?: number;
  /** false: no progress bars (--no-progress). */
  progress?: boolean;
}

/** The pre-training demo: synthetic data, WSCL (or CLIP) pre-training on the CPU, the zero-shot
 * table and the curves PNG. */
export async function runPretrainDemo(opts: DemoCommandOptions): Promise<PretrainResult> {
  process.stderr.write(`demo: synthetic fundus data in ${path.resolve(opts.dir)}\n`);
  let data: Progress | undefined;
  const config = await prepareDemo({
    dir: opts.dir,
    ...(opts.loss ? { loss: opts.loss } : {}),
    ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
    onData: (done, n) => {
      data ??= progress(progressSpec(opts, { label: "demo: synthetic images", unit: "img", total: n }));
      data.tick(done - data.count);
      if (done === n) data.done();
    },
  });
  const r = await pretrain(
    {
      ...config,
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    },
    // the demo's folder holds the demo's own run: a new demo replaces it
    { onProgress: reporter(opts), overwrite: true },
  );
  const e = r.lastEval;
  if (e) {
    const above = Object.values(e.auc).filter((a) => a > 0.5).length;
    console.log(
      `demo (${config.loss}): mean zero-shot AUC ${e.meanAuc.toFixed(3)} on ${e.samples} held-out pairs; ` +
        `${above} of ${Object.keys(e.auc).length} labels above chance`,
    );
  }
  console.log(
    `model: ${r.output}/final/model.safetensors\ncurves: ${r.output}/curves.png\nmetrics: ` +
      `${r.output}/metrics.jsonl\ntime: ${formatDuration(r.seconds)}`,
  );
  return r;
}

interface PretrainCliOptions {
  resume?: boolean;
  overwrite?: boolean;
  demo?: boolean;
  demoDir: string;
  loss?: "wscl" | "clip";
  nproc?: number;
  timeout?: number;
  device?: Device;
  threads?: number;
  progress: boolean;
}

/** The config file with --device and --threads applied (validated again). */
function configWithOverrides(file: string, o: PretrainCliOptions): PretrainConfig {
  const config = loadConfig(file);
  if (o.device === undefined && o.threads === undefined) return config;
  return parseConfig(
    {
      ...config,
      ...(o.device !== undefined ? { device: o.device } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
    },
    { source: file },
  );
}

/** --nproc N: starts N workers running this command (without --nproc) and supervises them. */
async function launchWorkers(file: string | undefined, o: PretrainCliOptions, n: number): Promise<void> {
  if (o.demo) throw new UsageError("--nproc: not with --demo; give a config file");
  if (!file) throw new UsageError("give a config file");
  configWithOverrides(file, o); // fail here, once, rather than in every worker
  const argv = [
    ...process.execArgv,
    process.argv[1]!,
    "pretrain",
    file,
    ...(o.resume ? ["--resume"] : []),
    ...(o.overwrite ? ["--overwrite"] : []),
    ...(o.timeout !== undefined ? ["--timeout", String(o.timeout)] : []),
    ...(o.device !== undefined ? ["--device", o.device] : []),
    ...(o.threads !== undefined ? ["--threads", String(o.threads)] : []),
    ...(o.progress ? [] : ["--no-progress"]),
  ];
  process.stderr.write(`pretrain: starting ${n} worker processes\n`);
  const r = await launch({ nproc: n, command: [process.execPath, ...argv] });
  if (r.code !== 0)
    throw new Error(`pretrain --nproc ${n}: ${r.message ?? "a worker failed"}; the other workers were stopped`);
}

async function runPretrain(file: string | undefined, o: PretrainCliOptions): Promise<void> {
  if (o.nproc !== undefined && !isDistWorker()) return launchWorkers(file, o, o.nproc);
  if (o.demo && !isDistWorker()) {
    await runPretrainDemo({ dir: o.demoDir, ...o });
    return;
  }
  let processGroup: ProcessGroup | undefined;
  let config: PretrainConfig;
  if (isDistWorker()) {
    if (o.demo || !file) throw new UsageError("a distributed worker needs a config file (not --demo)");
    const env = readDistEnv();
    config = configWithOverrides(file, o);
    if (config.device === "cuda") config.device = `cuda:${env.localRank}`;
    const backend = config.dist.backend === "auto" ? backendFor(config.device) : config.dist.backend;
    processGroup = await initProcessGroup({
      ...env,
      backend,
      timeoutMs: 1000 * (o.timeout ?? config.dist.timeoutSeconds),
    });
  } else {
    if (!file) throw new UsageError("give a config file (or --demo)");
    config = configWithOverrides(file, o);
  }
  const lead = (processGroup?.rank ?? 0) === 0;
  const r = await pretrain(config, {
    ...(lead ? { onProgress: reporter(o) } : {}),
    ...(o.resume ? { resume: true } : {}),
    ...(o.overwrite ? { overwrite: true } : {}),
    ...(processGroup ? { processGroup } : {}),
  });
  if (lead)
    console.log(
      `model: ${r.output}/final/model.safetensors; curves: ${r.output}/curves.png; metrics: ` +
        `${r.output}/metrics.jsonl; ${formatDuration(r.seconds)}`,
    );
}

export function register(program: Command): void {
  const cmd = program
    .command("pretrain")
    .description(
      "pre-train ViLReF (WSCL, momentum queues) from one JSON experiment config; --demo runs the synthetic demo",
    )
    .argument("[config]", "experiment config JSON (see lib/train/config.ts)")
    .option("--resume", "continue from the latest checkpoint in the config's output folder")
    .option("--overwrite", "replace the run the config's output folder holds (otherwise such a folder is refused)")
    .option("--demo", "make a synthetic set (1,500 + 300 held-out pairs) and pre-train a small model on it")
    .option("--demo-dir <dir>", "folder of the demo's data and run", "vilref-demo")
    .addOption(lossOption("demo only: wscl (default) or clip"))
    .option(
      "--nproc <n>",
      "start N worker processes on this machine (Gloo on the CPU, NCCL on CUDA) and supervise them",
      int({ min: 1 }),
    )
    .option(
      "--timeout <seconds>",
      "multi-process: how long a collective waits for the other ranks (default: the config's dist.timeoutSeconds, 300)",
      float({ above: 0 }),
    )
    .addOption(new Option("--device <device>", "override the config's device: cpu, cuda or cuda:N").argParser(device))
    .addOption(threadsOption())
    .addOption(progressOption());
  examples(cmd, [
    [
      "vilref pretrain run.json",
      "pre-train from a config; checkpoints, metrics.jsonl and curves.png in its output folder",
    ],
    ["vilref pretrain run.json --resume --nproc 2", "resume with 2 worker processes on this machine"],
    ["vilref pretrain --demo --loss clip", "the synthetic demo with plain CLIP instead of WSCL"],
  ]).action((file: string | undefined, o: PretrainCliOptions) => runPretrain(file, o));
}
