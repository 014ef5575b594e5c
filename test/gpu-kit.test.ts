/**
 * The GPU kit's dry run (issue 20): scripts/gpu/bundle.sh --fast makes the carried bundle in a
 * temporary folder, and scripts/gpu/run.sh --cpu runs every stage of the GPU run with it on this
 * machine — the carried Node unpacked, the addon built against the local LibTorch (CMake, the same
 * compile lines as the set-up's build, so ccache makes it quick), the CUDA test subset with device
 * "cpu", the benchmarks at toy sizes — and writes the files a GPU run brings back. The test checks
 * their shape: what the device tool accepts (at most 8 files of at most 16 MiB, plain names), the
 * prebuild and stamp the loader takes, the results JSON and the Markdown table. A second run
 * without the build stage shows that a failing stage leaves the others' results.
 */
import test from "ava";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { sourceHash } from "../lib/build/addon.js";
import { requireLibTorch } from "../lib/build/libtorch.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const tools = ["xz", "tar", "cmake", "g++"].filter((c) => spawnSync("sh", ["-c", `command -v ${c}`]).status !== 0);
const kitTest = tools.length ? test.serial.skip : test.serial;
if (tools.length) console.warn(`gpu-kit test skipped: ${tools.join(", ")} missing`);

const temp = (name: string) => mkdtempSync(join(tmpdir(), `vilref-kit-${name}-`));
const carry = temp("carry");
test.after.always(() => rmSync(carry, { recursive: true, force: true }));

function runScript(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const c = spawn("bash", args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    c.stdout.on("data", (d: Buffer) => (output += d.toString()));
    c.stderr.on("data", (d: Buffer) => (output += d.toString()));
    c.on("exit", (code) => resolve({ code, output }));
  });
}

interface Results {
  mode: string;
  stages: Record<
    string,
    {
      status: string;
      report?: { ok: boolean; builder: string; flavour: string; attempts: unknown[] };
      passed?: number;
      failed?: number;
      skipped?: number;
      result?: { title: string; table: { columns: string[]; rows: string[][] } };
    }
  >;
  prebuild?: { file: string; bytes: number; stamp: { flavour: string; sourceHash: string; builder: string } };
  files: string[];
  bundle: { packages: string[]; node: string } | null;
}

kitTest("bundle.sh makes the carry under the limit with what the GPU stages import", async (t) => {
  const r = await runScript(["scripts/gpu/bundle.sh", "--out", carry, "--fast"]);
  t.is(r.code, 0, r.output);
  t.regex(r.output, /within the 60 MiB limit/);
  for (const f of ["node.xz", "modules.tar.xz", "dist.tar.xz", "manifest.json"]) t.true(existsSync(join(carry, f)), f);
  const manifest = JSON.parse(readFileSync(join(carry, "manifest.json"), "utf8")) as {
    packages: string[];
    node: string;
    bytes: Record<string, number>;
  };
  for (const p of ["ava", "tsx", "sharp", "zod", "commander", "node-addon-api", "node-api-headers", "node-gyp-build"])
    t.true(manifest.packages.includes(p), `${p} travels`);
  for (const p of ["cmake-js", "node-gyp", "prebuildify", "typescript", "prettier"])
    t.false(manifest.packages.includes(p), `${p} stays behind`);
  t.is(manifest.node, process.version);
  const total = Object.values(manifest.bytes).reduce((s, b) => s + b, 0);
  t.true(total < 60 * 2 ** 20, `carry ${total} bytes`);
  // the limit is enforced
  const over = await runScript(["scripts/gpu/bundle.sh", "--out", carry, "--check", "--limit", "1"]);
  t.is(over.code, 1);
  t.regex(over.output, /over the limit of 1 MiB/);
});

