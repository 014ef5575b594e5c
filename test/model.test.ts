// The ViLReF model: parity with the released code's outputs (../shared/fixtures), checkpoints in
// both formats, and clear errors for bad checkpoints and bad inputs.
import test from "ava";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../lib/build/addon.js";
import { readNpy, writeNpy } from "../lib/io/npy.js";
import { inferConfig, presetConfig } from "../lib/model/config.js";
import { embedNpy } from "../lib/model/embed-npy.js";
import { readCheckpoint, ViLReF } from "../lib/model/vilref.js";
import { native } from "../lib/native.js";
import type { TensorData } from "../lib/native.js";
import { sharedPath } from "./helpers/shared.js";
import { maliciousPt, releasedPt, tensor } from "./helpers/torch-zip.js";

const scratch = mkdtempSync(join(tmpdir(), "vilref-model-"));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

const fixtures = ["tiny-vit", "tiny-rn50"] as const;
const fixtureConfig = (name: string) => JSON.parse(readFileSync(sharedPath("fixtures", name, "config.json"), "utf8"));

/** max |got − want| / max |want| */
function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / scale;
}

async function checkParity(t: import("ava").ExecutionContext, model: ViLReF, name: string) {
  const dir = sharedPath("fixtures", name);
  const images = await readNpy(join(dir, "images.npy"));
  const ids = await readNpy(join(dir, "text_ids.npy"));
  const img = await model.encodeImages({ data: images.data as Float32Array, shape: images.shape });
  const txt = await model.encodeTexts({ data: ids.data as BigInt64Array, shape: ids.shape });
  const outputs: [string, TensorData][] = [
    ["image_features", img],
    [
      "image_features_preproj",
      await model.encodeImages({ data: images.data as Float32Array, shape: images.shape }, { features: "pre" }),
    ],
    ["text_features", txt],
    [
      "text_features_preproj",
      await model.encodeTexts({ data: ids.data as BigInt64Array, shape: ids.shape }, { features: "pre" }),
    ],
    ["logits_per_image", await model.similarity(img, txt)],
  ];
  for (const [file, got] of outputs) {
    const want = await readNpy(join(dir, `${file}.npy`));
    t.deepEqual(got.shape, want.shape, `${name} ${file} shape`);
    const err = relativeError(got.data, want.data as Float32Array);
    t.true(err <= 1e-5, `${name} ${file}: relative error ${err.toExponential(2)}`);
  }
}

for (const name of fixtures) {
  test(`${name}: the released checkpoint.pt reproduces every released output`, async (t) => {
    const model = await ViLReF.load(sharedPath("fixtures", name, "checkpoint.pt"), { config: fixtureConfig(name) });
    await checkParity(t, model, name);
  });

  test(`${name}: after \`vilref convert\` to safetensors, the same outputs, config from the metadata`, async (t) => {
    const out = join(scratch, `${name}.safetensors`);
    const cfg = join(scratch, `${name}-config.json`);
    writeFileSync(cfg, JSON.stringify(fixtureConfig(name)));
    const r = spawnSync(
      process.execPath,
      [
        join(packageRoot, "bin/vilref.js"),
        "convert",
        sharedPath("fixtures", name, "checkpoint.pt"),
        out,
        "--config",
        cfg,
      ],
      { encoding: "utf8" },
    );
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^wrote .*: \d+ tensors/);
    const model = await ViLReF.load(out);
    t.like(model.config, fixtureConfig(name));
    await checkParity(t, model, name);
  });

  test(`${name}: shapes give the config back, but for head widths`, async (t) => {
    const { tensors } = await readCheckpoint(sharedPath("fixtures", name, "checkpoint.pt"), fixtureConfig(name));
    const cfg = fixtureConfig(name);
    const shapes = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape]));
    const inferred = inferConfig(shapes, {
      vision_head_width: cfg.vision_head_width,
      text_num_attention_heads: cfg.text_num_attention_heads,
    });
    t.like(inferred, {
      ...cfg,
      text_attention_probs_dropout_prob: undefined,
      text_hidden_dropout_prob: undefined,
      text_initializer_range: undefined,
    });
    t.is(inferConfig(shapes).vision_head_width, 64);
  });
}

