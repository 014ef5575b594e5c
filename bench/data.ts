/**
 * Decode + preprocess throughput (images/s): the sharp loader against PIL + torchvision doing the
 * same transforms (bench/baselines/preprocess_baseline.py), in the same run, on 2048×2048 JPEGs
 * (synthetic fundus images, generated once into a temp folder) and the DRIVE TIFFs, pinned to 1
 * core and to 2 cores with taskset.
 *
 *   npx tsx bench/data.ts [--n 48] [--repeat 2]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { Loader } from "../lib/data/loader.js";
import { samplesFromFiles } from "../lib/data/manifest.js";
import { renderFundus } from "../lib/synth/index.js";

const args = process.argv.slice(2);
const opt = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};

async function child(list: string, mode: string): Promise<void> {
  const files = list.split("\n").filter(Boolean);
  const loader = new Loader(samplesFromFiles(files), { batchSize: 16, shuffle: false, transform: { size: 224, train: mode === "train" }, prefetch: 2, concurrency: Number(process.env.BENCH_CONCURRENCY ?? 8) });
  const t0 = performance.now();
  let n = 0;
  for await (const b of loader.epoch(0)) n += b.images.shape[0]!;
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ images: n, seconds: s, images_per_s: n / s, skipped: loader.stats.skipped }) + "\n");
}

async function main(): Promise<void> {
  if (process.env.BENCH_CHILD) {
    const { readFileSync } = await import("node:fs");
    return child(readFileSync(process.env.BENCH_LIST!, "utf8"), process.env.BENCH_MODE!);
  }
  const N = opt("--n", 48);
  const repeat = opt("--repeat", 2);
  const dir = path.join(tmpdir(), "vilref-bench-jpeg2048");
  mkdirSync(dir, { recursive: true });
  const jpegs: string[] = [];
  for (let i = 0; i < N; i++) {
    const f = path.join(dir, `f${i}.jpg`);
    if (!existsSync(f)) {
      const img = renderFundus({ size: 512, seed: 1000 + i, eye: i % 2 ? "left" : "right", findings: i % 3 ? {} : { hemorrhage: "asserted", hard_exudate: "asserted" }, cdr: 0.4 });
      const buf = await sharp(Buffer.from(img.rgb), { raw: { width: 512, height: 512, channels: 3 } }).resize(2048, 2048, { kernel: "lanczos3" }).jpeg({ quality: 92 }).toBuffer();
      writeFileSync(f, buf);
    }
    jpegs.push(f);
  }
  const driveDir = path.resolve(import.meta.dirname, "../../shared/data/DRIVE");
  const drive = ["training", "test"].flatMap((s) => readdirSync(path.join(driveDir, s, "images")).sort().map((f) => path.join(driveDir, s, "images", f)));
  const sets: [string, string[]][] = [
    ["2048² JPEG", jpegs],
    ["DRIVE TIFF", drive],
  ];
  const py = "/usr/bin/python3";
  const baseline = path.resolve(import.meta.dirname, "baselines/preprocess_baseline.py");
  const rows: string[][] = [["data", "mode", "cores", "vilref img/s", "PIL+tv img/s", "ratio"]];
  const best = (f: () => number) => Math.max(...Array.from({ length: repeat }, f));
  for (const [name, files] of sets) {
    const list = path.join(tmpdir(), `vilref-bench-${name.replace(/\W/g, "")}.txt`);
    writeFileSync(list, files.join("\n") + "\n");
    for (const mode of ["eval", "train"]) {
      for (const cores of [1, 2]) {
        const cpu = cores === 1 ? "0" : "0,1";
        const ours = best(() => JSON.parse(execFileSync("taskset", ["-c", cpu, process.execPath, "--import=tsx", import.meta.filename], { env: { ...process.env, BENCH_CHILD: "1", BENCH_LIST: list, BENCH_MODE: mode, UV_THREADPOOL_SIZE: String(Math.max(2, cores * 2)), BENCH_CONCURRENCY: String(cores * 4) }, encoding: "utf8" }).trim().split("\n").pop()!).images_per_s as number);
        const theirs = best(() => JSON.parse(execFileSync("taskset", ["-c", cpu, py, baseline, list, mode, String(cores)], { env: { ...process.env, OMP_NUM_THREADS: "1" }, encoding: "utf8" }).trim().split("\n").pop()!).images_per_s as number);
        rows.push([name, mode, String(cores), ours.toFixed(1), theirs.toFixed(1), (ours / theirs).toFixed(2)]);
        process.stderr.write(rows[rows.length - 1]!.join("  ") + "\n");
      }
    }
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  lines.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
  console.log(lines.join("\n"));
  console.log(`\n${N} JPEGs 2048×2048 (q92), ${drive.length} DRIVE TIFFs 565×584; output 224×224 normalised CHW; best of ${repeat}; sharp ${sharp.versions.sharp} / libvips ${sharp.versions.vips}`);
}

await main();
