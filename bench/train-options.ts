/**
 * What the training-step options cost and save on the CPU: median step time and peak resident
 * memory of one process per setting (float32; gradient checkpointing; bfloat16 autocast; both;
 * frozen visual tower), each against the float32 step of the same run. A ViT-S-like model (6
 * blocks, width 384, 224 px, patch 16) with a 2-layer BERT, WSCL with a queue of 256, random
 * batches. Run: npx tsx bench/train-options.ts [--batch 32] [--steps 4] [--warmup 1]
 */
import { spawn } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { ViLReF } from "../lib/model/vilref.js";
import { Trainer } from "../lib/train/trainer.js";
import type { TrainerOptions } from "../lib/train/trainer.js";
import { mulberry32 } from "../lib/data/rng.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : dflt);
const batch = Number(opt("--batch", "32"));
const steps = Number(opt("--steps", "4"));
const warmup = Number(opt("--warmup", "1"));
const C = 8,
  L = 32,
  R = 224;

const model = {
  embed_dim: 256,
  image_resolution: R,
  vision_layers: 6,
  vision_width: 384,
  vision_patch_size: 16,
  vision_head_width: 64,
  vocab_size: 21128,
  text_hidden_act: "gelu" as const,
  text_hidden_size: 256,
  text_intermediate_size: 1024,
  text_max_position_embeddings: 128,
  text_num_attention_heads: 4,
  text_num_hidden_layers: 2,
  text_type_vocab_size: 2,
};

interface Setting {
  name: string;
  options: Partial<TrainerOptions>;
}
const settings: Setting[] = [
  { name: "float32", options: {} },
  { name: "gradient checkpointing", options: { gradientCheckpointing: true } },
  { name: "bfloat16 autocast", options: { precision: "bfloat16" } },
  { name: "bfloat16 + checkpointing", options: { precision: "bfloat16", gradientCheckpointing: true } },
  { name: "freeze visual", options: { freeze: ["visual"] } },
];

interface Out {
  stepSeconds: number[];
  maxRssMiB: number;
  losses: number[];
}

async function child(setting: Setting): Promise<void> {
  const m = ViLReF.create(model, { seed: 1 });
  const trainer = new Trainer(m, { labelDim: C, lr: 1e-4, queueSize: 256, ...setting.options });
  const r = mulberry32(7);
  const out: Out = { stepSeconds: [], maxRssMiB: 0, losses: [] };
  for (let s = 0; s < warmup + steps; s++) {
    const images = Float32Array.from({ length: batch * 3 * R * R }, () => r.next() * 2 - 1);
    const ids = new BigInt64Array(batch * L);
    for (let i = 0; i < batch; i++)
      for (let k = 0; k < L; k++)
        ids[i * L + k] = k === 0 ? 101n : k === L - 1 ? 102n : BigInt(200 + Math.floor(r.next() * 5000));
    const labels = Float32Array.from({ length: batch * C }, () => (r.next() < 0.3 ? 1 : 0));
    const t0 = performance.now();
    const res = await trainer.step({
      images: { data: images, shape: [batch, 3, R, R] },
      ids: { data: ids, shape: [batch, L] },
      labels: { data: labels, shape: [batch, C] },
    });
    if (s >= warmup) out.stepSeconds.push((performance.now() - t0) / 1000);
    out.losses.push(res.loss);
  }
  out.maxRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify(out) + "\n");
}

function run(index: number): Promise<Out> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ["--import=tsx", fileURLToPath(import.meta.url), ...args], {
      env: { ...process.env, VILREF_BENCH_SETTING: String(index) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let text = "";
    c.stdout.on("data", (d: Buffer) => (text += d.toString()));
    c.on("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(text.trim().split("\n").at(-1)!) as Out)
        : reject(new Error(`${settings[index]!.name}: exit ${code}`)),
    );
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

if (process.env.VILREF_BENCH_SETTING !== undefined) {
  await child(settings[Number(process.env.VILREF_BENCH_SETTING)]!);
} else {
  console.log(
    `ViT 6×384 @${R} px + BERT 2×256, batch ${batch}, WSCL + queue 256, ${steps} timed steps after ${warmup}; ` +
      `${availableParallelism()} cores (${cpus()[0]?.model ?? "?"})`,
  );
  console.log("| setting | median step s | × float32 time | peak RSS MiB | × float32 memory | first loss |");
  console.log("|---|---:|---:|---:|---:|---:|");
  let base: Out | undefined;
  for (let i = 0; i < settings.length; i++) {
    const o = await run(i);
    base ??= o;
    const t = median(o.stepSeconds),
      tb = median(base.stepSeconds);
    console.log(
      `| ${settings[i]!.name} | ${t.toFixed(2)} | ${(t / tb).toFixed(2)} | ${o.maxRssMiB.toFixed(0)} | ` +
        `${(o.maxRssMiB / base.maxRssMiB).toFixed(2)} | ${o.losses[0]!.toFixed(5)} |`,
    );
  }
}
