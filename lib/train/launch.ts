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

/** Starts the workers and resolves when all have exited. */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const n = options.nproc;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`nproc: expected a positive integer, got ${n}`);
  const base = options.env ?? process.env;
  const masterAddr = options.masterAddr ?? "127.0.0.1";
  const masterPort = options.masterPort ?? (await freePort(masterAddr));
  const grace = options.killGraceMs ?? 5000;
  const out = options.stdout ?? process.stdout;
  const err = options.stderr ?? process.stderr;
  // share the cores: torchrun sets OMP_NUM_THREADS=1; we split them unless told otherwise
  const threads = String(Math.max(1, Math.floor(availableParallelism() / n)));
  const children: ChildProcess[] = [];
  const exits: LaunchResult["exits"] = Array.from({ length: n }, () => ({ code: null, signal: null }));
  let failedRank: number | null = null;
  let message: string | null = null;
  let stopping = false;
  const killTimers: NodeJS.Timeout[] = [];

  const stopOthers = () => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    killTimers.push(
      setTimeout(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      }, grace),
    );
  };

  const done = Promise.all(
    Array.from({ length: n }, (_, rank) => {
      const env: NodeJS.ProcessEnv = {
        ...base,
        MASTER_ADDR: masterAddr,
        MASTER_PORT: String(masterPort),
        WORLD_SIZE: String(n),
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: String(n),
        ...(base.VILREF_THREADS === undefined ? { VILREF_THREADS: threads } : {}),
      };
      const [cmd, ...args] = options.command;
      const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
      children.push(child);
      options.onSpawn?.(rank, child);
      for (const [stream, sink] of [
        [child.stdout!, out],
        [child.stderr!, err],
      ] as const) {
        createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) =>
          sink.write(`[rank ${rank}] ${line}\n`),
        );
      }
      return new Promise<void>((resolve) => {
        child.on("error", (e) => {
          if (failedRank === null) {
            failedRank = rank;
            message = `rank ${rank} could not start: ${e.message}`;
          }
          stopOthers();
          resolve();
        });
        child.on("exit", (code, signal) => {
          exits[rank] = { code, signal };
          if ((code !== 0 || signal !== null) && failedRank === null && !stopping) {
            failedRank = rank;
            message = describeExit(rank, code, signal);
            stopOthers();
          }
          resolve();
        });
      });
    }),
  );
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) if (c.exitCode === null) c.kill(signal);
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
    for (const t of killTimers) clearTimeout(t);
  }
  return { code: failedRank === null && exits.every((e) => e.code === 0) ? 0 : 1, failedRank, message, exits };
}
