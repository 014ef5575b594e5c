/**
 * Import of a released-style `.pt` through the validating reader (vilref's ZIP reader with CRC-32
 * checks, the pickle dry run, every tensor checked against its storage, then LibTorch's unpickler)
 * against Python's `torch.load(weights_only=True)` (PyTorch's own reader: miniz and the Python
 * unpickler) on the same file, alternating, in the same run. Both read the file from the page cache
 * and hand back every tensor (vilref: as typed arrays in JavaScript).
 *
 * Run: npx tsx bench/pt-import.ts [--mb 256] [--rounds 5]   (the baseline needs a python with torch:
 * /usr/bin/python3 with Debian's python3-torch, or VILREF_PYTHON)
 */
import { execFileSync, execSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { native } from "../lib/native.js";
import { releasedPt, tensor, type TorchTensor } from "../test/helpers/torch-zip.js";

const { values } = parseArgs({
  options: { mb: { type: "string", default: "256" }, rounds: { type: "string", default: "5" } },
});
const mb = Number(values.mb);
const rounds = Number(values.rounds);

// ViT-B/16-like: 12 blocks of (4 × 768² + 2 × 768 × 3072) float32 weights plus biases, scaled to `mb`
const sd = new Map<string, TorchTensor>();
const width = 768;
let bytes = 0;
for (let block = 0; bytes < mb * 2 ** 20; block++) {
  for (const [name, shape] of [
    ["attn.in_proj_weight", [3 * width, width]],
    ["attn.out_proj.weight", [width, width]],
    ["mlp.c_fc.weight", [4 * width, width]],
    ["mlp.c_proj.weight", [width, 4 * width]],
    ["ln_1.weight", [width]],
    ["ln_1.bias", [width]],
  ] as const) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i += 97) data[i] = i / n;
    sd.set(`visual.transformer.resblocks.${block}.${name}`, tensor("float32", [...shape], data));
    bytes += 4 * n;
  }
}
const dir = mkdtempSync(path.join(tmpdir(), "vilref-bench-pt-"));
const file = path.join(dir, "vit.pt");
writeFileSync(file, releasedPt(sd));
const size = readFileSync(file).length;

// Debian's python3-torch lives with /usr/bin/python3 (a pyenv python3 on PATH may have no torch)
const PYTHON = process.env.VILREF_PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
const PY = String.raw`
import sys, time, torch
t0 = time.perf_counter()
sd = torch.load(sys.argv[1], weights_only=True)["state_dict"]
n = sum(v.numel() for v in sd.values())
print(time.perf_counter() - t0, n)
`;

async function vilref(): Promise<number> {
  const t0 = performance.now();
  const r = await native().importTorchCheckpoint(new Uint8Array(readFileSync(file)), file);
  let n = 0;
  for (const t of Object.values(r.tensors)) n += t.data.length;
  if (n * 4 !== bytes) throw new Error(`read ${n} values, want ${bytes / 4}`);
  return (performance.now() - t0) / 1000;
}

function python(): number | null {
  try {
    const [s] = execFileSync(PYTHON, ["-c", PY, file], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .split(" ");
    return Number(s);
  } catch {
    return null;
  }
}

console.log(
  `vilref .pt import benchmark — ${new Date().toISOString()}, ${cpus()[0]?.model ?? "cpu"} × ${cpus().length}, ` +
    `commit ${execSync("git rev-parse --short HEAD").toString().trim()}`,
);
console.log(`file: ${(size / 2 ** 20).toFixed(0)} MiB, ${sd.size} tensors`);
const ours: number[] = [];
const theirs: number[] = [];
await vilref(); // warm the page cache and the addon
for (let r = 0; r < rounds; r++) {
  ours.push(await vilref());
  const p = python();
  if (p !== null) theirs.push(p);
}
rmSync(dir, { recursive: true, force: true });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (s: number) => `${(size / 2 ** 20 / s).toFixed(0)} MiB/s`;
console.log(`  vilref (validating reader):        ${median(ours).toFixed(3)} s  ${rate(median(ours))}`);
if (theirs.length) {
  console.log(`  baseline: python torch.load        ${median(theirs).toFixed(3)} s  ${rate(median(theirs))}`);
  console.log(`  ratio (baseline time / vilref time): ${(median(theirs) / median(ours)).toFixed(2)}`);
} else console.log("  baseline: python3 cannot import torch; skipped");
