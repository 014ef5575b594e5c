// scripts/check-format.mjs's line-length rule, run on a scratch git tree beside a copy of the
// script: a line over 120 code points fails naming file:line and length; CJK text counts by code
// point, not byte; files outside the code folders or not tracked by git are not checked.
import test from "ava";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = dirname(dirname(fileURLToPath(import.meta.url)));
const hasClangFormat = !spawnSync("clang-format", ["--version"]).error;

function tree(): string {
  const root = mkdtempSync(join(tmpdir(), "vilref-format-"));
  for (const d of ["scripts", "native", "lib", "docs"]) mkdirSync(join(root, d));
  copyFileSync(join(repo, "scripts", "check-format.mjs"), join(root, "scripts", "check-format.mjs"));
  copyFileSync(join(repo, "scripts", "check-size.mjs"), join(root, "scripts", "check-size.mjs"));
  copyFileSync(join(repo, ".prettierrc.json"), join(root, ".prettierrc.json"));
  copyFileSync(join(repo, ".clang-format"), join(root, ".clang-format"));
  symlinkSync(join(repo, "node_modules"), join(root, "node_modules"));
  writeFileSync(join(root, "native", "a.cc"), "int a() { return 1; }\n");
  return root;
}

function check(root: string): { status: number | null; stderr: string } {
  const git = (...args: string[]) => spawnSync("git", args, { cwd: root, encoding: "utf8" });
  git("init", "-q");
  git("add", "-A");
  const r = spawnSync(process.execPath, [join(root, "scripts", "check-format.mjs")], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return { status: r.status, stderr: `${r.stdout}${r.stderr}` };
}

test("format:check names a line over 120 characters; CJK counts by code point; untracked files pass", (t) => {
  if (!hasClangFormat) return t.pass("no clang-format (CI installs it)");
  const root = tree();
  try {
    const cjk = "视".repeat(100); // 100 code points, 300 UTF-8 bytes
    const long = `// ${"x".repeat(117)}`; // 120 characters (comments: prettier leaves them alone)
    writeFileSync(join(root, "lib", "ok.ts"), `// ${cjk}\n`);
    writeFileSync(join(root, "lib", "long.ts"), `export const a = 1;\n${long}x\n`);
    writeFileSync(join(root, "docs", "notes.ts"), `// ${"y".repeat(200)}\n`);
    writeFileSync(join(root, ".gitignore"), "node_modules\nlib/untracked.ts\n");
    writeFileSync(join(root, "lib", "untracked.ts"), `// ${"z".repeat(200)}\n`);
    const bad = check(root);
    t.is(bad.status, 1, bad.stderr);
    t.regex(bad.stderr, /^lib\/long\.ts:2: 121 characters \(more than 120\)$/m);
    t.regex(bad.stderr, /1 line\(s\) over 120 characters; `npm run format` cannot shorten them/);
    t.notRegex(bad.stderr, /ok\.ts|notes\.ts|untracked\.ts/);

    writeFileSync(join(root, "lib", "long.ts"), `export const a = 1;\n${long}\n`);
    const good = check(root);
    t.is(good.status, 0, good.stderr);
    t.notRegex(good.stderr, /characters/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
