// The progress renderer (lib/progress.ts) with a fake stream and a fake clock: one redrawn line on a
// terminal (cut to its width), plain lines every few seconds elsewhere (never a carriage return),
// silence under --no-progress; and the commands' --no-progress.
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { formatDuration, progress } from "../lib/progress.js";
import type { ProgressStream } from "../lib/progress.js";
import { writeSynthDataset } from "../lib/synth/index.js";

function fake(tty: boolean, columns?: number) {
  const writes: string[] = [];
  const stream: ProgressStream = { isTTY: tty, ...(columns ? { columns } : {}), write: (s: string) => writes.push(s) };
  let now = 1000;
  return { stream, writes, clock: () => now, advance: (ms: number) => (now += ms) };
}

test("not a terminal: a line at the first tick, then one per interval, a summary at done; never \\r", (t) => {
  const f = fake(false);
  const p = progress({ total: 100, label: "embed", unit: "img", stream: f.stream, clock: f.clock, interval: 5 });
  f.advance(1000);
  p.tick(10);
  t.deepEqual(f.writes, ["embed: 10/100 img 10%, 10.0 img/s, ETA 0:09\n"]);
  for (let i = 0; i < 4; i++) {
    f.advance(1000);
    p.tick(10);
  }
  t.is(f.writes.length, 1, "nothing until the interval has passed");
  f.advance(1000);
  p.status("loss 0.1234");
  p.tick(10);
  t.is(f.writes[1], "embed: 60/100 img 60%, 10.0 img/s, ETA 0:04; loss 0.1234\n");
  p.log("skipped a.png: truncated");
  f.advance(4000);
  p.tick(40);
  p.done();
  p.done();
  t.deepEqual(f.writes.slice(2), ["skipped a.png: truncated\n", "embed: 100 img in 0:10 (10.0 img/s); loss 0.1234\n"]);
  t.false(f.writes.join("").includes("\r"));
});

