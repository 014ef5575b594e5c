#!/usr/bin/env node
// The last step of scripts/gpu/run.sh: gathers what the stages left in WORK/stages into OUT:
//   results.json   every stage's status and numbers, the machine, the build report, the bundle manifest
//   results.md     the Markdown block for bench/RESULTS.md (tests line + one table per benchmark)
//   vilref.<flavour>.napi.node and .stamp.json   the built addon as the loader's prebuild
//   profile.json.gz  the LibTorch profiler trace of one ViT-B/16 encode, when the profile stage ran
// (run.log is written by run.sh itself: six files in all, under the device's limit of eight).
// Plain JavaScript with no dependencies, so it runs even when the unpack stage did not.
// Usage: node scripts/gpu/report.mjs --work DIR --out DIR --mode gpu|cpu --started EPOCH_S --deadline S
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, totalmem } from "node:os";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";

const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const work = opt("--work");
const out = opt("--out");
const mode = opt("--mode", "gpu");
const started = Number(opt("--started", String(Math.floor(Date.now() / 1000))));
const stagesDir = join(work, "stages");
const STAGES = ["node", "unpack", "build", "tests", "vit", "train", "profile", "embed"];

const readJson = (file) => {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return null;
  }
};
const sh = (cmd, argv) => {
  try {
    return execFileSync(cmd, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10000 }).trim();
  } catch {
    return null;
  }
};

/** ava --tap: counts and the titles of failed tests. */
function parseTap(text) {
  const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  const lines = text.split("\n");
  return {
    passed: count("pass"),
    failed: count("fail"),
    skipped: count("skip"),
    todo: count("todo"),
    failures: lines.filter((l) => /^not ok \d+/.test(l)).map((l) => l.replace(/^not ok \d+ - /, "")),
    skips: lines.filter((l) => /# SKIP/.test(l)).map((l) => l.replace(/^ok \d+ - /, "").replace(/ # SKIP.*/, "")),
  };
}

const stages = {};
for (const name of STAGES) {
  const status = readJson(join(stagesDir, `${name}.status.json`));
  stages[name] = status ?? { status: "not run" };
}
const build = readJson(join(stagesDir, "build.json"));
if (build) stages.build.report = build;
if (existsSync(join(stagesDir, "tests.tap")))
  Object.assign(stages.tests, parseTap(readFileSync(join(stagesDir, "tests.tap"), "utf8")));
for (const name of ["vit", "train", "profile", "embed"]) {
  const r = readJson(join(stagesDir, `${name}.json`));
  if (r) stages[name].result = r;
}

const gpu = sh("nvidia-smi", ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]);
const results = {
  format: 1,
  mode,
  startedAt: new Date(started * 1000).toISOString(),
  seconds: Math.round(Date.now() / 1000 - started),
  deadlineSeconds: Number(opt("--deadline", "0")),
  machine: {
    gpu,
    cpus: `${cpus()[0]?.model ?? "?"} × ${availableParallelism()}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: sh("uname", ["-r"]),
  },
  bundle: readJson(join(stagesDir, "bundle.json")),
  stages,
  files: [],
};

// the prebuild and its stamp
if (build?.ok && build.addon && existsSync(build.addon)) {
  const stamp = build.addon.replace(/\.node$/, ".stamp.json");
  for (const f of [build.addon, stamp]) {
    copyFileSync(f, join(out, basename(f)));
    results.files.push(basename(f));
  }
  results.prebuild = {
    file: basename(build.addon),
    bytes: build.bytes,
    committable: build.committable,
    stamp: readJson(stamp),
  };
}
// the profile trace, compressed
const profileDir = join(work, "profile");
if (existsSync(profileDir)) {
  const traces = readdirSync(profileDir).filter((f) => f.endsWith(".json"));
  if (traces.length) {
    writeFileSync(join(out, "profile.json.gz"), gzipSync(readFileSync(join(profileDir, traces.sort().at(-1)))));
    results.files.push("profile.json.gz");
  }
}

// ---- the Markdown block ----
const fmt = (x, d = 1) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–");
const md = [];
const commit = results.bundle?.commit?.slice(0, 10) ?? "?";
md.push(
  `### GPU run (${mode === "cpu" ? "CPU dry run, toy sizes: not a measurement" : "scripts/gpu/run.sh"}), ` +
    `${results.startedAt.slice(0, 10)}`,
  "",
  `${gpu ?? "no GPU"}; ${results.machine.cpus}; commit ${commit}; ${results.seconds} s in all.`,
  "",
);
const stageLine = STAGES.map((s) => `${s} ${stages[s].status}`).join(", ");
md.push(`Stages: ${stageLine}.`, "");
if (build) {
  md.push(
    "Build: " +
      (build.ok
        ? `${build.builder}, ${fmt(build.seconds, 0)} s, ${build.flavour}, c10d ${build.c10d ? "on" : "off"}` +
          `${build.conservative ? ", conservative fallback" : ""}`
        : `failed (${build.attempts?.map((a) => `${a.builder}: ${a.failed?.join(" ") || a.stage}`).join("; ")})`) +
      ".",
    "",
  );
}
if (stages.tests.passed !== undefined) {
  md.push(
    `Tests (${mode === "cpu" ? "device cpu" : "device cuda"}): ${stages.tests.passed} passed, ` +
      `${stages.tests.failed} failed, ${stages.tests.skipped} skipped.` +
      `${stages.tests.failures.length ? ` Failed: ${stages.tests.failures.join("; ")}.` : ""}`,
    "",
  );
}
for (const name of ["vit", "train", "profile", "embed"]) {
  const r = stages[name].result;
  if (!r?.table) continue;
  md.push(
    `**${r.title}**`,
    "",
    `| ${r.table.columns.join(" | ")} |`,
    `|${r.table.columns.map(() => "---").join("|")}|`,
  );
  for (const row of r.table.rows) md.push(`| ${row.join(" | ")} |`);
  if (r.notes?.length) md.push("", ...r.notes.map((n) => `- ${n}`));
  md.push("");
}
writeFileSync(join(out, "results.md"), md.join("\n"));
results.files.push("results.md", "results.json", "run.log");
writeFileSync(join(out, "results.json"), JSON.stringify(results, null, 2) + "\n");
console.log(`report: wrote ${results.files.join(", ")} to ${out}`);
