/**
 * ViT-B/16 image embedding (224², random weights, float32, all cores): vilref against Debian's
 * python3-torch running the same released architecture (bench/baselines/vit_b16.py) in the same
 * run, alternating, best of each. Prints images/s and the ratio (goal ≥ 1.0).
 * Run: npx tsx bench/vit.ts [--rounds 3] [--batches 8,64]   (after npm run setup; needs
 * apt-get install --no-install-recommends python3-torch for the baseline)
 */
import { execFileSync, execSync } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ViLReF } from "../lib/model/vilref.js";
import { setThreads } from "../lib/native.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : dflt);
const rounds = Number(opt("--rounds", "3"));
const batches = opt("--batches", "8,64").split(",").map(Number);
const threads = availableParallelism();
const python = "/usr/bin/python3";
const baseline = join(fileURLToPath(new URL(".", import.meta.url)), "baselines", "vit_b16.py");

setThreads(threads);
const model = ViLReF.create("vit-b-16", { seed: 0 });

async function vilref(batch: number): Promise<number[]> {
  const images = {
    data: Float32Array.from({ length: batch * 3 * 224 * 224 }, (_, i) => Math.sin(i) * 1.5),
    shape: [batch, 3, 224, 224],
  };
  await model.encodeImages(images); // warm-up
  const seconds: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    await model.encodeImages(images);
    seconds.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  return seconds;
}

function pytorch(batch: number): { seconds: number[]; torch: string } {
  const out = execFileSync(
    python,
    [baseline, "--batch", String(batch), "--rounds", String(rounds), "--threads", String(threads)],
    { encoding: "utf8" },
  );
  return JSON.parse(out.trim().split("\n").pop()!);
}

const commit = execSync("git rev-parse --short HEAD").toString().trim();
console.log(
  `ViT-B/16 embedding, float32, ${threads} threads — ${new Date().toISOString()}, ` +
    `${cpus()[0]?.model ?? "cpu"} × ${cpus().length}, commit ${commit}`,
);
console.log("| batch | vilref img/s | PyTorch eager img/s | ratio |");
console.log("|---:|---:|---:|---:|");
for (const batch of batches) {
  const ours: number[] = [];
  const theirs: number[] = [];
  let torchVersion = "";
  for (let pass = 0; pass < 2; pass++) {
    ours.push(...(await vilref(batch)));
    const p = pytorch(batch);
    theirs.push(...p.seconds);
    torchVersion = p.torch;
  }
  const a = batch / Math.min(...ours);
  const b = batch / Math.min(...theirs);
  console.log(`| ${batch} | ${a.toFixed(2)} | ${b.toFixed(2)} (torch ${torchVersion}) | ${(a / b).toFixed(2)} |`);
}
