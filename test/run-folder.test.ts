// Run folders with an owner (issue 22): the lock, atomic writes and their clean-up, and pretrain's
// refusal to mix runs: a finished run is not replaced without --overwrite, two runs on one output do
// not both start, a run killed after its last checkpoint is finished by --resume, a full disk leaves
// no half file and the error names the path.
import test from "ava";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { atomicWriteFile, atomicWriteFileSync, cleanTempFiles, OutputError } from "../lib/io/atomic.js";
import { acquireLock, LockError } from "../lib/io/lock.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import type { PretrainConfigInput } from "../lib/train/config.js";
import { listCheckpoints, pretrain, type ProgressEvent } from "../lib/train/pretrain.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-runfolder-"));
const trainDir = path.join(root, "train");
test.before(async () => {
  await writeSynthDataset(trainDir, 24, 11, { size: 32 });
});
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const config = (output: string, extra: Partial<PretrainConfigInput> = {}): PretrainConfigInput => ({
  model: { preset: "tiny-vit" },
  data: { train: path.join(trainDir, "manifest.jsonl") },
  batchSize: 8,
  steps: 3,
  text: { contextLength: 16, vocabSize: 300 },
  queue: { size: 16 },
  checkpoint: { every: 0, keep: 2 },
  seed: 3,
  threads: 2,
  output,
  ...extra,
});

/** A process that holds `lock` until it is killed; resolves with it once the lock is taken. */
function lockHolder(lock: string): Promise<import("node:child_process").ChildProcess> {
  const lockModule = fileURLToPath(new URL("../lib/io/lock.ts", import.meta.url));
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `const { acquireLock } = await import(${JSON.stringify(lockModule)}); ` +
        `acquireLock(${JSON.stringify(lock)}, { command: "holder" }); console.log("held"); setInterval(() => {}, ` +
        "1000);",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("held") && resolve(child));
    child.on("exit", (code) => reject(new Error(`lock holder exited (${code})`)));
  });
}

const exited = (p: import("node:child_process").ChildProcess) =>
  new Promise<void>((resolve) =>
    p.exitCode !== null || p.signalCode !== null ? resolve() : p.on("exit", () => resolve()),
  );

test("the lock: one owner; a dead owner's lock is taken over; another host's is refused with the fix", async (t) => {
  const dir = path.join(root, "locks");
  mkdirSync(dir);
  const file = path.join(dir, "run.lock");
  const a = acquireLock(file, { what: "output X", command: "test" });
  t.is(JSON.parse(readFileSync(file, "utf8")).pid, process.pid);
  const e = t.throws(() => acquireLock(file, { what: "output X" }), { instanceOf: LockError });
  t.regex(e!.message, new RegExp(`^output X is in use by pid ${process.pid} on ${hostname()} \\(test, since `));
  a.release();
  t.false(existsSync(file));
  a.release(); // idempotent
  // held by another live process, then that process killed -9: stale, taken over
  const holder = await lockHolder(file);
  t.throws(() => acquireLock(file), { instanceOf: LockError, message: new RegExp(`in use by pid ${holder.pid}`) });
  holder.kill("SIGKILL");
  await exited(holder);
  const b = acquireLock(file);
  t.true(b.stale);
  t.is(b.replaced?.pid, holder.pid);
  b.release();
  // a lock from another host cannot be checked: refused, with the command that clears it
  writeFileSync(file, JSON.stringify({ pid: 1, host: "elsewhere", started: "then", command: "x", token: "t" }));
  t.throws(() => acquireLock(file, { what: "output Y" }), {
    instanceOf: LockError,
    message: `output Y is locked by pid 1 on elsewhere (x, since then); if that run is gone, remove ${file}`,
  });
  // a torn lock (a crash while it was written by an older writer) is taken over
  writeFileSync(file, '{"pid": 12');
  const c = acquireLock(file);
  t.true(c.stale);
  c.release();
});

