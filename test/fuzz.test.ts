// The CI subset of the fuzz harness (test/fuzz/run.ts): 2,000 seeded cases over every target, each
// in a worker process. No case may crash, hang, be accepted when malformed, be read wrong or fail
// with an error that does not name its culprit. The long run: npm run fuzz -- --count 100000.
import test from "ava";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FuzzSummary } from "./fuzz/run.js";

const runner = fileURLToPath(new URL("./fuzz/run.ts", import.meta.url));

test("2,000 fuzz cases: no crash, no hang, no silent success, every error names its culprit", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "vilref-fuzz-ci-"));
  try {
    const json = join(dir, "summary.json");
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", runner, "--count", "2000", "--seed", "22", "--json", json, "--quiet"],
      { encoding: "utf8", timeout: 30 * 60_000 },
    );
    const s = JSON.parse(readFileSync(json, "utf8")) as FuzzSummary;
    t.is(s.count, 2000);
    const total = Object.values(s.outcomes).reduce((a, b) => a + b, 0);
    t.is(total, 2000, "every case has an outcome");
    t.deepEqual(s.failures, [], r.stdout.slice(-4000));
    t.is(r.status, 0);
    // the subset reaches every target and both sides: valid inputs read, malformed ones refused
    for (const prefix of ["pt/", "safetensors/", "model/", "image/", "manifest/", "config/"])
      t.true(
        Object.keys(s.kinds).some((k) => k.startsWith(prefix)),
        `no ${prefix} cases`,
      );
    t.true((s.outcomes.ok ?? 0) > 100, `${s.outcomes.ok} valid cases read`);
    t.true((s.outcomes.error ?? 0) > 1000, `${s.outcomes.error} malformed cases refused`);
    for (const kind of ["pt/valid", "pt/bad-view/size", "pt/crc-flip", "pt/deep/tuple1", "pt/bomb/over-cap"])
      t.truthy(s.kinds[kind], `no ${kind} cases`);
    t.is(
      s.kinds["pt/valid"]!.ok,
      Object.values(s.kinds["pt/valid"]!).reduce((a, b) => a + b, 0),
      "every valid .pt reads",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
