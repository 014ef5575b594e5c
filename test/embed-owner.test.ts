// `embed` outputs with an owner and an honest exit status (issue 22): two runs on one output do not
// both write it; a killed run's lock and temporaries are cleaned; when nothing could be embedded the
// call fails (and `vilref embed` exits 1) instead of writing an empty [0, 0] result.
import test from "ava";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { samplesFromFiles } from "../lib/data/manifest.js";
import { EmbedError, embedImages, embedTexts, PooledHeadEncoder, type TextEncoder } from "../lib/embed/index.js";
import { LockError } from "../lib/io/lock.js";
import { writeSynthDataset } from "../lib/synth/index.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-embed-owner-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));
let images: string[] = [];
test.before(async () => {
  await writeSynthDataset(path.join(root, "synth"), 6, 4, { size: 48, format: "png" });
  images = readdirSync(path.join(root, "synth", "images"))
    .sort()
    .map((f) => path.join(root, "synth", "images", f));
});

const enc = () => new PooledHeadEncoder({ dim: 4, imageSize: 16 });
const cli = fileURLToPath(new URL("./helpers/cli.ts", import.meta.url));

test("every image bad: an EmbedError, nothing written but the list of reasons; the CLI exits 1", async (t) => {
  const dir = path.join(root, "allbad");
  mkdirSync(dir);
  const bad = ["a.jpg", "b.png"].map((f) => path.join(dir, f));
  writeFileSync(bad[0]!, "not a jpeg");
  writeFileSync(bad[1]!, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0]));
  const out = path.join(root, "allbad.npy");
  const e = await t.throwsAsync(
    embedImages(samplesFromFiles(bad), enc(), { out, batchSize: 2, progress: false, log: () => {} }),
    {
      instanceOf: EmbedError,
    },
  );
  t.regex(
    e!.message,
    new RegExp(
      `^${out.replace(/[/.]/g, "\\$&")}: none of the 2 inputs could be embedded, nothing written \\(.*; ` +
        "all listed in .*allbad\\.skipped\\.tsv\\)$",
    ),
  );
  t.is((e as EmbedError).skipped.length, 2);
  t.false(existsSync(out), "no [0, 0] output");
  t.false(existsSync(out + ".parts"));
  t.false(existsSync(out + ".lock"));
  t.regex(readFileSync(path.join(root, "allbad.skipped.tsv"), "utf8"), /a\.jpg\t.*\nb\.png\t/);
  const cliOut = path.join(root, "cli-allbad.npy");
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", cli, "embed", "--images", dir, "--model", "pool-head:4", "--out", cliOut],
    {
      encoding: "utf8",
    },
  );
  t.is(r.status, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /none of the 2 inputs could be embedded/);
  t.false(existsSync(cliOut));
  // texts: an empty record list is an error too
  const noText: TextEncoder = { name: "t", encodeTexts: async () => ({ data: new Float32Array(0), shape: [0, 4] }) };
  await t.throwsAsync(embedTexts([], noText, { out: path.join(root, "none.npy"), progress: false }), {
    instanceOf: EmbedError,
    message: /no inputs to embed/,
  });
});

test("one run per output: a second is refused while the first writes; a killed run's lock is taken over", async (t) => {
  const out = path.join(root, "owned.npy");
  const first = embedImages(samplesFromFiles(images), enc(), { out, batchSize: 2, chunkSize: 2, progress: false });
  const e = await t.throwsAsync(embedImages(samplesFromFiles(images), enc(), { out, batchSize: 2, progress: false }), {
    instanceOf: LockError,
  });
  t.regex(e!.message, new RegExp(`^output ${out.replace(/[/.]/g, "\\$&")} is in use by pid ${process.pid}`));
  t.is((await first).rows, images.length);
  t.false(existsSync(out + ".lock"), "released");
  // a lock and a temporary left by a process killed -9
  const lockModule = fileURLToPath(new URL("../lib/io/lock.ts", import.meta.url));
  const holder = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `const { acquireLock } = await import(${JSON.stringify(lockModule)}); ` +
        `acquireLock(${JSON.stringify(out + ".lock")}); console.log("held"); setInterval(() => {}, 1000);`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve) =>
    holder.stdout!.on("data", (d: Buffer) => d.toString().includes("held") && resolve()),
  );
  await t.throwsAsync(
    embedImages(samplesFromFiles(images), enc(), { out, force: true, batchSize: 2, progress: false }),
    {
      instanceOf: LockError,
      message: new RegExp(`in use by pid ${holder.pid}`),
    },
  );
  holder.kill("SIGKILL");
  await new Promise((r) => holder.on("exit", r));
  const temp = path.join(root, `.owned.npy.${2 ** 22 + 5}.0123456789ab.tmp`);
  writeFileSync(temp, "half an array");
  const info: string[] = [];
  const r = await embedImages(samplesFromFiles(images), enc(), {
    out,
    force: true,
    batchSize: 2,
    progress: false,
    info: (l) => info.push(l),
  });
  t.is(r.rows, images.length);
  t.regex(info.join("\n"), /took over .*owned\.npy\.lock/);
  t.regex(info.join("\n"), /removed 1 unfinished file/);
  t.false(existsSync(temp));
});
