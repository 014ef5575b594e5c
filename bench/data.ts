/**
 * Decode + preprocess throughput (images/s): the sharp loader against PIL + torchvision doing the
 * same transforms (bench/baselines/preprocess_baseline.py), in the same run, on 2048×2048 JPEGs
 * (synthetic fundus images, generated once into a temp folder) and the DRIVE TIFFs, pinned to 1
 * core and to 2 cores with taskset.
 *
 * JPEGs are measured twice: "full" decodes every pixel on both sides (vilref `shrinkOnLoad: false`,
 * torchvision's usual Image.open + convert), "scaled" lets both sides decode in the DCT domain at
 * the same 1/2–1/8 factor (libvips shrink-on-load, the vilref default; PIL `Image.draft`).
 *
 * Both sides start, warm up (a few images), then run whole passes over the list for at least
 * --seconds; the best of --repeat runs counts. Before timing, the evaluation outputs of the first
 * images are compared between the two (mean and max |Δ| in 8-bit units, i.e. Δ·std·255).
 *
 *   npx tsx bench/data.ts [--n 48] [--repeat 2] [--seconds 3]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { readNpy } from "../lib/io/npy.js";
import { Loader } from "../lib/data/loader.js";
import { samplesFromFiles } from "../lib/data/manifest.js";
import { CLIP_STD, preprocess } from "../lib/data/transforms.js";
import { renderFundus } from "../lib/synth/index.js";

const args = process.argv.slice(2);
const opt = (k: string, d: number) => {
  const i = args.indexOf(k);
  return i >= 0 ? Number(args[i + 1]) : d;
};

async function child(files: string[], mode: string, decode: string, minSeconds: number): Promise<void> {
  // No libvips operation cache: the timed passes revisit the same files, a real epoch does not.
  sharp.cache(false);
  const vips = Number(process.env.BENCH_VIPS_THREADS ?? 0);
  if (vips > 0) sharp.concurrency(vips);
  const options = {
    batchSize: 16,
    shuffle: false,
    transform: { size: 224, train: mode === "train", shrinkOnLoad: decode !== "full" },
    prefetch: 2,
    concurrency: Number(process.env.BENCH_CONCURRENCY ?? 8),
  };
  const cores = availableParallelism();
  for await (const _ of new Loader(samplesFromFiles(files.slice(0, Math.max(2, 2 * cores))), options).epoch(0));
  const loader = new Loader(samplesFromFiles(files), options);
  const t0 = performance.now();
  let n = 0;
  let passes = 0;
  let s = 0;
  do {
    for await (const b of loader.epoch(passes)) n += b.images.shape[0]!;
    passes++;
    s = (performance.now() - t0) / 1000;
  } while (s < minSeconds);
  process.stdout.write(
    JSON.stringify({
      images: n,
      seconds: s,
      images_per_s: n / s,
      passes,
      skipped: loader.stats.skipped,
      cores,
      vips: sharp.concurrency(),
    }) + "\n",
  );
}

/** Mean and max |Δ| in 8-bit units between vilref's and the baseline's evaluation outputs. */
async function parity(
  files: string[],
  decode: string,
  py: string,
  baseline: string,
  list: string,
  k: number,
): Promise<string> {
  const dump = path.join(tmpdir(), `vilref-bench-parity-${process.pid}.npy`);
  execFileSync(py, [baseline, list, "eval", "1", "--decode", decode, "--min-seconds", "0", "--dump", dump, String(k)], {
    encoding: "utf8",
  });
  const ref = await readNpy(dump);
  const per = 3 * 224 * 224;
  let sum = 0;
  let max = 0;
  for (let i = 0; i < k; i++) {
    const ours = await preprocess(files[i]!, { size: 224, shrinkOnLoad: decode !== "full" });
    for (let j = 0; j < per; j++) {
      const d = Math.abs(ours[j]! - (ref.data[i * per + j] as number)) * CLIP_STD[Math.floor(j / (224 * 224))]! * 255;
      sum += d;
      if (d > max) max = d;
    }
  }
  return `mean |Δ| ${(sum / (k * per)).toFixed(2)}, max |Δ| ${max.toFixed(1)} (8-bit units, ${k} images, eval)`;
}

