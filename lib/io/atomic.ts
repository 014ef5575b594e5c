/**
 * Output files that are whole or absent: every file vilref writes goes to a temporary file in the
 * same folder, is flushed to disk (fsync), renamed over the target and the folder fsynced. On any
 * failure the temporary file is removed and an existing target is left untouched. A process killed
 * mid-write leaves only a temporary file, named `.<target>.<pid>.<random>.tmp`, which
 * `cleanTempFiles` finds and removes at the next start (under the run's lock, or when its writer is
 * gone). Failures name the path and say what to do (ENOSPC, EROFS, EACCES...).
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import path from "node:path";

/** `.name.<pid>.<12 hex>.tmp`: the temporary files of atomic writes (and `.name.tmp-<pid>` folders of checkpoints). */
const TEMP_FILE = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/;
const TEMP_DIR = /^\..+\.tmp-(\d+)$/;

export function tempPathFor(file: string): string {
  const dir = path.dirname(path.resolve(file));
  return path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

const HINTS: Record<string, string> = {
  ENOSPC: "no space left on the device; free some and run again",
  EDQUOT: "disk quota exceeded; free some and run again",
  EROFS: "the file system is read-only; write the output elsewhere",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "the folder does not exist",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "it is a folder",
  EMFILE: "too many open files",
};

/** An output that could not be written: the path, what was being done, and the system's code. */
export class OutputError extends Error {
  override name = "OutputError";
  constructor(
    message: string,
    readonly path: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Turns a file-system error into one that names `file` and the action (kept as is when it already does). */
export function describeWriteError(e: unknown, file: string, action = "cannot write"): Error {
  if (e instanceof OutputError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  const hint = code && HINTS[code] ? HINTS[code] : ((e as Error)?.message ?? String(e));
  return new OutputError(`${file}: ${action}: ${hint}${code ? ` (${code})` : ""}`, file, code, { cause: e });
}

function syncDir(dir: string): void {
  // Persist the rename itself; not every platform lets a folder be opened, so best effort.
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

/** syncDir off the event loop (on libuv's pool), for the asynchronous writer. */
async function syncDirAsync(dir: string): Promise<void> {
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* best effort */
  }
}

type Chunks = string | Uint8Array | readonly Uint8Array[];

function toParts(data: Chunks): Uint8Array[] {
  if (typeof data === "string") return [Buffer.from(data, "utf8")];
  return data instanceof Uint8Array ? [data] : [...data];
}

export interface AtomicOptions {
  /** Flush to disk before the rename (default true). Bulk outputs (thousands of images) may skip it: a
   * crash then can lose recent files, never leave a partial one. */
  fsync?: boolean;
}

/** Writes `data` to `file` atomically (see the module comment). */
export async function atomicWriteFile(file: string, data: Chunks, options: AtomicOptions = {}): Promise<void> {
  const parts = toParts(data);
  const tmp = tempPathFor(file);
  let renamed = false;
  try {
    const handle = await open(tmp, "wx", 0o644);
    try {
      for (const part of parts) {
        let written = 0;
        while (written < part.length) {
          const { bytesWritten } = await handle.write(part, written, part.length - written);
          written += bytesWritten;
        }
      }
      if (options.fsync !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    renamed = true;
    if (options.fsync !== false) await syncDirAsync(path.dirname(path.resolve(file)));
  } catch (e) {
    throw describeWriteError(e, file);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/** The synchronous twin of atomicWriteFile. */
export function atomicWriteFileSync(file: string, data: Chunks, options: AtomicOptions = {}): void {
  const parts = toParts(data);
  const tmp = tempPathFor(file);
  let renamed = false;
  try {
    const fd = openSync(tmp, "wx", 0o644);
    try {
      for (const part of parts) {
        let written = 0;
        while (written < part.length) written += writeSync(fd, part, written, part.length - written);
      }
      if (options.fsync !== false) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    renamed = true;
    if (options.fsync !== false) syncDir(path.dirname(path.resolve(file)));
  } catch (e) {
    throw describeWriteError(e, file);
  } finally {
    if (!renamed)
      try {
        unlinkSync(tmp);
      } catch {
        /* never created */
      }
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the temporary files (and `.x.tmp-<pid>` folders) of atomic writes in `dir` whose writer is
 * gone — or all of them with `all` (the caller holds the lock of the folder, so nobody else writes
 * there). Returns the paths removed. Missing folders are fine.
 */
export function cleanTempFiles(dir: string, options: { all?: boolean } = {}): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_FILE.exec(name) ?? TEMP_DIR.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (!options.all && alive(pid)) continue;
    if (options.all && pid === process.pid) continue; // this process's own writes in flight
    const p = path.join(dir, name);
    try {
      const isDir = statSync(p).isDirectory();
      rmSync(p, { recursive: isDir, force: true });
      removed.push(p);
    } catch {
      /* raced with its owner */
    }
  }
  return removed;
}
