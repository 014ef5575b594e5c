// `vilref embed` with ViLReF models: image files, report texts and .npy arrays.
import test from "ava";
import { Command } from "commander";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { register } from "../lib/cli/data.js";
import { preprocess } from "../lib/data/transforms.js";
import { idsPathFor } from "../lib/embed/index.js";
import { readNpy, writeNpy } from "../lib/io/npy.js";
import { ViLReF } from "../lib/model/vilref.js";
import { sharedPath } from "./helpers/shared.js";

const scratch = mkdtempSync(join(tmpdir(), "vilref-embed-model-"));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

async function vilref(...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  const said: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => (said.push(String(s)), true)) as typeof process.stdout.write;
  try {
    await program.parseAsync(["node", "vilref", ...args]);
  } finally {
    process.stdout.write = write;
  }
  return said.join("");
}

function maxRelative(got: Float32Array, want: Float32Array): number {
  let d = 0;
  let s = 0;
  want.forEach((w, i) => {
    d = Math.max(d, Math.abs(got[i]! - w));
    s = Math.max(s, Math.abs(w));
  });
  return d / s;
}

const vitPt = sharedPath("fixtures", "tiny-vit", "checkpoint.pt");
const vitConfig = sharedPath("fixtures", "tiny-vit", "config.json");

test.serial("the 40 DRIVE images through a small ViLReF model: 40 rows in the ids' order", async (t) => {
  const out = join(scratch, "drive.npy");
  const said = await vilref(
    "embed",
    "--images",
    `${sharedPath("data", "DRIVE")}/*/images/*.tif`,
    "--out",
    out,
    "--model",
    "preset:tiny-vit:1",
    "--fov",
    "--batch-size",
    "8",
    "--no-progress",
  );
  t.regex(said, /wrote .*drive\.npy \[40, 24\]/);
  const feats = await readNpy(out);
  t.deepEqual(feats.shape, [40, 24]);
  const ids = readFileSync(idsPathFor(out), "utf8").split("\n").filter(Boolean);
  t.is(ids.length, 40);
  t.deepEqual(ids, [...ids].sort(), "ids in the listing's order");
  t.true(ids.every((id) => /^(training|test)\/images\/\d+_(training|test)\.tif$/.test(id)));
  // row 7 is the model applied to ids[7] alone
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const x = await preprocess(sharedPath("data", "DRIVE", ids[7]!), { size: 32, fov: true });
  const one = await model.encodeImages({ data: x, shape: [1, 3, 32, 32] });
  t.true(maxRelative((feats.data as Float32Array).subarray(7 * 24, 8 * 24), one.data) < 1e-5);
  const rows = new Set(
    Array.from({ length: 40 }, (_, i) => Array.from((feats.data as Float32Array).subarray(i * 24, i * 24 + 4)).join()),
  );
  t.is(rows.size, 40, "every image gets its own embedding");
});

test.serial("report texts through the released checkpoint reproduce the released text features", async (t) => {
  const texts = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "texts.json"), "utf8")) as string[];
  const reports = join(scratch, "reports.jsonl");
  writeFileSync(reports, texts.map((text, i) => JSON.stringify({ id: `r${i}`, text })).join("\n") + "\n");
  const out = join(scratch, "texts.npy");
  await vilref(
    "embed",
    "--texts",
    reports,
    "--out",
    out,
    "--model",
    vitPt,
    "--config",
    vitConfig,
    "--vocab",
    sharedPath("vocab", "chinese-bert-vocab.txt"),
    "--context-length",
    "24",
    "--no-progress",
  );
  const got = await readNpy(out);
  const want = await readNpy(sharedPath("fixtures", "tiny-vit", "text_features.npy"));
  t.deepEqual(got.shape, want.shape);
  t.true(maxRelative(got.data as Float32Array, want.data as Float32Array) <= 1e-5);
  t.deepEqual(readFileSync(idsPathFor(out), "utf8").split("\n").filter(Boolean), ["r0", "r1", "r2", "r3"]);
  await t.throwsAsync(
    vilref(
      "embed",
      "--texts",
      reports,
      "--out",
      out,
      "--model",
      vitPt,
      "--config",
      vitConfig,
      "--force",
      "--no-progress",
    ),
    { message: /--vocab/ },
  );
});

test.serial(".npy in, .npy out: token ids (int32) before the projection", async (t) => {
  const ids64 = await readNpy(sharedPath("fixtures", "tiny-vit", "text_ids.npy"));
  const ids = join(scratch, "ids32.npy");
  await writeNpy(ids, {
    dtype: "int32",
    shape: ids64.shape,
    data: Int32Array.from(ids64.data as BigInt64Array, Number),
  });
  const out = join(scratch, "pre.npy");
  const said = await vilref(
    "embed",
    "--npy",
    ids,
    "--out",
    out,
    "--model",
    vitPt,
    "--config",
    vitConfig,
    "--features",
    "pre",
    "--batch-size",
    "3",
    "--no-progress",
  );
  t.regex(said, /\[4, 32\] from ids/);
  const want = await readNpy(sharedPath("fixtures", "tiny-vit", "text_features_preproj.npy"));
  t.true(maxRelative((await readNpy(out)).data as Float32Array, want.data as Float32Array) <= 1e-5);
});

test.serial("bad model specs and inputs are named", async (t) => {
  const out = join(scratch, "x.npy");
  await t.throwsAsync(
    vilref(
      "embed",
      "--npy",
      sharedPath("fixtures", "tiny-vit", "images.npy"),
      "--out",
      out,
      "--model",
      "preset:vit-h-14",
    ),
    { message: /unknown preset/ },
  );
  await t.throwsAsync(
    vilref(
      "embed",
      "--npy",
      sharedPath("fixtures", "tiny-vit", "images.npy"),
      "--out",
      out,
      "--model",
      join(scratch, "nope.safetensors"),
    ),
    { message: /no such checkpoint/ },
  );
  await t.throwsAsync(
    vilref(
      "embed",
      "--npy",
      sharedPath("fixtures", "tiny-vit", "images.npy"),
      "--images",
      scratch,
      "--out",
      out,
      "--model",
      "preset:tiny-vit",
    ),
    { message: /exactly one of/ },
  );
  await t.throwsAsync(
    vilref(
      "embed",
      "--npy",
      sharedPath("fixtures", "tiny-rn50", "images.npy"),
      "--out",
      out,
      "--model",
      "preset:tiny-vit",
    ),
    { message: /images: expected shape \[\*, 3, 32, 32\]/ },
  );
  t.true(
    readdirSync(scratch).every((f) => !f.startsWith("x.npy")),
    "nothing written on failure",
  );
});
