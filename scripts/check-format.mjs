#!/usr/bin/env node
// `npm run format:check`: fails when a file differs from what the formatters write — prettier for
// TypeScript/JavaScript (.prettierrc.json, 120 columns), clang-format for native/ (.clang-format).
// `npm run format` rewrites them. The formatters cannot break a long string, template literal or
// comment, so the check also fails on any line over 120 characters (Unicode code points) in the
// git-tracked code under lib/, native/, test/, bench/, scripts/ and bin/; those are fixed by hand.
// CI runs this check (.ci/run).
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const write = process.argv.includes("--write");
let failed = false;

const prettier = join(root, "node_modules", "prettier", "bin", "prettier.cjs");
const p = spawnSync(
  process.execPath,
  [prettier, write ? "--write" : "--check", "--log-level", "warn", "**/*.{ts,js,mjs}"],
  {
    cwd: root,
    stdio: "inherit",
  },
);
if (p.status !== 0) failed = true;

const natives = readdirSync(join(root, "native"))
  .filter((f) => /\.(cc|h)$/.test(f))
  .map((f) => join("native", f));
const c = spawnSync("clang-format", [write ? "-i" : "--dry-run", ...(write ? [] : ["--Werror"]), ...natives], {
  cwd: root,
  stdio: "inherit",
});
if (c.error) {
  console.error("clang-format is not installed (Debian: apt-get install clang-format)");
  failed = true;
} else if (c.status !== 0) failed = true;

// Function length (≤ 80 lines in lib/, bin/, scripts/, native/): scripts/check-size.mjs.
if (!write && spawnSync(process.execPath, [join(root, "scripts", "check-size.mjs")], { stdio: "inherit" }).status !== 0)
  failed = true;

if (failed && !write) console.error("format check failed: run `npm run format` and commit the result");

const maxLine = 120;
const codeDirs = ["lib", "native", "test", "bench", "scripts", "bin"];
const codeFile = /\.(ts|js|mjs|cjs|cc|h|c|py|sh)$/;
// Lines allowed to be longer: { file, contains (a piece of the line), reason }. Keep it empty
// unless a line truly cannot be split (a fixture that must stay byte-exact, say).
/** @type {{ file: string, contains: string, reason: string }[]} */
const allowed = [];
let tracked = [];
try {
  tracked = execFileSync("git", ["ls-files", "-z", "--", ...codeDirs], { cwd: root, encoding: "utf8" })
    .split("\0")
    .filter((f) => codeFile.test(f));
} catch {
  console.error("line-length check skipped: not a git checkout (it checks the git-tracked files)");
}
let long = 0;
for (const file of tracked) {
  let text;
  try {
    text = readFileSync(join(root, file), "utf8");
  } catch {
    continue; // deleted in the work tree but not yet in the index
  }
  text.split("\n").forEach((line, i) => {
    const length = [...line.replace(/\r$/, "")].length;
    if (length > maxLine && !allowed.some((a) => a.file === file && line.includes(a.contains))) {
      console.error(`${file}:${i + 1}: ${length} characters (more than ${maxLine})`);
      long++;
    }
  });
}
if (long > 0) {
  console.error(
    `line-length check failed: ${long} line(s) over ${maxLine} characters; ` +
      "`npm run format` cannot shorten them: split the string or comment by hand",
  );
  failed = true;
}
process.exit(failed ? 1 : 0);
