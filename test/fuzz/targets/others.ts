/**
 * The other inputs a user hands vilref: safetensors checkpoints (the reader, and readCheckpoint's
 * config check against a vilref metadata config), images (through the Loader, strict), manifests
 * (CSV and JSON Lines) and configs (pretrain and model). Mutations of valid files may go either way;
 * truncations, deep JSON and configs that do not fit their tensors must fail; errors must name the
 * file.
 */
import { readFileSync } from "node:fs";
import sharp from "sharp";
import { encodeSafetensors, readSafetensors } from "../../../lib/checkpoint/safetensors.js";
import type { StTensor } from "../../../lib/checkpoint/safetensors.js";
import { mulberry32 } from "../../../lib/data/rng.js";
import type { Rng } from "../../../lib/data/rng.js";
import { Loader } from "../../../lib/data/loader.js";
import { readManifest } from "../../../lib/data/manifest.js";
import { parseJson } from "../../../lib/io/json.js";
import { parseModelConfig, presetConfig } from "../../../lib/model/config.js";
import { readCheckpoint } from "../../../lib/model/vilref.js";
import { loadConfig } from "../../../lib/train/config.js";
import { flipBits, havoc, randomBytes, type FuzzCase, type Target } from "../case.js";

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));

/** `depth` nested arrays or objects around a value. */
function deepJson(rng: Rng, depth: number): string {
  const obj = rng.chance(0.5);
  return (obj ? '{"a":' : "[").repeat(depth) + "1" + (obj ? "}" : "]").repeat(depth);
}

// ---- safetensors ---------------------------------------------------------------------------------

let modelTensors: Map<string, StTensor> = new Map();

function randomTensors(rng: Rng): Map<string, StTensor> {
  const m = new Map<string, StTensor>();
  for (let i = 0, n = rng.int(0, 4); i < n; i++) {
    const shape = Array.from({ length: rng.int(0, 3) }, () => rng.int(0, 4));
    const count = shape.reduce((a, b) => a * b, 1);
    const f = rng.chance(0.7);
    m.set(
      `t${i}`,
      f
        ? { dtype: "F32", shape, data: new Float32Array(count).fill(i) }
        : { dtype: "I64", shape, data: new BigInt64Array(count) },
    );
  }
  return m;
}

function safetensorsCase(rng: Rng): FuzzCase {
  const base = encodeSafetensors(randomTensors(rng), rng.chance(0.5) ? { note: "x" } : undefined);
  const n = Number(base.readBigUInt64LE(0));
  const how = rng.pick(["header-havoc", "header-flip", "length", "truncate", "deep", "data-flip"]);
  const file = "case.safetensors";
  const either = (bytes: Uint8Array): FuzzCase => ({
    kind: `safetensors/${how}`,
    mustFail: false,
    bytes,
    file,
    extra: { reader: "safetensors" },
    check: (r) => {
      for (const [k, t] of (r as { tensors: Map<string, StTensor> }).tensors)
        if (t.data.length !== t.shape.reduce((a, b) => a * b, 1)) return `${k}: data does not fill its shape`;
      return "";
    },
  });
  if (how === "header-havoc") {
    const header = havoc(base.subarray(8, 8 + n), rng, [0x22, 0x5b, 0x5d, 0x7b, 0x7d, 0x2c, 0x3a, 0x30]);
    const out = Buffer.alloc(8 + header.length + base.length - 8 - n);
    out.writeBigUInt64LE(BigInt(header.length), 0);
    out.set(header, 8);
    out.set(base.subarray(8 + n), 8 + header.length);
    return either(out);
  }
  if (how === "header-flip") return either(flipBits(base, rng, 8, 8 + n));
  if (how === "data-flip") return either(flipBits(base, rng, 8 + n, base.length));
  if (how === "length") {
    const out = Buffer.from(base);
    out.writeBigUInt64LE(
      rng.pick([0n, 1n, BigInt(n) + 1n, BigInt(n) - 1n, 2n ** 64n - 1n, 2n ** 63n, 100n * 2n ** 20n + 1n]),
      0,
    );
    return either(out);
  }
  if (how === "deep") {
    const text = `{"__metadata__":{"a":"b"},"x":${deepJson(rng, rng.int(101, 200_000))}}`;
    const out = Buffer.alloc(8 + text.length);
    out.writeBigUInt64LE(BigInt(text.length), 0);
    out.write(text, 8);
    return {
      kind: "safetensors/deep",
      mustFail: true,
      bytes: out,
      file,
      culprit: /nested deeper than 100/,
      extra: { reader: "safetensors" },
    };
  }
  return {
    kind: "safetensors/truncate",
    mustFail: true,
    bytes: base.subarray(0, rng.int(0, base.length - 1)),
    file,
    extra: { reader: "safetensors" },
  };
}

