/**
 * The fuzz harness (issue 22): seeded generators of malformed `.pt` zips and pickles, safetensors,
 * images, manifests and configs, each case run in a worker process so that a crash (a signal) or a
 * hang (no answer within --timeout) is caught and reported with its seed and case index.
 *
 *   npm run fuzz -- --count 100000 --seed 7 [--jobs 2] [--targets pt,safetensors] [--json out.json]
 *   npm run fuzz -- --seed 7 --case 1234 [--dump case.bin]      one case, in this process, with its bytes
 *
 * Outcomes: ok (valid input read right), error (an Error naming the culprit), and the failures:
 * crash, hang, silent (a malformed-by-construction input accepted), wrong-result (a valid input read
 * wrong), bad-error (an error that does not name the file/culprit, or LibTorch internals),
 * generator-error. Exit status 1 when any failure occurred. test/fuzz.test.ts runs a CI subset.
 */
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { judge } from "./case.js";
import { caseAt, TARGETS } from "./targets/index.js";
import type { WorkerMessage, WorkRequest } from "./worker.js";

export interface FuzzFailure {
  index: number;
  kind: string;
  status: string;
  detail: string;
  message?: string;
}

export interface FuzzSummary {
  seed: number;
  count: number;
  seconds: number;
  /** outcome → count */
  outcomes: Record<string, number>;
  /** kind → outcome → count */
  kinds: Record<string, Record<string, number>>;
  failures: FuzzFailure[];
  maxWorkerRss: number;
}

const FAILING = new Set(["crash", "hang", "silent", "wrong-result", "bad-error", "generator-error"]);
const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url));

interface Options {
  seed: number;
  count: number;
  jobs: number;
  timeoutMs: number;
  chunk: number;
  only?: string[];
  onProgress?: (done: number) => void;
}

/** Runs cases [0, count) of `seed` in worker processes; resolves with the summary. */
export async function fuzz(o: Options): Promise<FuzzSummary> {
  const t0 = performance.now();
  const summary: FuzzSummary = {
    seed: o.seed,
    count: o.count,
    seconds: 0,
    outcomes: {},
    kinds: {},
    failures: [],
    maxWorkerRss: 0,
  };
  const record = (index: number, kind: string, status: string, detail = "", message?: string) => {
    summary.outcomes[status] = (summary.outcomes[status] ?? 0) + 1;
    const k = (summary.kinds[kind] ??= {});
    k[status] = (k[status] ?? 0) + 1;
    if (FAILING.has(status))
      summary.failures.push({ index, kind, status, detail, ...(message !== undefined ? { message } : {}) });
  };
  let next = 0;
  let done = 0;
  const takeChunk = (): [number, number] | null => {
    if (next >= o.count) return null;
    const from = next;
    next = Math.min(o.count, next + o.chunk);
    return [from, next];
  };
  // One lane per job: a worker per chunk; a crash or hang ends the worker, the rest of the chunk goes to a new one.
  const lane = async () => {
    for (let range = takeChunk(); range; range = takeChunk()) {
      let [from, to] = range;
      while (from < to) {
        const r = await runChunk(o, from, to, (index, kind, status, detail, message) => {
          record(index, kind, status, detail, message);
          o.onProgress?.(++done);
        });
        summary.maxWorkerRss = Math.max(summary.maxWorkerRss, r.rss);
        from = r.resumeAt;
      }
    }
  };
  await Promise.all(Array.from({ length: o.jobs }, lane));
  summary.failures.sort((a, b) => a.index - b.index);
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}

type Report = (index: number, kind: string, status: string, detail?: string, message?: string) => void;

