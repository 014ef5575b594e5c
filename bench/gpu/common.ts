/**
 * What the GPU benchmarks share: options, running a PyTorch baseline (bench/baselines/*.py) and
 * reading its one JSON line, medians, the CUDA peak-memory counters, and the result file that
 * scripts/gpu/report.mjs turns into results.json / results.md. Each benchmark runs on its own too:
 *   npx tsx bench/gpu/<name>.ts --device cuda ... [--json out.json] [--python python3]
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { native } from "../../lib/native.js";

export const argv = process.argv.slice(2);
export function opt(name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : fallback;
}
export const flag = (name: string): boolean => argv.includes(name);
export const baselines = join(dirname(fileURLToPath(import.meta.url)), "..", "baselines");

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};
export const fmt = (x: number | undefined, digits = 1): string =>
  x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);

/** Runs a Python baseline; resolves its last stdout line as JSON, or { error } when it fails. */
export function python<T>(
  interpreter: string,
  script: string,
  args: string[],
  timeoutMs = 600_000,
): Promise<T | { error: string }> {
  if (interpreter === "none") return Promise.resolve({ error: "no Python with torch here (skipped)" });
  return new Promise((resolve) => {
    execFile(
      interpreter,
      [join(baselines, script), ...args],
      { maxBuffer: 64 << 20, timeout: timeoutMs, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
      (err, stdout, stderr) => {
        const last = stdout.trim().split("\n").pop() ?? "";
        if (!err && last.startsWith("{")) return resolve(JSON.parse(last) as T);
        process.stderr.write(stderr);
        resolve({
          error:
            `${script}: ${err?.message.split("\n")[0] ?? "no JSON output"} ` +
            `${stderr.trim().split("\n").pop() ?? ""}`,
        });
      },
    );
  });
}

export const isError = (x: unknown): x is { error: string } =>
  typeof x === "object" && x !== null && "error" in x && typeof (x as { error: unknown }).error === "string";

/** CUDA memory of the device (bytes; all 0 without CUDA). */
export function cudaMemory(device: string): {
  allocated: number;
  reserved: number;
  peakAllocated: number;
  peakReserved: number;
} {
  return native().cudaMemory(device);
}

export interface BenchResult {
  title: string;
  table: { columns: string[]; rows: string[][] };
  notes?: string[];
  [key: string]: unknown;
}

/** Prints the table and writes the JSON (--json FILE) that the GPU run's report reads. */
export function finish(result: BenchResult): void {
  const { columns, rows } = result.table;
  console.log(`\n${result.title}\n`);
  console.log(`| ${columns.join(" | ")} |\n|${columns.map(() => "---").join("|")}|`);
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  for (const n of result.notes ?? []) console.log(`- ${n}`);
  const file = opt("--json", "");
  if (file) writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
}

/** Random host data in [-1.5, 1.5], never zeros; `sets` different arrays to rotate through. */
export function randomImages(sets: number, n: number, resolution: number, seed = 1): Float32Array[] {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 3 - 1.5;
  return Array.from({ length: sets }, () => Float32Array.from({ length: n * 3 * resolution * resolution }, next));
}
