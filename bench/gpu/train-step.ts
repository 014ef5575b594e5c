/**
 * One ViLReF pre-training step — EMA momentum encoders, momentum features, WSCL over the batch and a
 * 16,384-entry queue, backward, global gradient norm, AdamW, logit-scale clamp, enqueue — in vilref
 * (Trainer) against the same step written in PyTorch (bench/baselines/train_step.py: the released
 * Chinese-CLIP modules, an EMA copy, ../shared/WSCL.md over batch + queue), same sizes, same data
 * recipe, each run in a fresh process, alternating vilref and PyTorch, for each precision asked.
 * Prints the median step time of each, the ratio (PyTorch time ÷ vilref time: above 1, vilref is
 * faster), samples/s and peak memory (CUDA: the caching allocator's peak allocated bytes; CPU: the
 * process's peak RSS).
 *
 * Presets: base = ViT-B/16 + RoBERTa-base-size BERT (the GPU run: batch 256, context 52, bfloat16
 * autocast; goal ≥ 1.2× with peak memory no higher); small = ViT 6×384 at 224 + BERT 2×256 (the
 * CPU measurement of bench/RESULTS.md: batch 32, float32 and bfloat16); toy (the CPU dry run).
 * Run: npx tsx bench/gpu/train-step.ts --device cpu --preset small --batch 32 --precisions float32,bfloat16 --rounds 3
 *      npx tsx bench/gpu/train-step.ts --device cuda --preset base --batch 256 --steps 8
 */
import { spawn } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { LABEL_IDS } from "../../lib/labels/index.js";
import { presetConfig } from "../../lib/model/config.js";
import type { ModelConfig } from "../../lib/model/config.js";
import { ViLReF } from "../../lib/model/vilref.js";
import { native, setThreads } from "../../lib/native.js";
import { Trainer } from "../../lib/train/trainer.js";
import { argv, finish, fmt, isError, median, opt, python } from "./common.js";

type Precision = "float32" | "bfloat16" | "float16";
const device = opt("--device", "cuda");
const cuda = device.startsWith("cuda");
const preset = opt("--preset", cuda ? "base" : "small");
const batch = Number(opt("--batch", preset === "base" ? "256" : preset === "small" ? "32" : "4"));
const context = Number(opt("--context", "52"));
const queue = Number(opt("--queue", preset === "toy" ? "16" : "16384"));
const steps = Number(opt("--steps", preset === "base" ? "8" : "4"));
const warmup = Number(opt("--warmup", "2"));
const rounds = Number(opt("--rounds", "1"));
const precisions = opt("--precisions", cuda ? "bfloat16" : "float32,bfloat16").split(",") as Precision[];
const threads = Number(opt("--threads", String(cuda ? availableParallelism() : Math.min(2, availableParallelism()))));
const interpreter = opt("--python", "python3");
const labels = LABEL_IDS.length;

const CONFIGS: Record<string, ModelConfig> = {
  base: presetConfig("vit-b-16"),
  small: {
    ...presetConfig("vit-b-16"),
    embed_dim: 256,
    vision_layers: 6,
    vision_width: 384,
    text_hidden_size: 256,
    text_intermediate_size: 1024,
    text_max_position_embeddings: 128,
    text_num_attention_heads: 4,
    text_num_hidden_layers: 2,
  },
  toy: {
    ...presetConfig("vit-b-16"),
    embed_dim: 32,
    image_resolution: 32,
    vision_layers: 2,
    vision_width: 64,
    text_hidden_size: 64,
    text_intermediate_size: 128,
    text_max_position_embeddings: 64,
    text_num_attention_heads: 2,
    text_num_hidden_layers: 2,
  },
};

interface Run {
  stepSeconds: number[];
  losses: number[];
  peakBytes: number;
  peakKind: string;
  torch?: string;
  gpu?: string;
}

/** The baseline's data recipe: random images, ids [CLS] ... [SEP] then padding, labels ~30 % on. */
function batches(n: number, R: number, seed: number) {
  let s = seed >>> 0;
  const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Array.from({ length: n }, () => {
    const images = Float32Array.from({ length: batch * 3 * R * R }, () => rnd() * 3 - 1.5);
    const ids = new BigInt64Array(batch * context);
    for (let i = 0; i < batch; i++) {
      const len = 8 + Math.floor(rnd() * (context - 7));
      for (let k = 0; k < len; k++)
        ids[i * context + k] = k === 0 ? 101n : k === len - 1 ? 102n : BigInt(200 + Math.floor(rnd() * 19800));
    }
    const y = Float32Array.from({ length: batch * labels }, () => (rnd() < 0.3 ? 1 : 0));
    return {
      images: { data: images, shape: [batch, 3, R, R] },
      ids: { data: ids, shape: [batch, context] },
      labels: { data: y, shape: [batch, labels] },
    };
  });
}