/** Runs [from, to) in one worker; resolves with where to resume (to, or past a crashed/hung case). */
function runChunk(o: Options, from: number, to: number, report: Report): Promise<{ resumeAt: number; rss: number }> {
  return new Promise((resolve) => {
    const child: ChildProcess = fork(workerPath, [], {
      execArgv: ["--import", "tsx", "--expose-gc"],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    let current = -1;
    let timer: NodeJS.Timeout | undefined;
    let hung = false;
    let rss = 0;
    let finished = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        child.kill("SIGKILL");
      }, o.timeoutMs);
    };
    child.on("message", (m: WorkerMessage) => {
      if (m.type === "ready") {
        const req: WorkRequest = { seed: o.seed, from, to, ...(o.only ? { only: o.only } : {}) };
        child.send(req);
      } else if (m.type === "start") {
        current = m.index;
        arm();
      } else if (m.type === "done") {
        current = -1;
        clearTimeout(timer);
        report(m.index, m.kind, m.status, m.detail ?? "", m.message);
      } else if (m.type === "idle") {
        finished = true;
        rss = m.rss;
        child.kill();
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (finished) return resolve({ resumeAt: to, rss });
      const index = current >= 0 ? current : from;
      let kind = "?";
      try {
        kind = caseAt(o.seed, index, o.only).case.kind;
      } catch {
        /* reported as generator-error by the worker */
      }
      const how = hung ? "hang" : "crash";
      const detail = hung
        ? `no answer within ${o.timeoutMs} ms`
        : "worker exited " +
          `(${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}`;
      report(index, kind, current >= 0 ? how : "crash", detail);
      resolve({ resumeAt: index + 1, rss });
    });
  });
}

/** One case in this process (to reproduce a failure): prints the outcome; writes the bytes to `dump`. */
export async function runOne(seed: number, index: number, dump?: string, only?: string[]): Promise<void> {
  const { target, case: c } = caseAt(seed, index, only);
  const scratch = mkdtempSync(join(tmpdir(), "vilref-fuzz-one-"));
  try {
    for (const [t] of TARGETS) await t.setup(scratch);
    const path = join(scratch, c.file);
    writeFileSync(path, c.bytes);
    if (dump) writeFileSync(dump, c.bytes);
    console.log(
      `seed ${seed} case ${index}: ${c.kind} (${c.mustFail ? "must fail" : "either"}), ${c.bytes.length} bytes`,
    );
    console.log(JSON.stringify(await judge(target, c, path), null, 2));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function table(s: FuzzSummary): string {
  const statuses = ["ok", "error", ...FAILING];
  const lines = [`kind${" ".repeat(30)}${statuses.map((x) => x.padStart(9)).join("")}`];
  for (const [kind, counts] of Object.entries(s.kinds).sort())
    lines.push(kind.padEnd(34) + statuses.map((x) => String(counts[x] ?? "").padStart(9)).join(""));
  return lines.join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: "2000" },
      seed: { type: "string" },
      jobs: { type: "string", default: "1" },
      timeout: { type: "string", default: "60000" },
      chunk: { type: "string", default: "1000" },
      targets: { type: "string" },
      case: { type: "string" },
      dump: { type: "string" },
      json: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const int = (name: string, v: string | undefined, lo: number) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < lo) throw new RangeError(`--${name}: expected an integer ≥ ${lo}, got ${v}`);
    return n;
  };
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : int("seed", values.seed, 0);
  const only = values.targets?.split(",").map((s) => s.trim());
  if (values.case !== undefined) {
    await runOne(seed, int("case", values.case, 0), values.dump, only);
    return 0;
  }
  const count = int("count", values.count, 1);
  let last = 0;
  const s = await fuzz({
    seed,
    count,
    jobs: int("jobs", values.jobs, 1),
    timeoutMs: int("timeout", values.timeout, 1),
    chunk: int("chunk", values.chunk, 1),
    ...(only ? { only } : {}),
    onProgress: (done) => {
      if (values.quiet || (done - last < 5000 && done !== count)) return;
      last = done;
      console.error(`${done}/${count} cases`);
    },
  });
  console.log(table(s));
  const failed = s.failures.length;
  console.log(
    `\nseed ${seed}, ${count} cases in ${s.seconds.toFixed(0)} s: ${failed} failures ` +
      `(crash ${s.outcomes.crash ?? 0}, hang ${s.outcomes.hang ?? 0}, silent ${s.outcomes.silent ?? 0}, ` +
      `wrong ${s.outcomes["wrong-result"] ?? 0}, bad error ${s.outcomes["bad-error"] ?? 0}); ` +
      `largest worker RSS ${(s.maxWorkerRss / 2 ** 20).toFixed(0)} MiB`,
  );
  for (const f of s.failures.slice(0, 50))
    console.log(`  case ${f.index} ${f.kind}: ${f.status} — ${f.detail}${f.message ? ` — ${f.message}` : ""}`);
  if (failed) console.log(`reproduce one: npm run fuzz -- --seed ${seed} --case ${s.failures[0]!.index}`);
  if (values.json) writeFileSync(values.json, JSON.stringify(s, null, 2) + "\n");
  return failed ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = await main();