test("safetensors save → load is bit-exact, labels and vocabulary hash kept", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 5 });
  const path = join(scratch, "saved.safetensors");
  await model.save(path, { labels: ["normal", "dr"], vocabSha256: "ab".repeat(32) });
  const back = await ViLReF.load(path);
  const [a, b] = [await model.stateDict(), await back.stateDict()];
  t.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  for (const k of Object.keys(a))
    t.deepEqual(
      Buffer.from(b[k]!.data.buffer, b[k]!.data.byteOffset, b[k]!.data.byteLength),
      Buffer.from(a[k]!.data.buffer, a[k]!.data.byteOffset, a[k]!.data.byteLength),
      k,
    );
  t.deepEqual(back.labels, ["normal", "dr"]);
  t.is(back.vocabSha256, "ab".repeat(32));
});

test("seeded creation is reproducible; the seed matters", async (t) => {
  const a = await ViLReF.create("tiny-rn50", { seed: 1 }).stateDict();
  const b = await ViLReF.create("tiny-rn50", { seed: 1 }).stateDict();
  const c = await ViLReF.create("tiny-rn50", { seed: 2 }).stateDict();
  const key = "visual.attnpool.q_proj.weight";
  t.deepEqual(Array.from(a[key]!.data as Float32Array), Array.from(b[key]!.data as Float32Array));
  t.notDeepEqual(Array.from(a[key]!.data as Float32Array), Array.from(c[key]!.data as Float32Array));
  t.true(
    Array.from(a["visual.layer1.0.bn3.weight"]!.data as Float32Array).every((v) => v === 0),
    "the last BN of each block starts at zero",
  );
});

test("missing and unexpected tensors are reported by name", async (t) => {
  const model = ViLReF.create("tiny-vit");
  const state = await model.stateDict();
  const { ["visual.proj"]: _proj, ...rest } = state;
  const bad = { ...rest, "visual.extra.weight": state["text_projection"]! };
  const e = await t.throwsAsync(model.loadStateDict(bad));
  t.is(e?.constructor, RangeError);
  t.is(e?.message, "the checkpoint does not fit this model: missing visual.proj; unexpected visual.extra.weight");
  t.deepEqual(await model.loadStateDict(bad, { strict: false }), {
    missing: ["visual.proj"],
    unexpected: ["visual.extra.weight"],
  });
  // a ViT checkpoint into a ResNet model: named, not a crash
  const rn = ViLReF.create("tiny-rn50");
  const mismatch = await t.throwsAsync(rn.loadStateDict(state));
  t.regex(
    mismatch!.message,
    new RegExp(
      /^the checkpoint does not fit this model: missing .*visual\.conv2\.weight.*\(122 in all\); /.source +
        /unexpected visual\.class_embedding/.source,
    ),
  );
  await t.throwsAsync(model.loadStateDict({ ...state, "visual.proj": { data: new Float32Array(4), shape: [2, 2] } }), {
    instanceOf: RangeError,
    message: 'stateDict["visual.proj"]: expected shape [64, 24] (2-D), got [2, 2]',
  });
});

