// `vilref pretrain CONFIG` killed with SIGKILL at a random step, then `--resume`: the losses of the
// whole run equal those of an uninterrupted run, bit for bit, and every checkpoint left is whole.
import test from "ava";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseSafetensors } from "../lib/checkpoint/safetensors.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { listCheckpoints } from "../lib/train/pretrain.js";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(packageRoot, "bin", "vilref.js");
const STEPS = 14;

function config(output: string, train: string) {
  return {
    model: { preset: "tiny-vit" },
    data: { train },
    batchSize: 8,
    steps: STEPS,
    text: { contextLength: 32, vocabSize: 600 },
    schedule: { lr: 2e-3, warmupSteps: 3 },
    queue: { size: 20 },
    momentum: 0.99,
    seed: 5,
    threads: 2,
    output,
    logEvery: 1,
    checkpoint: { every: 1, keep: 2 },
  };
}

interface Child {
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  kill: () => void;
}

function run(args: string[]): Child {
  const p = spawn(process.execPath, [bin, "pretrain", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, VILREF_THREADS: "2" },
  });
  let stderr = "";
  p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    done: new Promise((resolve) => p.on("close", (code, signal) => resolve({ code, signal, stderr }))),
    kill: () => p.kill("SIGKILL"),
  };
}

const losses = (dir: string) =>
  readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { type: string; step: number; loss?: number })
    .filter((l) => l.type === "train")
    .map((l) => [l.step, l.loss]);

test("a run killed with SIGKILL at a random step resumes exactly", async (t) => {
  if (!existsSync(path.join(packageRoot, "dist", "cli", "main.js")))
    return t.fail("dist/ is missing: run `npm run setup` (npm test does it first)");
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-kill-"));
  await writeSynthDataset(path.join(dir, "data"), 40, 9, { size: 32 });
  const train = path.join(dir, "data", "manifest.jsonl");
  writeFileSync(path.join(dir, "full.json"), JSON.stringify(config(path.join(dir, "full"), train)));
  writeFileSync(path.join(dir, "cut.json"), JSON.stringify(config(path.join(dir, "cut"), train)));

  const full = await run([path.join(dir, "full.json")]).done;
  t.is(full.code, 0, full.stderr);

  // Kill after a random number of logged steps (1..STEPS-2): the process may be anywhere in a
  // step, in a checkpoint write or between them.
  const killAt = 1 + Math.floor(Math.random() * (STEPS - 2));
  t.log(`killing after step ${killAt} was logged`);
  const cut = run([path.join(dir, "cut.json")]);
  const metrics = path.join(dir, "cut", "metrics.jsonl");
  let killed = false;
  const poll = setInterval(() => {
    if (killed || !existsSync(metrics)) return;
    const n = readFileSync(metrics, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "").length;
    if (n >= killAt) {
      killed = true;
      cut.kill();
    }
  }, 5);
  const ended = await cut.done;
  clearInterval(poll);
  t.is(ended.signal, "SIGKILL", "the run was killed before it finished");
  const left = listCheckpoints(path.join(dir, "cut"));
  t.true(left.length <= 2 && left.every((c) => c.step <= STEPS - 1), JSON.stringify(left));
  // every checkpoint left behind is whole (written to a temporary name, fsynced, renamed)
  for (const c of left)
    for (const f of ["model.safetensors", "trainer.safetensors"])
      t.notThrows(() => parseSafetensors(readFileSync(path.join(c.path, f))), `${c.path}/${f}`);

  const resumed = await run([path.join(dir, "cut.json"), "--resume"]).done;
  t.is(resumed.code, 0, resumed.stderr);
  const a = losses(path.join(dir, "full"));
  t.is(a.length, STEPS);
  t.deepEqual(losses(path.join(dir, "cut")), a, "the interrupted-and-resumed run logged the same losses, step by step");
  const wa = parseSafetensors(readFileSync(path.join(dir, "full", "final", "model.safetensors"))).tensors;
  const wb = parseSafetensors(readFileSync(path.join(dir, "cut", "final", "model.safetensors"))).tensors;
  t.deepEqual([...wb.keys()], [...wa.keys()]);
  for (const [k, v] of wa) {
    const u = wb.get(k)!.data;
    t.true(
      Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).equals(
        Buffer.from(u.buffer, u.byteOffset, u.byteLength),
      ),
      `${k} is bit-equal`,
    );
  }
});
