/**
 * Run folders with an owner: a lock file naming the process (pid, host, start time, command) that
 * writes a folder's outputs (`vilref pretrain`'s output, `vilref embed`'s parts, `vilref data
 * pack`'s shards). A second run on the same folder is refused with who holds it; a lock left by a
 * process that is gone (kill -9, a crash, a reboot) is stale and taken over. Liveness is known only
 * on the lock's own host: a lock from another host is refused with the command that clears it.
 *
 * The lock is written whole before it appears (a temporary file hard-linked to the lock's name,
 * which fails when the name exists), so a reader never sees half a lock. On Linux the holder's
 * start time (from /proc) guards against a reused pid. Hand-written: proper-lockfile and
 * lockfile both rely on mtime refreshes and cannot tell a dead process from a slow one.
 */
import { randomBytes } from "node:crypto";
import { linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface LockOwner {
  pid: number;
  host: string;
  /** Process start time in clock ticks since boot (Linux /proc/<pid>/stat field 22), when known. */
  startTicks?: number;
  started: string;
  command: string;
  /** Distinguishes this acquisition from an earlier one by the same process. */
  token: string;
}

export class LockError extends Error {
  override name = "LockError";
  constructor(
    message: string,
    readonly file: string,
    readonly owner: LockOwner | null,
  ) {
    super(message);
  }
}

export interface RunLock {
  readonly file: string;
  readonly owner: LockOwner;
  /** A stale lock was taken over (its owner, null when it was unreadable). */
  readonly stale: boolean;
  readonly replaced: LockOwner | null;
  /** Removes the lock if it is still this one's (idempotent). */
  release(): void;
}

function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may hold spaces and parentheses: count from the last ")"
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** True while the process that wrote `owner` runs (on this host). */
export function ownerAlive(owner: LockOwner): boolean {
  if (owner.pid === process.pid) return true;
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (owner.startTicks === undefined) return true;
  const now = startTicks(owner.pid);
  return now === undefined || now === owner.startTicks;
}

function readOwner(file: string): LockOwner | null | "missing" {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw e;
  }
  try {
    const v = JSON.parse(text) as LockOwner;
    return typeof v.pid === "number" && typeof v.host === "string" ? v : null;
  } catch {
    return null;
  }
}

function describe(o: LockOwner): string {
  return `pid ${o.pid} on ${o.host} (${o.command}, since ${o.started})`;
}

const held = new Set<RunLock>();
let exitHook = false;

/**
 * Takes the lock `file` for this process, or throws a LockError naming its holder. `what` names
 * the folder in messages ("output runs/a").
 */
export function acquireLock(file: string, options: { what?: string; command?: string } = {}): RunLock {
  const what = options.what ?? path.dirname(file);
  const ticks = startTicks(process.pid);
  const owner: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    ...(ticks !== undefined ? { startTicks: ticks } : {}),
    started: new Date().toISOString(),
    command: options.command ?? process.argv.slice(1, 4).join(" "),
    token: randomBytes(8).toString("hex"),
  };
  const tmp = `${file}.${process.pid}.${owner.token}.new`;
  writeFileSync(tmp, JSON.stringify(owner) + "\n");
  let replaced: LockOwner | null = null;
  let stale = false;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 5) throw e;
      }
      const other = readOwner(file);
      if (other === "missing") continue; // released meanwhile
      if (other !== null && other.host !== owner.host)
        throw new LockError(
          `${what} is locked by ${describe(other)}; if that run is gone, remove ${file}`,
          file,
          other,
        );
      if (other !== null && ownerAlive(other))
        throw new LockError(
          `${what} is in use by ${describe(other)}: wait for it to finish or stop it (two runs would mix their ` +
            "outputs)",
          file,
          other,
        );
      // stale (its process is gone) or unreadable: take it over
      replaced = other;
      stale = true;
      try {
        unlinkSync(file);
      } catch {
        /* another process took it over first: try again */
      }
    }
  } finally {
    unlinkSync(tmp);
  }
  const lock: RunLock = {
    file,
    owner,
    stale,
    replaced,
    release() {
      if (!held.delete(lock)) return;
      const now = readOwner(file);
      if (now !== "missing" && now !== null && now.token === owner.token) unlinkSync(file);
    },
  };
  held.add(lock);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const l of [...held]) l.release();
    });
  }
  return lock;
}

/** Runs `fn` holding the lock `file`; releases it however `fn` ends. */
export async function withLock<T>(
  file: string,
  options: { what?: string; command?: string; onStale?: (owner: LockOwner | null) => void },
  fn: (lock: RunLock) => Promise<T>,
): Promise<T> {
  const lock = acquireLock(file, options);
  try {
    if (lock.stale) options.onStale?.(lock.replaced);
    return await fn(lock);
  } finally {
    lock.release();
  }
}