async function main(): Promise<void> {
  if (process.env.BENCH_CHILD) {
    const files = readFileSync(process.env.BENCH_LIST!, "utf8").split("\n").filter(Boolean);
    return child(files, process.env.BENCH_MODE!, process.env.BENCH_DECODE!, Number(process.env.BENCH_SECONDS ?? 3));
  }
  const N = opt("--n", 48);
  const repeat = opt("--repeat", 2);
  const seconds = opt("--seconds", 3);
  const dir = path.join(tmpdir(), "vilref-bench-jpeg2048");
  mkdirSync(dir, { recursive: true });
  const jpegs: string[] = [];
  for (let i = 0; i < N; i++) {
    const f = path.join(dir, `f${i}.jpg`);
    if (!existsSync(f)) {
      const img = renderFundus({
        size: 512,
        seed: 1000 + i,
        eye: i % 2 ? "left" : "right",
        findings: i % 3 ? {} : { hemorrhage: "asserted", hard_exudate: "asserted" },
        cdr: 0.4,
      });
      const buf = await sharp(Buffer.from(img.rgb), { raw: { width: 512, height: 512, channels: 3 } })
        .resize(2048, 2048, { kernel: "lanczos3" })
        .jpeg({ quality: 92 })
        .toBuffer();
      writeFileSync(f, buf);
    }
    jpegs.push(f);
  }
  const driveDir = path.resolve(import.meta.dirname, "../../shared/data/DRIVE");
  const drive = ["training", "test"].flatMap((s) =>
    readdirSync(path.join(driveDir, s, "images"))
      .sort()
      .map((f) => path.join(driveDir, s, "images", f)),
  );
  const sets: [string, string, string[]][] = [
    ["2048² JPEG", "full", jpegs],
    ["2048² JPEG", "scaled", jpegs],
    ["DRIVE TIFF", "full", drive],
  ];
  const py = "/usr/bin/python3";
  const baseline = path.resolve(import.meta.dirname, "baselines/preprocess_baseline.py");
  const rows: string[][] = [["data", "decode", "mode", "cores", "vilref img/s", "PIL+tv img/s", "ratio"]];
  const notes: string[] = [];
  const json = (out: string) => JSON.parse(out.trim().split("\n").pop()!) as { images_per_s: number };
  for (const [name, decode, files] of sets) {
    const list = path.join(tmpdir(), `vilref-bench-${name.replace(/\W/g, "")}.txt`);
    writeFileSync(list, files.join("\n") + "\n");
    notes.push(`${name}, ${decode} decode: ${await parity(files, decode, py, baseline, list, 8)}`);
    process.stderr.write(notes[notes.length - 1]! + "\n");
    for (const mode of ["eval", "train"]) {
      for (const cores of [1, 2]) {
        const cpu = cores === 1 ? "0" : "0,1";
        let ours = 0;
        let theirs = 0;
        for (let r = 0; r < repeat; r++) {
          const env = {
            ...process.env,
            BENCH_CHILD: "1",
            BENCH_LIST: list,
            BENCH_MODE: mode,
            BENCH_DECODE: decode,
            BENCH_SECONDS: String(seconds),
            UV_THREADPOOL_SIZE: String(process.env.BENCH_UV ?? cores + 1),
            BENCH_CONCURRENCY: String(process.env.BENCH_CONCURRENCY ?? cores * 4),
            BENCH_VIPS_THREADS: String(process.env.BENCH_VIPS_THREADS ?? 1),
          };
          ours = Math.max(
            ours,
            json(
              execFileSync("taskset", ["-c", cpu, process.execPath, "--import=tsx", import.meta.filename], {
                env,
                encoding: "utf8",
              }),
            ).images_per_s,
          );
          theirs = Math.max(
            theirs,
            json(
              execFileSync(
                "taskset",
                [
                  "-c",
                  cpu,
                  py,
                  baseline,
                  list,
                  mode,
                  String(cores),
                  "--decode",
                  decode,
                  "--min-seconds",
                  String(seconds),
                ],
                { env: { ...process.env, OMP_NUM_THREADS: "1" }, encoding: "utf8" },
              ),
            ).images_per_s,
          );
        }
        rows.push([name, decode, mode, String(cores), ours.toFixed(1), theirs.toFixed(1), (ours / theirs).toFixed(2)]);
        process.stderr.write(rows[rows.length - 1]!.join("  ") + "\n");
      }
    }
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i < 3 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  lines.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
  console.log(lines.join("\n"));
  console.log(
    `\n${N} JPEGs 2048×2048 (q92), ${drive.length} DRIVE TIFFs 565×584 (LZW); output 224×224 normalised CHW float32; whole passes for ≥ ${seconds} s after warm-up, best of ${repeat}; ${cpus()[0]?.model ?? "?"}; sharp ${sharp.versions.sharp} / libvips ${sharp.versions.vips}`,
  );
  console.log(notes.map((s) => `parity ${s}`).join("\n"));
}

await main();