/** A tiny-vit state dict with a vilref metadata config: unchanged (must load), a field changed
 * (must fail), deep JSON. */
function modelCase(rng: Rng): FuzzCase {
  const config: Record<string, unknown> = { ...presetConfig("tiny-vit") };
  const file = "model.safetensors";
  const how = rng.pick(["same", "field", "deep", "metadata-havoc"]);
  let meta: string;
  if (how === "field") {
    const field = rng.pick([
      "embed_dim",
      "vision_width",
      "vision_layers",
      "text_hidden_size",
      "text_num_hidden_layers",
      "vocab_size",
      "text_intermediate_size",
      "text_max_position_embeddings",
      "image_resolution",
      "vision_patch_size",
    ]);
    const v = config[field] as number;
    const big = rng.pick([v * 2, v + 8, 2 ** 20, 2 ** 30, 4096]);
    config[field] = big;
    if (field === "text_hidden_size") config.text_num_attention_heads = 1;
    if (field === "vision_width") config.vision_head_width = 1;
    if (field === "vision_patch_size") config.image_resolution = big * 4;
    if (field === "image_resolution") config.image_resolution = (config.vision_patch_size as number) * 64;
    meta = JSON.stringify({ format: 1, config });
  } else if (how === "deep") meta = `{"format":1,"config":${deepJson(rng, rng.int(101, 50_000))}}`;
  else meta = JSON.stringify({ format: 1, config });
  if (how === "metadata-havoc") meta = Buffer.from(havoc(utf8(meta), rng)).toString("utf8");
  const bytes = encodeSafetensors(modelTensors, { vilref: meta });
  return {
    kind: `model/${how}`,
    mustFail: how === "field" || how === "deep",
    bytes,
    file,
    extra: { reader: "checkpoint" },
    ...(how === "deep"
      ? { culprit: /nested deeper than 100/ }
      : how === "field"
        ? { culprit: /does not fit|do not describe|config/ }
        : {}),
    check: (r) =>
      JSON.stringify((r as { config: unknown }).config) === JSON.stringify(presetConfig("tiny-vit")) ||
      how === "metadata-havoc"
        ? ""
        : "config changed",
  };
}

export const safetensorsTarget: Target = {
  name: "safetensors",
  async setup() {
    const { ViLReF } = await import("../../../lib/model/vilref.js");
    const state = await ViLReF.create("tiny-vit").stateDict();
    modelTensors = new Map(
      Object.entries(state).map(([k, v]) => [
        k,
        v.data instanceof BigInt64Array
          ? { dtype: "I64", shape: v.shape, data: v.data }
          : { dtype: "F32", shape: v.shape, data: v.data as Float32Array },
      ]),
    );
  },
  generate: (rng) => (rng.chance(0.7) ? safetensorsCase(rng) : modelCase(rng)),
  async run(c, path) {
    if (c.extra?.reader === "checkpoint") return readCheckpoint(path);
    return readSafetensors(path);
  },
};

// ---- images ----------------------------------------------------------------------------------------

let images: Array<{ ext: string; bytes: Uint8Array }> = [];

