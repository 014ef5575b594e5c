/**
 * A single-machine launcher in the manner of torchrun: starts N worker processes with the
 * environment contract of lib/train/dist.ts (MASTER_ADDR, MASTER_PORT on a free port, WORLD_SIZE,
 * RANK, LOCAL_RANK, LOCAL_WORLD_SIZE), prefixes their output with "[rank N] ", and supervises them:
 * when one exits with an error or a signal, the others are stopped (SIGTERM, then SIGKILL after a
 * grace period) and the result names the rank.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";

export interface LaunchOptions {
  /** Worker processes on this machine. */
  nproc: number;
  /** The program and arguments every worker runs. */
  command: [string, ...string[]];
  /** Base environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  masterAddr?: string;
  /** Default: a free port. */
  masterPort?: number;
  /** Between SIGTERM and SIGKILL of the survivors when a rank fails (default 5000 ms). */
  killGraceMs?: number;
  /** Where the prefixed lines of the workers' stdout and stderr go (default: ours). */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Called with each worker as it starts. */
  onSpawn?: (rank: number, child: ChildProcess) => void;
}

export interface LaunchResult {
  /** 0 when every rank exited with 0. */
  code: number;
  /** The first rank that failed, or null. */
  failedRank: number | null;
  /** What happened to it, e.g. "rank 1 was killed by SIGKILL". */
  message: string | null;
  /** Exit code (or signal) of every rank. */
  exits: { code: number | null; signal: NodeJS.Signals | null }[];
}

/** A TCP port that was free a moment ago (the OS picks it). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("freePort: no port"))));
    });
  });
}

function describeExit(rank: number, code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `rank ${rank} was killed by ${signal}` : `rank ${rank} exited with code ${code}`;
}

/** The workers of one launch and what has become of them. */
interface WorkerGroup {
  children: ChildProcess[];
  exits: LaunchResult["exits"];
  failedRank: number | null;
  message: string | null;
  stopping: boolean;
  killTimers: NodeJS.Timeout[];
  /** Milliseconds between SIGTERM and SIGKILL when one rank fails. */
  grace: number;
}

/** SIGTERM to the ranks still running, SIGKILL after the grace period (once). */
function stopOthers(group: WorkerGroup): void {
  if (group.stopping) return;
  group.stopping = true;
  const { children } = group;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  group.killTimers.push(
    setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }, group.grace),
  );
}

/** The environment torchrun gives a rank: MASTER_ADDR/PORT, WORLD_SIZE, RANK, LOCAL_RANK, ... */
interface RankSpec {
  base: NodeJS.ProcessEnv;
  masterAddr: string;
  masterPort: number;
  n: number;
  /** VILREF_THREADS unless the environment sets it. */
  threads: string;
}

/** Starts one rank, prefixing its output lines; resolves when it exits (a failure stops the others). */
function spawnRank(rank: number, spec: RankSpec, options: LaunchOptions, group: WorkerGroup): Promise<void> {
  const { base, n } = spec;
  const env: NodeJS.ProcessEnv = {
    ...base,
    MASTER_ADDR: spec.masterAddr,
    MASTER_PORT: String(spec.masterPort),
    WORLD_SIZE: String(n),
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    LOCAL_WORLD_SIZE: String(n),
    ...(base.VILREF_THREADS === undefined ? { VILREF_THREADS: spec.threads } : {}),
  };
  const [cmd, ...args] = options.command;
  const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  group.children.push(child);
  options.onSpawn?.(rank, child);
  for (const [stream, sink] of [
    [child.stdout!, options.stdout ?? process.stdout],
    [child.stderr!, options.stderr ?? process.stderr],
  ] as const) {
    createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) =>
      sink.write(`[rank ${rank}] ${line}\n`),
    );
  }
  return new Promise<void>((resolve) => {
    child.on("error", (e) => {
      if (group.failedRank === null) {
        group.failedRank = rank;
        group.message = `rank ${rank} could not start: ${e.message}`;
      }
      stopOthers(group);
      resolve();
    });
    child.on("exit", (code, signal) => {
      group.exits[rank] = { code, signal };
      if ((code !== 0 || signal !== null) && group.failedRank === null && !group.stopping) {
        group.failedRank = rank;
        group.message = describeExit(rank, code, signal);
        stopOthers(group);
      }
      resolve();
    });
  });
}

/** Starts the workers and resolves when all have exited. */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const n = options.nproc;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`nproc: expected a positive integer, got ${n}`);
  const base = options.env ?? process.env;
  const masterAddr = options.masterAddr ?? "127.0.0.1";
  const masterPort = options.masterPort ?? (await freePort(masterAddr));
  // share the cores: torchrun sets OMP_NUM_THREADS=1; we split them unless told otherwise
  const threads = String(Math.max(1, Math.floor(availableParallelism() / n)));
  const group: WorkerGroup = {
    children: [],
    exits: Array.from({ length: n }, () => ({ code: null, signal: null })),
    failedRank: null,
    message: null,
    stopping: false,
    killTimers: [],
    grace: options.killGraceMs ?? 5000,
  };
  const spec: RankSpec = { base, masterAddr, masterPort, n, threads };
  const done = Promise.all(Array.from({ length: n }, (_, rank) => spawnRank(rank, spec, options, group)));
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of group.children) if (c.exitCode === null) c.kill(signal);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  try {
    await done;
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    for (const t of group.killTimers) clearTimeout(t);
  }
  const { failedRank, message, exits } = group;
  return { code: failedRank === null && exits.every((e) => e.code === 0) ? 0 : 1, failedRank, message, exits };
}
