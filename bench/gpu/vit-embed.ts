/**
 * ViT-B/16 image embedding at 224 px, batch 256, bfloat16 weights on CUDA: vilref's encodeImages
 * against the released ViT in PyTorch, eager and torch.compile (bench/baselines/vit_embed.py), in
 * the same run on the same card, alternating (vilref, PyTorch, vilref). Per-call times after a
 * warm-up, three input sets in rotation; images/s from the median call.
 *
 * vilref takes a Float32Array from JS and returns one, so its calls include the host→device copy
 * of the float32 batch and the copy of the features back; the PyTorch "host" rows do the same
 * (pageable float32 CPU batch .to(device, dtype), result .float().cpu()) and are what the ratio
 * compares with. The "resident" rows (input already on the device, in bfloat16) are the forward
 * alone, for reference. Goal (issue 20): vilref ≥ 1.1 × torch.compile.
 *
 * --profile DIR: instead, one traced vilref call (VILREF_PROFILE; with a CUDA LibTorch ≥ 2 the
 * trace has the CUDA kernels) and a table of the ops/kernels that took the most time.
 * --toy: a 2-block ViT at 32 px (the CPU dry run). On the CPU, float32.
 * Run: npx tsx bench/gpu/vit-embed.ts --device cuda [--batch 256] [--iters 20] [--python python3]
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { ViLReF } from "../../lib/model/vilref.js";
import type { Dtype } from "../../lib/model/vilref.js";
import { presetConfig } from "../../lib/model/config.js";
import { setThreads } from "../../lib/native.js";
import { finish, flag, fmt, isError, median, opt, python, randomImages } from "./common.js";

const device = opt("--device", "cuda");
const toy = flag("--toy");
const batch = Number(opt("--batch", toy ? "4" : "256"));
const iters = Number(opt("--iters", toy ? "3" : "20"));
const interpreter = opt("--python", "python3");
const profileDir = opt("--profile", "");
const cuda = device.startsWith("cuda");
const dtype: Dtype = cuda ? "bfloat16" : "float32";
const threads = cuda ? availableParallelism() : Number(opt("--threads", "1"));
setThreads(threads);

const config = toy
  ? { ...presetConfig("vit-b-16"), image_resolution: 32, vision_layers: 2, vision_width: 64, embed_dim: 32 }
  : presetConfig("vit-b-16");
const R = config.image_resolution;
const model = ViLReF.create(config, { device: device as "cpu" | "cuda", dtype, seed: 0 });
const inputs = randomImages(3, batch, R);
const images = (i: number) => ({ data: inputs[i % 3]!, shape: [batch, 3, R, R] });

async function vilref(n: number): Promise<number[]> {
  for (let i = 0; i < 3; i++) await model.encodeImages(images(i)); // warm-up: allocator, cuBLAS handles
  const seconds: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await model.encodeImages(images(i));
    seconds.push((performance.now() - t) / 1000);
  }
  return seconds;
}

interface Baseline {
  torch: string;
  gpu?: string;
  modes: Record<string, { host: number[]; resident: number[]; warmupSeconds: number } | { error: string }>;
}

/** Where the time went in a profiler trace: the top names by total duration (kernels when there are any). */
function summarise(dir: string): { rows: string[][]; kind: string; file: string } {
  const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  if (!files.length) throw new Error(`no trace in ${dir}`);
  const file = files.sort().at(-1)!;
  const raw = JSON.parse(readFileSync(join(dir, file), "utf8")) as { traceEvents?: unknown[] } | unknown[];
  const events = (Array.isArray(raw) ? raw : (raw.traceEvents ?? [])) as {
    name?: string;
    ph?: string;
    dur?: number;
    cat?: string;
  }[];
  const complete = events.filter((e) => e.ph === "X" && typeof e.dur === "number" && e.name);
  const kernels = complete.filter((e) => e.cat === "kernel");
  const pick = kernels.length ? kernels : complete.filter((e) => e.cat !== "python_function");
  const total = new Map<string, { us: number; n: number }>();
  for (const e of pick) {
    const t = total.get(e.name!) ?? { us: 0, n: 0 };
    t.us += e.dur!;
    t.n += 1;
    total.set(e.name!, t);
  }
  const sum = [...total.values()].reduce((s, t) => s + t.us, 0);
  const rows = [...total.entries()]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, 20)
    .map(([name, t]) => [
      name.length > 90 ? `${name.slice(0, 87)}...` : name,
      String(t.n),
      fmt(t.us / 1000, 2),
      fmt((100 * t.us) / sum, 1),
    ]);
  return { rows, kind: kernels.length ? "CUDA kernels" : "ops (CPU-side times)", file };
}

if (profileDir) {
  rmSync(profileDir, { recursive: true, force: true });
  mkdirSync(profileDir, { recursive: true });
  await vilref(1);
  process.env.VILREF_PROFILE = profileDir;
  await model.encodeImages(images(0));
  delete process.env.VILREF_PROFILE;
  const s = summarise(profileDir);
  finish({
    title:
      `vilref ViT${toy ? " (toy)" : "-B/16"} encode, batch ${batch}, ${dtype} on ${device}: ` +
      `where one call's time goes (${s.kind})`,
    table: { columns: ["name", "calls", "total ms", "%"], rows: s.rows },
    notes: [`trace ${s.file} (profile.json.gz in the GPU run's files: chrome://tracing or ui.perfetto.dev)`],
    kind: s.kind,
  });
} else {
  const ours = await vilref(iters);
  const base = await python<Baseline>(interpreter, "vit_embed.py", [
    "--device",
    device,
    "--dtype",
    dtype,
    "--batch",
    String(batch),
    "--iters",
    String(iters),
    "--preset",
    toy ? "toy" : "base",
    "--threads",
    String(threads),
    "--modes",
    cuda ? "eager,compile" : "eager",
  ]);
  ours.push(...(await vilref(iters)));
  const ips = (s: number[]) => batch / median(s);
  const vilrefIps = ips(ours);
  const rows: string[][] = [["vilref encodeImages", "host (Float32Array)", fmt(vilrefIps), "1.00"]];
  const notes: string[] = [];
  if (isError(base)) notes.push(`PyTorch baseline: ${base.error}`);
  else {
    for (const [mode, r] of Object.entries(base.modes)) {
      if ("error" in r) {
        notes.push(`PyTorch ${mode}: ${r.error}`);
        continue;
      }
      for (const feed of ["host", "resident"] as const) {
        const x = ips(r[feed]);
        rows.push([`PyTorch ${base.torch} ${mode}`, feed, fmt(x), fmt(vilrefIps / x, 2)]);
      }
      if (mode === "compile") notes.push(`torch.compile warm-up (compiling) took ${fmt(r.warmupSeconds)} s`);
    }
  }
  notes.push(
    `${iters} timed calls per block, vilref blocks before and after PyTorch's, medians; ${threads} CPU threads`,
  );
  finish({
    title:
      `ViT${toy ? " (toy, 2×64 at 32 px)" : "-B/16 at 224"} image embedding, batch ${batch}, ${dtype}, ` +
      `${device}${!isError(base) && base.gpu ? ` (${base.gpu})` : ""}`,
    table: { columns: ["implementation", "input", "images/s", "vilref ÷ this"], rows },
    notes,
    vilref: { seconds: ours, imagesPerSecond: vilrefIps },
    baseline: base,
  });
}
