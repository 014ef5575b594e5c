// The package as a user gets it: `npm pack` (prepack: dist/ and the prebuild for this LibTorch),
// `npm install ./vilref-x.tgz` in a fresh project (its dependencies from the npm cache that the
// repository's own install filled), a consumer TypeScript file (test/package/consumer.ts) compiled
// with `tsc --strict` against the installed types and run: it loads the tiny-vit checkpoint,
// preprocesses a DRIVE image, tokenizes two reports, encodes them, prints the similarity and labels a
// report. The installed package must use its prebuild — no build/ directory, no compiler, no
// TypeScript, no install script — and `npx vilref doctor` must say so.
import test from "ava";
import { spawnSync } from "node:child_process";
import type { SpawnSyncOptions } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot, prebuildName } from "../lib/build/addon.js";
import { requireLibTorch } from "../lib/build/libtorch.js";
import { ViLReF } from "../lib/model/vilref.js";
import { labelReport } from "../lib/labels/index.js";
import { preprocess } from "../lib/data/transforms.js";
import { BertTokenizer } from "../lib/text/index.js";
import { hasShared, sharedDir, sharedPath } from "./helpers/shared.js";

const torch = requireLibTorch();
const scratch = mkdtempSync(path.join(tmpdir(), "vilref-package-"));
const consumer = path.join(scratch, "consumer");
const installed = path.join(consumer, "node_modules", "vilref");
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

let clock = performance.now();
/** Seconds since the last call (the test logs where its time goes). */
function lap(): string {
  const now = performance.now();
  const s = ((now - clock) / 1000).toFixed(1);
  clock = now;
  return `${s} s`;
}

