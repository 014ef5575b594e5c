/**
 * A fuzz worker (forked by test/fuzz/run.ts): runs the cases it is sent, one at a time, and reports
 * "start" before each and "done" with the outcome after, so that the parent can name the case when
 * this process dies by a signal or stops answering.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { judge } from "./case.js";
import { caseAt, TARGETS } from "./targets/index.js";

export interface WorkRequest {
  seed: number;
  from: number;
  to: number;
  only?: string[];
}

export type WorkerMessage =
  | { type: "ready" }
  | { type: "start"; index: number }
  | { type: "done"; index: number; kind: string; status: string; message?: string; detail?: string }
  | { type: "idle"; rss: number };

const send = (m: WorkerMessage) => new Promise<void>((resolve) => process.send!(m, () => resolve()));

const scratch = mkdtempSync(join(tmpdir(), "vilref-fuzz-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

for (const [t] of TARGETS) await t.setup(scratch);
await send({ type: "ready" });

process.on("message", (req: WorkRequest) => {
  void (async () => {
    for (let i = req.from; i < req.to; i++) {
      let generated;
      try {
        generated = caseAt(req.seed, i, req.only);
      } catch (e) {
        await send({ type: "done", index: i, kind: "?", status: "generator-error", detail: String(e) });
        continue;
      }
      const { target, case: c } = generated;
      const dir = join(scratch, String(i));
      const path = join(dir, c.file);
      await send({ type: "start", index: i });
      let outcome;
      try {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
        writeFileSync(path, c.bytes);
        outcome = await judge(target, c, path);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const extra =
        outcome.status === "error" || outcome.status === "bad-error" ? { message: outcome.message.slice(0, 500) } : {};
      const detail = "detail" in outcome ? { detail: outcome.detail } : {};
      await send({ type: "done", index: i, kind: c.kind, status: outcome.status, ...extra, ...detail });
    }
    (globalThis as { gc?: () => void }).gc?.();
    await send({ type: "idle", rss: process.memoryUsage().rss });
  })();
});