test("bad .pt files get clear errors and nothing in them runs", async (t) => {
  const marker = join(scratch, "pwned");
  const cases: [string, Buffer, RegExp][] = [
    ["os.system in a state_dict", maliciousPt(marker), /not a loadable PyTorch checkpoint/],
    ["os.system at the top", maliciousPt(marker, { topLevel: true }), /not a loadable PyTorch checkpoint/],
    ["subprocess.call", maliciousPt(marker, { global: ["subprocess", "call"] }), /not a loadable PyTorch checkpoint/],
    [
      "truncated",
      readFileSync(sharedPath("fixtures", "tiny-vit", "checkpoint.pt")).subarray(0, 100_000),
      /not a loadable PyTorch checkpoint/,
    ],
    ["not a zip", Buffer.from("definitely not a checkpoint".repeat(100)), /not a loadable PyTorch checkpoint/],
    ["empty", Buffer.alloc(0), /not a loadable PyTorch checkpoint/],
  ];
  for (const [label, bytes, message] of cases) {
    const path = join(scratch, `${label.replace(/\W+/g, "-")}.pt`);
    writeFileSync(path, bytes);
    const e = await t.throwsAsync(ViLReF.load(path, { config: fixtureConfig("tiny-vit") }), { message }, label);
    t.true(e!.message.startsWith(path), `${label}: names the file`);
    t.notRegex(e!.message, /Exception raised from|frame #/);
  }
  t.false(existsSync(marker), "the pickle's os.system call never ran");
  // a well-formed released-style checkpoint with a non-tensor in its state_dict
  const odd = join(scratch, "odd.pt");
  writeFileSync(
    odd,
    releasedPt({ "visual.proj": tensor("float32", [1], new Float32Array([1])) }, { extra: [["module.note", "hello"]] }),
  );
  await t.throwsAsync(readCheckpoint(odd, fixtureConfig("tiny-vit")), {
    message: /state_dict\["note"\] is a String, not a tensor/,
  });
});

test("bad inputs are named before LibTorch sees them", async (t) => {
  const model = ViLReF.create("tiny-vit");
  await t.throwsAsync(model.encodeImages({ data: new Float32Array(2 * 3 * 48 * 48), shape: [2, 3, 48, 48] }), {
    instanceOf: RangeError,
    message: "images: expected shape [*, 3, 32, 32] (4-D), got [2, 3, 48, 48]",
  });
  await t.throwsAsync(model.encodeTexts({ data: BigInt64Array.from([101n, 99999n, 102n]), shape: [1, 3] }), {
    instanceOf: RangeError,
    message: "ids.data[1] = 99999 is outside the vocabulary [0, 21128)",
  });
  await t.throwsAsync(model.encodeTexts({ data: new Int32Array(65), shape: [1, 65] }), {
    instanceOf: RangeError,
    message: "ids: context length 65 is outside [1, 64] (text_max_position_embeddings)",
  });
  await t.throwsAsync(
    model.encodeTexts({ data: new Float32Array(3), shape: [1, 3] } as unknown as TensorData<Int32Array>),
    { instanceOf: TypeError, message: /^ids\.data: expected BigInt64Array or Int32Array, got Float32Array$/ },
  );
  await t.throwsAsync(
    model.encodeImages({ data: new Float32Array(3 * 32 * 32), shape: [1, 3, 32, 32] }, { features: "post" as "pre" }),
    { instanceOf: RangeError, message: /^options\.features:/ },
  );
  if (!native().cuda().available) {
    t.throws(() => ViLReF.create("tiny-vit", { device: "cuda" }), {
      instanceOf: RangeError,
      message: 'options.device: "cuda" asked for, but CUDA is not available (no GPU, or a CPU-only LibTorch)',
    });
  }
  t.throws(() => ViLReF.create("tiny-vit", { dtype: "bfloat16" }), {
    instanceOf: RangeError,
    message: "options.dtype: bfloat16 runs on CUDA only; use float32 on the CPU",
  });
  t.throws(() => ViLReF.create({ ...presetConfig("tiny-vit"), vision_patch_size: 7 }), {
    instanceOf: TypeError,
    message: "config: image_resolution: 32 is not a multiple of vision_patch_size 7",
  });
  t.throws(() => ViLReF.create({ ...presetConfig("tiny-vit"), vision_layers: [1, 2] as unknown as number }), {
    instanceOf: TypeError,
    message: /^config: vision_layers/,
  });
  t.throws(() => ViLReF.create("vit-h-14"), {
    instanceOf: RangeError,
    message: /unknown model preset "vit-h-14"; presets: demo-rn128, rn50, tiny-rn50, tiny-vit, vit-b-16/,
  });
  // int32 ids give the same features as int64
  const ids64 = BigInt64Array.from([101n, 2340n, 4706n, 102n, 0n, 0n]);
  const a = await model.encodeTexts({ data: ids64, shape: [1, 6] });
  const b = await model.encodeTexts({ data: Int32Array.from(ids64, Number), shape: [1, 6] });
  t.deepEqual(Array.from(a.data), Array.from(b.data));
});

test("padding does not change a text's features (the [PAD] mask works)", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const short = await model.encodeTexts({ data: BigInt64Array.from([101n, 2340n, 4706n, 102n]), shape: [1, 4] });
  const padded = await model.encodeTexts({
    data: BigInt64Array.from([101n, 2340n, 4706n, 102n, 0n, 0n, 0n, 0n]),
    shape: [1, 8],
  });
  t.true(relativeError(padded.data, short.data) < 1e-5);
});