test("atomic writes: a failure keeps the old file and leaves no temporary; \
stale temporaries are cleaned", async (t) => {
  const dir = path.join(root, "atomic");
  mkdirSync(dir);
  const file = path.join(dir, "out.txt");
  await atomicWriteFile(file, "good\n");
  atomicWriteFileSync(file, "better\n");
  t.is(readFileSync(file, "utf8"), "better\n");
  // a write into a missing folder names the path and the reason
  const e = await t.throwsAsync(atomicWriteFile(path.join(dir, "nope", "x.txt"), "x"), { instanceOf: OutputError });
  t.regex(e!.message, /nope\/x\.txt: cannot write: the folder does not exist \(ENOENT\)/);
  // temporaries of a dead writer (pid 2^22 + 1 does not exist) are removed; a live one's are kept
  const dead = path.join(dir, `.out.txt.${2 ** 22 + 1}.0123456789ab.tmp`);
  const live = path.join(dir, `.out.txt.${process.pid}.0123456789ab.tmp`);
  const deadDir = path.join(dir, `.step-00000004.tmp-${2 ** 22 + 1}`);
  writeFileSync(dead, "half");
  writeFileSync(live, "in flight");
  mkdirSync(deadDir);
  t.deepEqual(cleanTempFiles(dir).sort(), [deadDir, dead].sort());
  t.true(existsSync(live));
  t.deepEqual(readdirSync(dir).sort(), [live, file].map((f) => path.basename(f)).sort());
});

test.serial("pretrain into a folder holding a finished run is refused; --overwrite replaces it", async (t) => {
  const out = path.join(root, "finished");
  await pretrain(config(out));
  const before = {
    metrics: readFileSync(path.join(out, "metrics.jsonl")),
    model: readFileSync(path.join(out, "final", "model.safetensors")),
    checkpoints: listCheckpoints(out).map((c) => c.step),
  };
  const e = await t.throwsAsync(pretrain(config(out, { seed: 9 })));
  t.is(
    e!.message,
    `output ${out} holds a run (1 checkpoint(s) up to step 3, a final model, metrics.jsonl): ` +
      "--resume continues it, --overwrite replaces it, or choose another output",
  );
  t.deepEqual(readFileSync(path.join(out, "metrics.jsonl")), before.metrics, "metrics.jsonl untouched");
  t.deepEqual(readFileSync(path.join(out, "final", "model.safetensors")), before.model, "final model untouched");
  t.deepEqual(
    listCheckpoints(out).map((c) => c.step),
    before.checkpoints,
  );
  t.false(existsSync(path.join(out, ".vilref-run.lock")), "the refused run released the lock");
  const notices: string[] = [];
  await pretrain(config(out, { seed: 9 }), {
    overwrite: true,
    onProgress: (ev: ProgressEvent) => ev.kind === "notice" && notices.push(ev.message),
  });
  t.regex(notices.join("\n"), /overwriting the run in .*finished/);
  t.notDeepEqual(readFileSync(path.join(out, "final", "model.safetensors")), before.model, "a new model");
  await t.throwsAsync(pretrain(config(out), { resume: true, overwrite: true }), { message: /give one, not both/ });
});

test.serial(
  "--resume of a run killed before its first checkpoint starts it again and ends as a clean run",
  async (t) => {
    const clean = await pretrain(config(path.join(root, "clean-early")));
    const out = path.join(root, "early");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "metrics.jsonl"), '{"step":1,"loss":9}\n'); // what a killed run logged
    const notices: string[] = [];
    const resumed = await pretrain(config(out), {
      resume: true,
      onProgress: (ev: ProgressEvent) => ev.kind === "notice" && notices.push(ev.message),
    });
    t.regex(notices.join("\n"), /no checkpoint in .*early yet \(metrics\.jsonl\): the run starts again at step 0/);
    t.deepEqual(
      readFileSync(path.join(out, "final", "model.safetensors")),
      readFileSync(path.join(root, "clean-early", "final", "model.safetensors")),
    );
    t.deepEqual(resumed.losses, clean.losses, "every step ran again, as in the clean run");
    t.notRegex(readFileSync(path.join(out, "metrics.jsonl"), "utf8"), /"loss":9\b/, "the killed run's lines are gone");
  },
);