export const imageTarget: Target = {
  name: "image",
  async setup() {
    const raw = randomBytes(mulberry32(1), 40 * 48 * 3);
    const img = () => sharp(Buffer.from(raw), { raw: { width: 48, height: 40, channels: 3 } });
    images = [
      { ext: "jpg", bytes: await img().jpeg({ quality: 80 }).toBuffer() },
      { ext: "jpg", bytes: await img().jpeg({ progressive: true }).toBuffer() },
      { ext: "png", bytes: await img().png().toBuffer() },
      { ext: "tif", bytes: await img().tiff().toBuffer() },
      { ext: "webp", bytes: await img().webp().toBuffer() },
    ];
  },
  generate(rng) {
    const base = rng.pick(images);
    const how = rng.pick(["flip", "havoc", "truncate", "garbage"]);
    const bytes =
      how === "flip"
        ? flipBits(base.bytes, rng, 0, base.bytes.length, rng.int(1, 16))
        : how === "havoc"
          ? havoc(base.bytes, rng)
          : how === "truncate"
            ? base.bytes.subarray(0, rng.int(0, base.bytes.length - 1))
            : randomBytes(rng, rng.int(0, 2000));
    return {
      kind: `image/${base.ext}/${how}`,
      mustFail: how === "garbage",
      bytes,
      file: `case.${base.ext}`,
      check: (r) => ((r as Float32Array).every(Number.isFinite) ? "" : "non-finite pixels"),
    };
  },
  async run(c, path) {
    const sample = {
      id: "x",
      image: path,
      text: null,
      labels: null,
      split: null,
      patientId: null,
      eye: null,
      target: null,
      source: { file: "m", line: 1 },
    };
    const loader = new Loader([sample], { batchSize: 1, strict: true, transform: { size: 32 } });
    for await (const b of loader.epoch(0)) return b.images.data;
    throw new Error(`${path}: no batch`);
  },
};

// ---- manifests -------------------------------------------------------------------------------------

const CSV = 'id,image,text,labels\na,a.jpg,视网膜正常,"{""dr"":0}"\nb,b.jpg,"糖尿病视网膜病变, 出血",\n';
const JSONL =
  '{"id":"a","image":"a.jpg","text":"视网膜正常","labels":{"dr":0}}\n{"id":"b","image":"b.jpg","text":"出血"}\n';

export const manifestTarget: Target = {
  name: "manifest",
  async setup() {},
  generate(rng) {
    const jsonl = rng.chance(0.5);
    const base = utf8(jsonl ? JSONL : CSV);
    const file = jsonl ? "case.jsonl" : "case.csv";
    if (jsonl && rng.chance(0.15)) {
      const text = `{"id":"a","image":"a.jpg","text":"x","labels":${deepJson(rng, rng.int(101, 100_000))}}\n`;
      return {
        kind: "manifest/deep",
        mustFail: true,
        bytes: utf8(text),
        file,
        culprit: /case\.jsonl:1: .*nested deeper than 100/,
      };
    }
    return {
      kind: `manifest/${jsonl ? "jsonl" : "csv"}-havoc`,
      mustFail: false,
      bytes: havoc(base, rng, [0x22, 0x2c, 0x0a, 0x7b]),
      file,
    };
  },
  async run(c, path) {
    return readManifest(path);
  },
};

// ---- configs ---------------------------------------------------------------------------------------

const PRETRAIN = {
  model: { preset: "tiny-vit" },
  data: { train: "m.jsonl" },
  batchSize: 8,
  steps: 10,
  output: "runs/a",
};

export const configTarget: Target = {
  name: "config",
  async setup() {},
  generate(rng) {
    const model = rng.chance(0.5);
    const file = model ? "model.json" : "pretrain.json";
    const base = JSON.stringify(model ? presetConfig("tiny-vit") : PRETRAIN);
    const how = rng.pick(["havoc", "value", "deep"]);
    if (how === "deep") {
      const text = base.replace(/}$/, `,"extra":${deepJson(rng, rng.int(101, 100_000))}}`);
      return {
        kind: `config/${file}/deep`,
        mustFail: true,
        bytes: utf8(text),
        file,
        culprit: /nested deeper than 100/,
      };
    }
    if (how === "value") {
      const v = JSON.parse(base) as Record<string, unknown>;
      const k = rng.pick(Object.keys(v));
      v[k] = rng.pick<unknown>([-1, 0, 1e308, "x", null, [], {}, 2 ** 53, 0.5, true]);
      return { kind: `config/${file}/value`, mustFail: false, bytes: utf8(JSON.stringify(v)), file };
    }
    return { kind: `config/${file}/havoc`, mustFail: false, bytes: havoc(utf8(base), rng), file };
  },
  async run(c, path) {
    if (c.file === "model.json") return parseModelConfig(parseJson(readFileSync(path, "utf8"), path), path);
    return loadConfig(path);
  },
};