kitTest("run.sh --cpu runs every stage and leaves what a GPU run brings back", async (t) => {
  const out = temp("out");
  const work = temp("work");
  try {
    const r = await runScript(["scripts/gpu/run.sh", "--cpu", "--out", out, "--carry", carry, "--work", work]);
    t.is(r.code, 0, r.output);
    // the device tool's limits on what comes back
    const files = readdirSync(out);
    t.true(files.length <= 8, files.join(" "));
    for (const f of files) {
      t.regex(f, /^[A-Za-z0-9._-]+$/);
      t.true(statSync(join(out, f)).size <= 16 * 2 ** 20, `${f} ≤ 16 MiB`);
    }
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
    const log = readFileSync(join(out, "run.log"), "utf8");
    t.is(results.mode, "cpu");
    for (const s of ["node", "unpack", "build", "tests", "vit", "train", "embed", "profile"])
      t.is(results.stages[s]?.status, "ok", `stage ${s}: ${JSON.stringify(results.stages[s])}\n${log.slice(-4000)}`);
    t.true(log.includes(process.version), "the carried Node ran");

    // the build: CMake against this LibTorch, installed as the loader's prebuild, stamped
    const torch = requireLibTorch();
    const build = results.stages.build!.report!;
    t.true(build.ok);
    t.is(build.builder, "cmake");
    t.is(build.flavour, torch.flavour);
    const name = `vilref.${torch.flavour}.napi.node`;
    t.is(results.prebuild?.file, name);
    t.true(files.includes(name) && files.includes(name.replace(/\.node$/, ".stamp.json")));
    const stamp = JSON.parse(readFileSync(join(out, name.replace(/\.node$/, ".stamp.json")), "utf8")) as {
      flavour: string;
      sourceHash: string;
      napi: number;
    };
    t.is(stamp.flavour, torch.flavour);
    t.is(stamp.sourceHash, sourceHash(root));
    t.is(stamp.napi, 8);

    // the CUDA test subset ran on the CPU: its device-independent tests passed, the rest skipped
    const tests = results.stages.tests!;
    t.is(tests.failed, 0, log.slice(-4000));
    t.true(tests.passed! >= 5, `passed ${tests.passed}`);
    t.true(tests.skipped! >= 3, `skipped ${tests.skipped}`);

    // the benchmarks' tables
    const vit = results.stages.vit!.result!;
    t.deepEqual(vit.table.columns, ["implementation", "input", "images/s", "vilref ÷ this"]);
    t.true(Number(vit.table.rows[0]![2]) > 0);
    const train = results.stages.train!.result!;
    t.deepEqual(
      train.table.rows.map((row) => row[0]),
      ["float32", "bfloat16"],
    );
    for (const row of train.table.rows) t.true(Number(row[1]) > 0, `vilref step time ${row[1]}`);
    const embed = results.stages.embed!.result!;
    t.is(embed.table.rows[0]![0], "24");
    t.true(Number(embed.table.rows[0]![2]) > 0);
    t.regex(results.stages.profile!.result!.title, /where one call's time goes/);
    t.true(results.stages.profile!.result!.table.rows.length > 0);
    t.true(files.includes("profile.json.gz"));

    const md = readFileSync(join(out, "results.md"), "utf8");
    t.regex(md, /^### GPU run \(CPU dry run/);
    t.regex(
      md,
      /\| implementation \| input \| images\/s \| vilref ÷ this \|\n\|---\|---\|---\|---\|\n\| vilref encodeImages/,
    );
    t.regex(md, /\| precision \| vilref s\/step \| PyTorch s\/step \|/);
    t.regex(md, /Tests \(device cpu\): \d+ passed, 0 failed/);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});

kitTest("a stage that fails is recorded and the report is still written", async (t) => {
  const out = temp("out-fail");
  const work = temp("work-fail");
  try {
    // no build stage: the tests cannot load an addon (VILREF_NO_BUILD=1), the report still comes back
    const r = await runScript([
      "scripts/gpu/run.sh",
      "--cpu",
      "--out",
      out,
      "--carry",
      carry,
      "--work",
      work,
      "--stages",
      "node,unpack,tests",
    ]);
    t.is(r.code, 0, r.output);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as Results;
    t.is(results.stages.node!.status, "ok");
    t.is(results.stages.unpack!.status, "ok");
    t.is(results.stages.tests!.status, "failed");
    t.is(results.stages.build!.status, "not run");
    t.is(results.prebuild, undefined);
    t.regex(readFileSync(join(out, "results.md"), "utf8"), /Stages: node ok, unpack ok, build not run, tests failed/);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});