test.serial("--resume of a run killed after its last checkpoint writes the final model and curves", async (t) => {
  const out = path.join(root, "killed");
  const full = await pretrain(config(out));
  t.is(full.step, 3);
  const finalModel = readFileSync(path.join(out, "final", "model.safetensors"));
  // the state kill -9 leaves right after the final checkpoint: no final model, no curves yet,
  // and a half-written temporary of the final model
  rmSync(path.join(out, "final"), { recursive: true });
  rmSync(path.join(out, "curves.png"));
  mkdirSync(path.join(out, "final"));
  const temp = path.join(out, "final", `.model.safetensors.${2 ** 22 + 3}.abcdefabcdef.tmp`);
  writeFileSync(temp, "half a model");
  const events: ProgressEvent[] = [];
  const r = await pretrain(config(out), { resume: true, onProgress: (e) => events.push(e) });
  t.is(r.step, 3);
  t.true(existsSync(path.join(out, "curves.png")), "curves written");
  t.deepEqual(readFileSync(path.join(out, "final", "model.safetensors")), finalModel, "the same final model");
  t.false(existsSync(temp), "the killed run's temporary is gone");
  const notices = events.flatMap((e) => (e.kind === "notice" ? [e.message] : []));
  t.regex(notices.join("\n"), /removed 1 unfinished file/);
  t.regex(notices.join("\n"), /already at its last step \(3\)/);
  t.is(events.at(-1)!.kind, "done", "done comes after the final model exists");
});

test.serial("two runs on one output: the second is refused while the first runs", async (t) => {
  const out = path.join(root, "twice");
  const first = pretrain(config(out, { steps: 6 }));
  await new Promise((r) => setTimeout(r, 50)); // the first has claimed the folder (synchronously) by now
  const e = await t.throwsAsync(pretrain(config(out, { steps: 6 })));
  t.regex(e!.message, new RegExp(`^output ${out.replace(/[/\\]/g, "\\$&")} is in use by pid ${process.pid}`));
  const r = await first;
  t.is(r.step, 6);
  t.deepEqual(
    readFileSync(path.join(out, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).step)
      .filter((s: number) => s > 0),
    [1, 2, 3, 4, 5, 6],
    "one run's metrics, each step once",
  );
  // another process holding the output: refused with its pid; once it is killed, taken over
  const other = path.join(root, "other");
  mkdirSync(other);
  const holder = await lockHolder(path.join(other, ".vilref-run.lock"));
  await t.throwsAsync(pretrain(config(other)), { message: new RegExp(`in use by pid ${holder.pid} .*holder`) });
  holder.kill("SIGKILL");
  await exited(holder);
  const notices: string[] = [];
  await pretrain(config(other), { onProgress: (ev) => ev.kind === "notice" && notices.push(ev.message) });
  t.regex(notices.join("\n"), new RegExp(`took over .* from pid ${holder.pid} \\(gone\\)`));
});

/** A tmpfs of `size` at a fresh mount point, or null when this process may not mount. */
function tmpfs(size: string): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-full-"));
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return dir;
}

function unmount(dir: string): void {
  spawnSync("umount", [dir]);
  rmSync(dir, { recursive: true, force: true });
}

test.serial("a full disk: the error names the path; no half checkpoint or temporary is left", async (t) => {
  const disk = tmpfs("1200k");
  if (!disk) {
    t.log("SKIPPED: cannot mount a tmpfs here (not root, or no mount permission)");
    t.pass();
    return;
  }
  try {
    const out = path.join(disk, "run");
    const e = await t.throwsAsync(pretrain(config(out)));
    t.regex(
      e!.message,
      new RegExp(`^${disk}/run/\\S+: cannot write: no space left on the device; free some and run again \\(ENOSPC\\)`),
    );
    const left = spawnSync("find", [out], { encoding: "utf8" }).stdout.trim().split("\n");
    t.deepEqual(
      left.filter((f) => /\.tmp(-\d+)?$|\.tmp$/.test(path.basename(f))),
      [],
      "no temporaries left",
    );
    t.false(existsSync(path.join(out, "checkpoints", "step-00000003")), "no half checkpoint");
    t.false(existsSync(path.join(out, ".vilref-run.lock")), "the lock released");
    // an existing good file is kept whole when its replacement does not fit
    const good = path.join(disk, "good.txt");
    writeFileSync(good, "the previous good output\n");
    rmSync(out, { recursive: true, force: true });
    const big = Buffer.alloc(4 * 2 ** 20, 1);
    await t.throwsAsync(atomicWriteFile(good, big), {
      instanceOf: OutputError,
      message: /good\.txt: cannot write: no space left/,
    });
    t.is(readFileSync(good, "utf8"), "the previous good output\n");
    t.deepEqual(readdirSync(disk), ["good.txt"], "no temporary left");
  } finally {
    unmount(disk);
  }
});