async function child(precision: Precision): Promise<void> {
  setThreads(threads);
  const config = CONFIGS[preset]!;
  const model = ViLReF.create(config, { device: device as "cpu" | "cuda", seed: 0 });
  const trainer = new Trainer(model, { labelDim: labels, queueSize: queue, precision });
  const data = batches(3, config.image_resolution, 7);
  if (cuda) native().resetCudaPeakMemory(device);
  const run: Run = { stepSeconds: [], losses: [], peakBytes: 0, peakKind: cuda ? "CUDA peak allocated" : "max RSS" };
  for (let i = 0; i < warmup + steps; i++) {
    const t = performance.now();
    const r = await trainer.step(data[i % data.length]!);
    if (i >= warmup) run.stepSeconds.push((performance.now() - t) / 1000);
    run.losses.push(r.loss);
  }
  run.peakBytes = cuda ? native().cudaMemory(device).peakAllocated : process.resourceUsage().maxRSS * 1024;
  process.stdout.write(JSON.stringify(run) + "\n");
}

function vilref(precision: Precision): Promise<Run | { error: string }> {
  return new Promise((resolve) => {
    const c = spawn(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), ...argv, "--child", precision],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let text = "";
    c.stdout.on("data", (d: Buffer) => (text += d.toString()));
    c.on("exit", (code) => {
      const last = text.trim().split("\n").pop() ?? "";
      resolve(code === 0 && last.startsWith("{") ? (JSON.parse(last) as Run) : { error: `vilref child exit ${code}` });
    });
  });
}

function twin(precision: Precision) {
  return python<Run>(interpreter, "train_step.py", [
    "--device",
    device,
    "--preset",
    preset,
    "--batch",
    String(batch),
    "--context",
    String(context),
    "--queue",
    String(queue),
    "--labels",
    String(labels),
    "--precision",
    precision,
    "--steps",
    String(steps),
    "--warmup",
    String(warmup),
    "--threads",
    String(threads),
  ]);
}

const childPrecision = opt("--child", "");
if (childPrecision) {
  await child(childPrecision as Precision);
} else {
  const runs: Record<string, { ours: Run[]; theirs: Run[]; errors: string[] }> = {};
  for (let r = 0; r < rounds; r++)
    for (const p of precisions) {
      const slot = (runs[p] ??= { ours: [], theirs: [], errors: [] });
      for (const side of ["vilref", "PyTorch"] as const) {
        const out = side === "vilref" ? await vilref(p) : await twin(p);
        if (isError(out)) slot.errors.push(`${side}: ${out.error}`);
        else (side === "vilref" ? slot.ours : slot.theirs).push(out);
        // the table so far after every run: a long measurement stopped early keeps what it has
        report(runs, r + 1);
      }
      process.stderr.write(`train-step: round ${r + 1}/${rounds} ${p} done\n`);
    }
}

function report(runs: Record<string, { ours: Run[]; theirs: Run[]; errors: string[] }>, roundsSoFar: number): void {
  const mib = (b: number) => fmt(b / 2 ** 20, 0);
  const rows: string[][] = [];
  const notes: string[] = [];
  let torchVersion = "";
  let gpu = "";
  for (const [p, slot] of Object.entries(runs)) {
    const a = median(slot.ours.flatMap((x) => x.stepSeconds));
    const b = median(slot.theirs.flatMap((x) => x.stepSeconds));
    const peak = (xs: Run[]) => Math.max(...xs.map((x) => x.peakBytes));
    torchVersion ||= slot.theirs[0]?.torch ?? "";
    gpu ||= slot.theirs[0]?.gpu ?? "";
    rows.push([
      p,
      fmt(a, 3),
      fmt(b, 3),
      fmt(b / a, 2),
      fmt(batch / a),
      fmt(batch / b),
      slot.ours.length ? mib(peak(slot.ours)) : "–",
      slot.theirs.length ? mib(peak(slot.theirs)) : "–",
    ]);
    notes.push(...slot.errors.map((e) => `${p}: ${e}`));
    notes.push(
      `${p}: ${slot.ours.length} vilref and ${slot.theirs.length} PyTorch processes; ` +
        `per-step seconds vilref ${slot.ours.map((x) => x.stepSeconds.map((v) => fmt(v, 2)).join(" ")).join(" | ")}; ` +
        `PyTorch ${slot.theirs.map((x) => x.stepSeconds.map((v) => fmt(v, 2)).join(" ")).join(" | ")}`,
    );
  }
  notes.push(
    `${steps} timed steps after ${warmup} per process, ${roundsSoFar} of ${rounds} round(s) ` +
      `alternating vilref and PyTorch ${torchVersion}; ${threads} CPU threads; ` +
      `${cpus()[0]?.model ?? "?"} × ${cpus().length}`,
  );
  finish({
    title:
      "ViLReF pre-training step (" +
      ({ base: "ViT-B/16 + BERT-base", small: "ViT 6×384 at 224 + BERT 2×256", toy: "toy: ViT 2×64 at 32 + BERT 2×64" }[
        preset
      ] ?? preset) +
      `), batch ${batch}, context ${context}, WSCL + queue ${queue}, ${device}${gpu ? ` (${gpu})` : ""}`,
    table: {
      columns: [
        "precision",
        "vilref s/step",
        "PyTorch s/step",
        "PyTorch ÷ vilref",
        "vilref samples/s",
        "PyTorch samples/s",
        `vilref peak MiB`,
        `PyTorch peak MiB`,
      ],
      rows,
    },
    notes,
    runs,
  });
}