test("positional embeddings resize (bicubic) for another resolution", async (t) => {
  const model = await ViLReF.load(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), {
    config: fixtureConfig("tiny-vit"),
  });
  const images = await readNpy(sharedPath("fixtures", "tiny-vit", "images.npy"));
  const before = await model.encodeImages({ data: images.data as Float32Array, shape: images.shape });
  await model.resizePositionalEmbedding(32);
  t.deepEqual(
    Array.from((await model.encodeImages({ data: images.data as Float32Array, shape: images.shape })).data),
    Array.from(before.data),
    "same size: unchanged",
  );
  await model.resizePositionalEmbedding(64);
  t.is(model.config.image_resolution, 64);
  t.deepEqual(model.parameters().find((p) => p.name === "visual.positional_embedding")?.shape, [65, 64]);
  const state = await model.stateDict();
  const pos = state["visual.positional_embedding"]!.data as Float32Array;
  const original = (
    await readCheckpoint(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), fixtureConfig("tiny-vit"))
  ).tensors["visual.positional_embedding"]!.data as Float32Array;
  t.deepEqual(Array.from(pos.subarray(0, 64)), Array.from(original.subarray(0, 64)), "class token's embedding kept");
  // align_corners: grid corners land on the old corners
  t.true(Math.abs(pos[64 + 0]! - original[64 + 0]!) < 1e-6, "top-left corner kept");
  t.true(Math.abs(pos[64 * 64 + 0]! - original[64 * 16 + 0]!) < 1e-5, "bottom-right corner kept");
  const big = new Float32Array(2 * 3 * 64 * 64).fill(0.1);
  t.deepEqual((await model.encodeImages({ data: big, shape: [2, 3, 64, 64] })).shape, [2, 24]);
  await t.throwsAsync(model.resizePositionalEmbedding(60), {
    instanceOf: RangeError,
    message: "resolution: 60 is not a multiple of 8",
  });
});

test("`.npy` in, `.npy` out: images and token ids in batches, rows in order", async (t) => {
  const model = await ViLReF.load(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), {
    config: fixtureConfig("tiny-vit"),
  });
  const out = join(scratch, "feats.npy");
  const r = await embedNpy(model, sharedPath("fixtures", "tiny-vit", "images.npy"), out, { batchSize: 3 });
  t.deepEqual(r, { rows: 4, dim: 24, kind: "images" });
  const feats = await readNpy(out);
  const want = await readNpy(sharedPath("fixtures", "tiny-vit", "image_features.npy"));
  t.deepEqual(feats.shape, [4, 24]);
  t.true(relativeError(feats.data as Float32Array, want.data as Float32Array) <= 1e-5);
  await t.throwsAsync(embedNpy(model, sharedPath("fixtures", "tiny-vit", "images.npy"), out, { batchSize: 0 }), {
    instanceOf: RangeError,
  });
});
