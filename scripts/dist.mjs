// Compiles lib/ to dist/ (JavaScript, .d.ts, declaration and source maps) with the data files the
// code reads at run time (label rules, model presets, prompt banks: lib/**/*.json), when dist/ is
// older than lib/ or the tsconfig files. Used by scripts/setup.mjs (a checkout) and
// scripts/prepack.mjs (the package ships dist/, so installing never runs tsc).
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** @param {string} dir @returns {number} the newest mtime under dir */
function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * @param {string} root the package root
 * @param {{ log?: (m: string) => void, force?: boolean }} [opts]
 * @returns {"compiled" | "current"}
 */
export function compileDist(root, opts = {}) {
  const log = opts.log ?? ((m) => process.stderr.write(`vilref: ${m}\n`));
  const stamp = join(root, "dist", ".built");
  const srcTime = Math.max(
    newest(join(root, "lib")),
    statSync(join(root, "tsconfig.json")).mtimeMs,
    statSync(join(root, "tsconfig.build.json")).mtimeMs,
  );
  if (!opts.force && existsSync(stamp) && statSync(stamp).mtimeMs >= srcTime) return "current";
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  if (!existsSync(tsc))
    throw new Error("dist/ is out of date and TypeScript is not installed to build it (npm install)");
  rmSync(join(root, "dist"), { recursive: true, force: true });
  log(`$ tsc -p tsconfig.build.json`);
  const r = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: ["ignore", process.stderr, process.stderr],
  });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed (exit ${r.status ?? r.signal})`);
  cpSync(join(root, "lib"), join(root, "dist"), {
    recursive: true,
    filter: (src) => statSync(src).isDirectory() || src.endsWith(".json"),
  });
  writeFileSync(stamp, new Date().toISOString());
  return "compiled";
}

// `npm run compile` (node scripts/dist.mjs --force): compile now, whatever the time stamps say.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  compileDist(dirname(dirname(fileURLToPath(import.meta.url))), { force: process.argv.includes("--force") });
}