test("a terminal: one line redrawn with \\r, at most every 100 ms, cut to the width; log lines above it", (t) => {
  const f = fake(true, 100);
  const p = progress({ total: 50, label: "train", unit: "step", stream: f.stream, clock: f.clock, already: 10 });
  f.advance(2000);
  p.tick(4);
  t.is(f.writes.length, 1);
  t.is(f.writes[0], "\rtrain  [########----------------------]  14/50 step 28%  2.00 step/s  ETA 0:18\x1b[K");
  f.advance(50);
  p.tick();
  t.is(f.writes.length, 1, "throttled");
  f.advance(60);
  p.tick();
  t.is(f.writes.length, 2);
  p.log("checkpoint ck-16");
  t.deepEqual(f.writes.slice(2, 4), ["\r\x1b[K", "checkpoint ck-16\n"]);
  t.true(f.writes[4]!.startsWith("\rtrain  ["), "the bar is redrawn under the log line");
  p.status("loss 0.5 " + "x".repeat(200));
  f.advance(200);
  p.tick();
  const line = f.writes
    .at(-1)!
    .replace(/^\r/, "")
    .replace(/\x1b\[K$/, "");
  t.true(line.length <= 99, `${line.length} columns`);
  t.true(line.endsWith("…"));
  t.true(line.startsWith("train  17/50 step"), "no room for a bar: it goes first");
  p.done("done");
  t.true(f.writes.at(-1)!.endsWith("done\x1b[K\n"));
});

test("a narrow terminal keeps a short bar; an unknown total shows count, rate and elapsed time", (t) => {
  const f = fake(true, 60);
  const p = progress({ total: 1000, stream: f.stream, clock: f.clock });
  f.advance(1000);
  p.tick(250);
  const line = f.writes[0]!.slice(1, -3);
  t.true(line.length <= 59, line);
  t.regex(line, /^\[#+-+\]  250\/1000 it 25%  250 it\/s  ETA 0:03$/);
  const g = fake(false);
  const q = progress({ label: "segment", unit: "step", stream: g.stream, clock: g.clock });
  g.advance(5000);
  q.tick(5);
  t.is(g.writes[0], "segment: 5 step, 1.00 step/s, 0:05\n");
});

test("enabled: false (and progress(false)) writes nothing but log lines", (t) => {
  for (const make of [
    (s: ProgressStream, c: () => number) => progress({ total: 3, stream: s, clock: c, enabled: false }),
    () => progress(false),
  ]) {
    const f = fake(false);
    const p = make(f.stream, f.clock);
    p.tick();
    f.advance(10_000);
    p.tick(2);
    p.done();
    t.is(p.count, 3);
    t.deepEqual(f.writes, []);
  }
  const f = fake(true);
  const p = progress({ total: 3, stream: f.stream, clock: f.clock, enabled: false });
  p.log("a message");
  t.deepEqual(f.writes, ["a message\n"]);
});

test("rate leaves resumed units out; durations", (t) => {
  const f = fake(false);
  const p = progress({ total: 100, already: 60, stream: f.stream, clock: f.clock });
  f.advance(4000);
  p.tick(20);
  t.is(p.count, 80);
  t.is(p.rate, 5);
  t.is(f.writes[0], "80/100 it 80%, 5.00 it/s, ETA 0:04\n");
  t.is(formatDuration(3725), "1:02:05");
  t.is(formatDuration(65), "1:05");
  t.is(formatDuration(Number.NaN), "--:--");
});

test.serial("--no-progress silences the bars of a command; without it, plain lines go to stderr", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-progress-"));
  await writeSynthDataset(path.join(dir, "ds"), 4, 1, { size: 64 });
  const manifest = path.join(dir, "ds", "manifest.jsonl");
  const runCaptured = async (...args: string[]) => {
    let stderr = "";
    const ew = process.stderr.write.bind(process.stderr);
    const ow = process.stdout.write.bind(process.stdout);
    (process.stderr as { write: unknown }).write = (s: string) => ((stderr += s), true);
    (process.stdout as { write: unknown }).write = () => true;
    try {
      const code = await main(["node", "vilref", ...args], { err: (s) => (stderr += s) });
      return { code, stderr };
    } finally {
      (process.stderr as { write: unknown }).write = ew;
      (process.stdout as { write: unknown }).write = ow;
    }
  };
  const embed = (out: string, ...extra: string[]) =>
    runCaptured("embed", "--model", "pool-head:8", "--images", manifest, "--image-size", "32", "--out", out, ...extra);
  let r = await embed(path.join(dir, "a.npy"));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^embed: 4\/4 img 100%/m);
  t.regex(r.stderr, /^embed: 4 img in \d+:\d\d/m);
  t.false(r.stderr.includes("\r"));
  r = await embed(path.join(dir, "b.npy"), "--no-progress");
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, "");
  r = await runCaptured("data", "check", manifest);
  t.regex(r.stderr, /^data check: 4 img in /m);
  r = await runCaptured("data", "check", manifest, "--no-progress");
  t.is(r.stderr, "");
  // the evals show their encoding
  writeFileSync(
    path.join(dir, "ds", "eval.jsonl"),
    readFileSync(manifest, "utf8")
      .trim()
      .split("\n")
      .map((l, i) => JSON.stringify({ ...JSON.parse(l), split: ["train", "train", "val", "test"][i] }))
      .join("\n") + "\n",
  );
  const probe = (...extra: string[]) =>
    runCaptured("eval", "probe", "--model", "preset:tiny-vit", "--data", path.join(dir, "ds", "eval.jsonl"), ...extra);
  r = await probe("--bootstrap", "0", "--c-grid", "1");
  t.regex(r.stderr, /^probe: encoding images: 2\/2 img 100%/m, r.stderr);
  t.regex(r.stderr, /^probe: encoding images: 1 img in /m, r.stderr);
  r = await probe("--bootstrap", "0", "--c-grid", "1", "--no-progress");
  t.notRegex(r.stderr, /encoding images/);
});