function run(cmd: string, args: string[], options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...options });
  const out = `${String(r.stdout ?? "")}${String(r.stderr ?? "")}`;
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.status ?? r.signal}):\n${out.slice(-4000)}`);
  return { stdout: String(r.stdout ?? ""), out };
}

const needs = hasShared("fixtures", "tiny-vit") && hasShared("data", "DRIVE") && hasShared("vocab");
const packageTest = needs ? test.serial : test.skip;

packageTest(
  "npm pack → npm install in a fresh project → tsc --strict and run a consumer on the prebuild",
  async (t) => {
    clock = performance.now();
    // 1. pack: prepack compiles dist/ when out of date and makes the prebuild (a copy of the current build).
    const packed = run("npm", ["pack", "--pack-destination", scratch, "--json"], { cwd: packageRoot });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as {
      filename: string;
      files: { path: string }[];
    }[];
    t.log(`npm pack: ${lap()}`);
    const files = info!.files.map((f) => f.path);
    const prebuilt = `prebuilds/${process.platform}-${process.arch}/${prebuildName(torch.flavour)}`;
    for (const f of [
      prebuilt,
      prebuilt.replace(/\.node$/, ".stamp.json"),
      "dist/index.js",
      "dist/index.d.ts",
      "dist/index.d.ts.map",
      "dist/labels/rules/zh-fundus.json",
      "CMakeLists.txt",
      "native/addon.cc",
    ])
      t.true(files.includes(f), `the tarball holds ${f}`);
    for (const f of files)
      t.false(
        /^(scripts|test|bench|build)\/|^binding\.gyp$|^tsconfig|^dist\/\.built$/.test(f),
        `the tarball leaves out ${f}`,
      );

    // 2. install it in a fresh project, dependencies from the npm cache.
    mkdirSync(consumer);
    writeFileSync(
      path.join(consumer, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module" }),
    );
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", path.join(scratch, info!.filename)], {
      cwd: consumer,
    });
    t.log(`npm install of the tarball: ${lap()}`);
    const manifest = JSON.parse(readFileSync(path.join(installed, "package.json"), "utf8")) as {
      scripts?: Record<string, string>;
    };
    for (const hook of ["preinstall", "install", "postinstall"])
      t.is(manifest.scripts?.[hook], undefined, `no ${hook} script`);
    t.false(existsSync(path.join(consumer, "node_modules", "typescript")), "installing needs no TypeScript");
    t.false(existsSync(path.join(installed, "build")));

    // 3. compile the consumer with tsc --strict against the installed .d.ts (the repository's tsc and Node types).
    copyFileSync(new URL("./package/consumer.ts", import.meta.url), path.join(consumer, "consumer.ts"));
    const tsc = path.join(packageRoot, "node_modules", "typescript", "bin", "tsc");
    run(
      process.execPath,
      [
        tsc,
        "--strict",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--target",
        "es2022",
        "--lib",
        "es2023,esnext.disposable",
        "--types",
        "node",
        "--typeRoots",
        path.join(packageRoot, "node_modules", "@types"),
        "--outDir",
        "out",
        "consumer.ts",
      ],
      { cwd: consumer },
    );

    t.log(`tsc --strict: ${lap()}`);
    // 4. run it; building is switched off, so only the prebuild can serve it.
    const env = { ...process.env, VILREF_NO_BUILD: "1" };
    const ran = run(process.execPath, ["out/consumer.js", sharedDir], { cwd: consumer, env });
    const result = JSON.parse(ran.stdout.trim().split("\n").pop()!) as {
      similarity: number[];
      labels: Record<string, number>;
      labelIds: number;
    };
    t.log(`the consumer ran: ${lap()}`);
    t.false(existsSync(path.join(installed, "build")), "no build/ inside the installed package: the prebuild was used");

    // The same computation from the repository's sources gives the same numbers.
    const config = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "config.json"), "utf8"));
    await using model = await ViLReF.load(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), { config });
    const size = model.config.image_resolution;
    const image = await preprocess(sharedPath("data", "DRIVE", "test", "images", "01_test.tif"), { size });
    const reports = [
      "右眼：后极部散在点片状出血及硬性渗出，考虑糖尿病视网膜病变。",
      "双眼豹纹状眼底，视盘周围萎缩弧。",
    ];
    const tokenizer = BertTokenizer.fromFile(sharedPath("vocab", "chinese-bert-vocab.txt"));
    const similarity = await model.similarity(
      await model.encodeImages({ data: image, shape: [1, 3, size, size] }),
      await model.encodeTexts(tokenizer.encodeBatch(reports)),
    );
    t.is(result.similarity.length, 2);
    result.similarity.forEach((s, i) => t.true(Math.abs(s - similarity.data[i]!) < 1e-4, `similarity ${i}: ${s}`));
    t.deepEqual(result.labels, labelReport(reports[0]).labels);
    t.true(Object.keys(result.labels).length > 0, JSON.stringify(result.labels));

    // 5. every subpath export resolves; the root export keeps loaders and CLI registrars private.
    const probe = `const pkg = JSON.parse(
      await (await import("node:fs/promises")).readFile("node_modules/vilref/package.json", "utf8"),
    );
    const counts = {};
    for (const k of Object.keys(pkg.exports).filter((k) => k !== "./package.json"))
      counts[k] = Object.keys(await import("vilref" + k.slice(1))).length;
    const data = Object.keys(await import("vilref/data"));
    console.log(JSON.stringify({ counts, root: Object.keys(await import("vilref")), data }));`;
    const exportsSeen = JSON.parse(
      run(process.execPath, ["--input-type=module", "-e", probe], { cwd: consumer, env }).stdout,
    ) as { counts: Record<string, number>; root: string[]; data: string[] };
    t.is(Object.keys(exportsSeen.counts).length, 13);
    for (const [k, n] of Object.entries(exportsSeen.counts)) t.true(n > 0, `vilref${k.slice(1)} exports names`);
    for (const name of [
      "ViLReF",
      "Trainer",
      "pretrain",
      "losses",
      "preprocess",
      "BertTokenizer",
      "Labeler",
      "zeroShot",
      "readNpy",
      "readSafetensors",
      "doctor",
    ])
      t.true(exportsSeen.root.includes(name), `the root exports ${name}`);
    for (const name of ["loadNative", "native", "nativeAddon", "registerSegment", "registerFinetune"])
      t.false(exportsSeen.root.includes(name), `the root keeps ${name} private`);
    // the shard API the README names: the packer, the streaming loader, listings and data sources
    for (const name of ["Loader", "packShards", "ShardLoader", "scanShards", "expandShards", "readSource"])
      t.true(exportsSeen.data.includes(name), `vilref/data exports ${name}`);

    // 6. npx vilref doctor from the project reports the prebuild route.
    const doctor = JSON.parse(
      run("npx", ["--no-install", "vilref", "doctor", "--json"], { cwd: consumer, env }).stdout,
    ) as { addon: { route?: string; path?: string } };
    t.is(doctor.addon.route, "prebuild");
    t.is(doctor.addon.path, path.join(installed, prebuilt));
    t.false(existsSync(path.join(installed, "build")));
    t.deepEqual(readdirSync(installed).sort(), [
      "CMakeLists.txt",
      "README.md",
      "bin",
      "dist",
      "lib",
      "native",
      "package.json",
      "prebuilds",
    ]);
  },
);
