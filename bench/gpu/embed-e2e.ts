/**
 * `vilref embed` end to end from JPEG files: the command as a user runs it (a child process of
 * bin/vilref.js), decoding on the machine's cores (sharp, shrink-on-load) while the model embeds
 * on the device. Images are synthetic fundus photographs (`vilref synth --format jpeg`, --size px);
 * --distinct of them are written and a manifest lists them --images times in all (the decode work
 * per row is the same; the files are in the page cache, as a second epoch's would be).
 *
 * Reports the end-to-end rate (rows ÷ the command's wall time), the steady rate without start-up
 * (the difference between the full run and a run of one batch: Node, the addon, model creation
 * and the CUDA context cancel out), and the GPU's busy fraction from nvidia-smi sampled every
 * 100 ms during the full run (utilization.gpu: the share of time a kernel was running), over the
 * whole run and over the window from the first to the last busy sample.
 * Run: npx tsx bench/gpu/embed-e2e.ts --device cuda [--images 4096] [--distinct 64] [--size 768] [--batch 256]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { finish, flag, fmt, opt } from "./common.js";

const device = opt("--device", "cuda");
const cuda = device.startsWith("cuda");
const toy = flag("--toy");
const rows = Number(opt("--images", toy ? "24" : "4096"));
const distinct = Number(opt("--distinct", toy ? "6" : "64"));
const size = Number(opt("--size", toy ? "96" : "768"));
const batch = Number(opt("--batch", toy ? "8" : "256"));
const model = opt("--model", toy ? "preset:tiny-vit:0" : "preset:vit-b-16:0");
const dtype = cuda ? "bfloat16" : "float32";
const cores = availableParallelism();
const cli = fileURLToPath(new URL("../../bin/vilref.js", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "vilref-embed-bench-"));

function run(args: string[]): Promise<{ seconds: number; code: number | null; output: string }> {
  return new Promise((resolve) => {
    const t = performance.now();
    const c = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    c.stdout.on("data", (d: Buffer) => (output += d.toString()));
    c.stderr.on("data", (d: Buffer) => (output += d.toString()));
    c.on("exit", (code) => resolve({ seconds: (performance.now() - t) / 1000, code, output }));
  });
}

/** nvidia-smi's utilization.gpu every 100 ms until stopped; null where there is none. */
function sampleGpu(): { stop: () => Promise<number[] | null> } {
  if (!cuda) return { stop: async () => null };
  const c = spawn("nvidia-smi", ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let text = "";
  let failed = false;
  c.stdout.on("data", (d: Buffer) => (text += d.toString()));
  c.on("error", () => (failed = true));
  return {
    stop: () =>
      new Promise((resolve) => {
        if (failed || c.exitCode !== null) return resolve(failed ? null : parse());
        c.on("exit", () => resolve(parse()));
        c.kill("SIGTERM");
      }),
  };
  function parse(): number[] {
    return text
      .split("\n")
      .map((l) => Number(l.trim().split(",")[0]))
      .filter((x) => Number.isFinite(x));
  }
}

function npyRows(file: string): number {
  const header = readFileSync(file).subarray(0, 256).toString("latin1");
  return Number(/'shape': \((\d+),/.exec(header)?.[1] ?? NaN);
}

try {
  const synth = await run([
    "synth",
    "--n",
    String(distinct),
    "--size",
    String(size),
    "--format",
    "jpeg",
    "--out",
    join(work, "data"),
  ]);
  if (synth.code !== 0) throw new Error(`vilref synth failed: ${synth.output.slice(-2000)}`);
  const files = readFileSync(join(work, "data", "manifest.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => join(work, "data", (JSON.parse(l) as { image: string }).image));
  const manifest = (n: number, name: string) => {
    const f = join(work, name);
    writeFileSync(
      f,
      Array.from({ length: n }, (_, k) => JSON.stringify({ id: `r${k}`, image: files[k % files.length] })).join("\n") +
        "\n",
    );
    return f;
  };
  const embed = (m: string, out: string) =>
    run([
      "embed",
      "--images",
      m,
      "--model",
      model,
      "--device",
      device,
      "--dtype",
      dtype,
      "--batch-size",
      String(batch),
      "--concurrency",
      String(2 * cores),
      "--out",
      join(work, out),
      "--no-progress",
      "--force",
    ]);
  const small = await embed(manifest(batch, "one-batch.jsonl"), "one.npy");
  if (small.code !== 0) throw new Error(`vilref embed (one batch) failed: ${small.output.slice(-2000)}`);
  const gpu = sampleGpu();
  const full = await embed(manifest(rows, "all.jsonl"), "all.npy");
  const samples = await gpu.stop();
  if (full.code !== 0) throw new Error(`vilref embed failed: ${full.output.slice(-2000)}`);
  const written = npyRows(join(work, "all.npy"));
  if (written !== rows) throw new Error(`vilref embed wrote ${written} rows, expected ${rows}`);
  const steady = (rows - batch) / (full.seconds - small.seconds);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  let busyAll: number | undefined;
  let busyActive: number | undefined;
  if (samples?.length) {
    busyAll = mean(samples) / 100;
    const first = samples.findIndex((x) => x > 0);
    const last = samples.length - 1 - [...samples].reverse().findIndex((x) => x > 0);
    busyActive = first >= 0 ? mean(samples.slice(first, last + 1)) / 100 : 0;
  }
  finish({
    title:
      `vilref embed end to end: ${rows} JPEGs of ${size} px (${distinct} distinct), ${model}, ${dtype}, ` +
      `batch ${batch}, ${device}, ${cores} cores`,
    table: {
      columns: [
        "images",
        "wall s",
        "images/s end to end",
        "images/s steady",
        "GPU busy (whole run)",
        "GPU busy (active window)",
      ],
      rows: [
        [
          String(rows),
          fmt(full.seconds, 2),
          fmt(rows / full.seconds),
          fmt(steady),
          fmt(busyAll, 2),
          fmt(busyActive, 2),
        ],
      ],
    },
    notes: [
      `steady = (rows − ${batch}) ÷ (wall − wall of a one-batch run, ${fmt(small.seconds, 2)} s): start-up excluded`,
      samples ? `${samples.length} nvidia-smi samples at 100 ms` : "no GPU: busy fraction not measured",
    ],
    seconds: { full: full.seconds, oneBatch: small.seconds, synth: synth.seconds },
    imagesPerSecond: { endToEnd: rows / full.seconds, steady },
    gpuBusy: { whole: busyAll ?? null, active: busyActive ?? null, samples: samples ?? null },
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}
