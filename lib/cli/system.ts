/** `vilref doctor` and `vilref demo`. */
import { Option } from "commander";
import type { Command } from "commander";
import { doctor, formatDoctor } from "../doctor.js";
import { Head, referenceForward } from "../head.js";
import { mulberry32 } from "../data/rng.js";
import type { Device } from "../model/vilref.js";
import { getThreads, setThreads } from "../native.js";
import { deviceOption, examples, int, lossOption, progressOption, stepsOption } from "./options.js";
import { runPretrainDemo } from "./train.js";

export async function runDemo(
  log: (line: string) => void = console.log,
): Promise<{ maxAbsDiff: number; samplesPerSecond: number }> {
  const report = doctor();
  log(formatDoctor(report));
  if ("error" in report.addon) throw new Error(`the demo needs the native addon: ${report.addon.error}`);
  log("");
  // A ViLReF-sized classifier head: 512-d image features → 31 taxonomy labels, one hidden layer.
  const config = { inFeatures: 512, hidden: [1024], outFeatures: 31, activation: "gelu" as const, seed: 7 };
  const head = new Head(config);
  const n = 256;
  const random = mulberry32(42).next;
  const x = Float32Array.from({ length: n * config.inFeatures }, () => random() * 2 - 1);
  const y = await head.forward({ data: x, shape: [n, config.inFeatures] });
  const state = await head.stateDict();
  const ref = referenceForward(config, state, x, n);
  let maxAbsDiff = 0;
  for (let i = 0; i < ref.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(ref[i]! - y.data[i]!));
  const rounds = 50;
  const started = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) await head.forward({ data: x, shape: [n, config.inFeatures] });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const samplesPerSecond = (rounds * n) / seconds;
  log(
    `forward pass: head ${config.inFeatures}→${config.hidden[0]}→${config.outFeatures} (GELU), batch ${n}, ` +
      `output [${y.shape.join(", ")}]`,
  );
  log(`  max |LibTorch − JavaScript reference| = ${maxAbsDiff.toExponential(2)}`);
  log(`  ${samplesPerSecond.toFixed(0)} samples/s on ${getThreads()} thread(s) (${rounds} batches)`);
  if (!(maxAbsDiff < 1e-4)) throw new Error(`LibTorch and the reference disagree by ${maxAbsDiff}`);
  return { maxAbsDiff, samplesPerSecond };
}

export function register(program: Command): void {
  program
    .command("doctor")
    .description("report Node, the addon, LibTorch, CUDA, the BLAS in use and threads")
    .option("--json", "print the report as JSON")
    .action((opts: { json?: boolean }) => {
      const report = doctor();
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
      if ("error" in report.addon) process.exitCode = 1;
    });
  const demo = program
    .command("demo")
    .description(
      "pre-train a small ViLReF on synthetic fundus data on the CPU (WSCL + queue), " +
        "then zero-shot on a held-out set: AUC table and curves PNG",
    )
    .addOption(lossOption("wscl (default) or clip, for the comparison"))
    .option("--dir <dir>", "folder of the demo's data and runs", "vilref-demo")
    .addOption(stepsOption("training steps (default: the demo's, about 8 minutes on 2 cores)"))
    .option("--smoke", "only doctor and a forward pass checked against JavaScript (seconds)")
    .addOption(deviceOption())
    .addOption(new Option("--threads <n>", "LibTorch intra-op CPU threads (default: 2)").argParser(int({ min: 1 })))
    .addOption(progressOption());
  examples(demo, [
    ["vilref demo", "about 8 minutes on 2 cores: synthetic data, WSCL pre-training, the zero-shot AUC table"],
    ["vilref demo --loss clip --steps 300", "a shorter run with plain CLIP, to compare"],
    ["vilref demo --smoke", "seconds: the set-up and one forward pass"],
  ]).action(
    async (o: {
      loss?: "wscl" | "clip";
      dir: string;
      steps?: number;
      smoke?: boolean;
      device: Device;
      threads?: number;
      progress: boolean;
    }) => {
      if (o.smoke) {
        if (o.threads !== undefined) setThreads(o.threads);
        await runDemo();
        return;
      }
      const report = doctor();
      if ("error" in report.addon) throw new Error(`the demo needs the native addon: ${report.addon.error}`);
      console.log(formatDoctor(report) + "\n");
      await runPretrainDemo(o);
    },
  );
}
