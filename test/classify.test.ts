// Zero-shot classification of unlabelled images: `vilref classify` on the 40 DRIVE images with the
// fixtures' tiny ViT writes 40 rows whose scores equal a direct computation from encodeImages and
// encodeTexts with the same prompts (built here from the prompt bank's JSON, not by the code under
// test); the API's classifier gives the same; bad class lists are usage errors naming the culprit.
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { preprocess } from "../lib/data/transforms.js";
import { expandGlob } from "../lib/data/inputs.js";
import { ZeroShotClassifier, resolveClassPrompts } from "../lib/eval/classify.js";
import { loadPromptBank } from "../lib/eval/zeroshot.js";
import { parseTable } from "../lib/io/table.js";
import { convertCheckpoint } from "../lib/model/pretrained.js";
import { ViLReF } from "../lib/model/vilref.js";
import { BertTokenizer, Vocab } from "../lib/text/index.js";
import { sharedPath } from "./helpers/shared.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-classify-"));
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");
const images = path.join(sharedPath("data", "DRIVE"), "*", "images", "*.tif");
const L = 24;
const modelFile = path.join(root, "tiny.safetensors");
const bank = JSON.parse(readFileSync(new URL("../lib/eval/prompts/zh-fundus.json", import.meta.url), "utf8")) as {
  templates: { positive: string[]; negative: string[] };
  classes: Record<string, { names: string[]; descriptions: string[]; positive?: string[]; negative?: string[] }>;
};

test.before(async () => {
  const config = JSON.parse(readFileSync(sharedPath("fixtures", "tiny-vit", "config.json"), "utf8")) as never;
  await convertCheckpoint(sharedPath("fixtures", "tiny-vit", "checkpoint.pt"), modelFile, {
    config,
    vocab,
    contextLength: L,
  });
});

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const log = console.log;
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  try {
    const code = await main(["node", "vilref", ...args], { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  } finally {
    console.log = log;
  }
}

// ---- the independent computation -------------------------------------------------------------

const uniq = (xs: string[]) => [...new Set(xs)];
/** Positive and negative prompts of a class, read from the bank's JSON: a bank class by name, or free text. */
function promptsOf(name: string): { positive: string[]; negative: string[] } {
  const fill = (ts: string[], names: string[]) => names.flatMap((n) => ts.map((t) => t.replaceAll("{name}", n)));
  const entry = Object.values(bank.classes).find((c) => c.names.includes(name));
  if (!entry)
    return {
      positive: uniq(fill(bank.templates.positive, [name])),
      negative: uniq(fill(bank.templates.negative, [name])),
    };
  return {
    positive: uniq([...(entry.positive ?? fill(bank.templates.positive, entry.names)), ...entry.descriptions]),
    negative: uniq(entry.negative ?? fill(bank.templates.negative, entry.names)),
  };
}

function unit(v: Float64Array): Float64Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

async function textFeature(model: ViLReF, tok: BertTokenizer, prompts: string[]): Promise<Float64Array> {
  const f = await model.encodeTexts(tok.encodeBatch(prompts, L));
  const d = f.shape[1]!;
  const mean = new Float64Array(d);
  for (let i = 0; i < prompts.length; i++) {
    const row = unit(Float64Array.from(f.data.subarray(i * d, (i + 1) * d) as Float32Array));
    for (let k = 0; k < d; k++) mean[k]! += row[k]! / prompts.length;
  }
  return unit(mean);
}

async function direct(
  classes: string[],
  files: string[],
): Promise<{ pos: Float64Array[]; neg: Float64Array[]; img: Float64Array[]; scale: number }> {
  const model = await ViLReF.load(modelFile);
  const tok = new BertTokenizer(Vocab.fromFile(vocab));
  const pos: Float64Array[] = [];
  const neg: Float64Array[] = [];
  for (const c of classes) {
    const p = promptsOf(c);
    pos.push(await textFeature(model, tok, p.positive));
    neg.push(await textFeature(model, tok, p.negative));
  }
  const R = model.config.image_resolution;
  const px = new Float32Array(files.length * 3 * R * R);
  for (let i = 0; i < files.length; i++) px.set(await preprocess(files[i]!, { size: R }), i * 3 * R * R);
  const f = await model.encodeImages({ data: px, shape: [files.length, 3, R, R] });
  const d = f.shape[1]!;
  const img = files.map((_, i) => unit(Float64Array.from(f.data.subarray(i * d, (i + 1) * d) as Float32Array)));
  const logit = (await model.stateDict()).logit_scale!.data[0] as number;
  return { pos, neg, img, scale: Math.exp(logit) };
}

const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, k) => s + x * b[k]!, 0);

// ---- tests ---------------------------------------------------------------------------------

const CLASSES = ["青光眼", "糖尿病视网膜病变", "正常眼底", "视网膜上有棉絮斑"];

test.serial(
  "classify on the 40 DRIVE images: 40 rows whose scores equal encodeImages/encodeTexts with the same prompts",
  async (t) => {
    const out = path.join(root, "p.csv");
    const r = await run(
      "classify",
      "--model",
      modelFile,
      "--images",
      images,
      "--classes",
      CLASSES.join(","),
      "--out",
      out,
      "--no-progress",
    );
    t.is(r.code, 0, r.err);
    t.regex(r.out, /wrote .*p\.csv: 40 images × 4 classes/);
    const parsed = parseTable(readFileSync(out, "utf8"), { file: out, delimiter: "," });
    const table = {
      header: parsed.header,
      rows: parsed.rows.map((r) => Object.fromEntries(parsed.header.map((h, i) => [h, r.fields[i]!]))),
    };
    t.deepEqual(table.header, ["id", "image", "predicted", "score", ...CLASSES]);
    t.is(table.rows.length, 40);
    const files = table.rows.map((row) => row.image!);
    t.deepEqual([...files].sort(), expandGlob(images));
    const ref = await direct(CLASSES, files);
    let maxDiff = 0;
    table.rows.forEach((row, i) => {
      const logits = ref.pos.map((p) => ref.scale * dot(ref.img[i]!, p));
      const m = Math.max(...logits);
      const z = logits.reduce((s, x) => s + Math.exp(x - m), 0);
      const probs = logits.map((x) => Math.exp(x - m) / z);
      CLASSES.forEach((c, k) => (maxDiff = Math.max(maxDiff, Math.abs(Number(row[c]) - probs[k]!))));
      const top = probs.indexOf(Math.max(...probs));
      t.is(row.predicted, CLASSES[top]);
      t.is(Number(row.score), Number(row[CLASSES[top]!]));
    });
    t.log(`largest difference from the direct computation: ${maxDiff.toExponential(2)}`);
    t.true(maxDiff < 1e-5, String(maxDiff));
  },
);

test.serial(
  "multi-label: sigmoid(scale · (cos to present − cos to absent prompts)) per class; predicted ≥ threshold; JSONL",
  async (t) => {
    const out = path.join(root, "p.jsonl");
    const r = await run(
      "classify",
      "--model",
      modelFile,
      "--images",
      images,
      "--classes",
      CLASSES.join("，"),
      "--multi-label",
      "--threshold",
      "0.5",
      "--out",
      out,
      "--no-progress",
    );
    t.is(r.code, 0, r.err);
    const rows = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            id: string;
            image: string;
            predicted: string[];
            score: number;
            scores: Record<string, number>;
          },
      );
    t.is(rows.length, 40);
    const ref = await direct(
      CLASSES,
      rows.map((x) => x.image),
    );
    let maxDiff = 0;
    rows.forEach((row, i) => {
      const p = CLASSES.map(
        (_, k) => 1 / (1 + Math.exp(-ref.scale * (dot(ref.img[i]!, ref.pos[k]!) - dot(ref.img[i]!, ref.neg[k]!)))),
      );
      CLASSES.forEach((c, k) => (maxDiff = Math.max(maxDiff, Math.abs(row.scores[c]! - p[k]!))));
      t.deepEqual(
        row.predicted,
        CLASSES.filter((_, k) => p[k]! >= 0.5).sort((a, b) => row.scores[b]! - row.scores[a]!),
      );
    });
    t.true(maxDiff < 1e-5, String(maxDiff));
  },
);

test.serial(
  "the API: a classifier made once; classify(files) and classify(pixels) give [{ label, score }] per image",
  async (t) => {
    const model = await ViLReF.load(modelFile);
    const tokenizer = new BertTokenizer(Vocab.fromText(model.vocab!));
    const clf = await ZeroShotClassifier.create(model, { classes: CLASSES, tokenizer });
    t.deepEqual(clf.classes, CLASSES);
    t.deepEqual(clf.prompts.get("视网膜上有棉絮斑")!.positive, promptsOf("视网膜上有棉絮斑").positive);
    const files = expandGlob(images).slice(0, 5);
    const byFile = await clf.classify([...files, path.join(root, "missing.png")]);
    t.is(byFile.length, 6);
    t.truthy(byFile[5]!.error);
    t.deepEqual(byFile[5]!.labels, []);
    for (const p of byFile.slice(0, 5)) {
      t.is(p.labels.length, 1);
      t.is(p.ranked.length, 4);
      t.deepEqual(p.labels[0], p.ranked[0]);
      t.true(p.ranked.every((x, i) => i === 0 || p.ranked[i - 1]!.score >= x.score));
      t.true(Math.abs(p.ranked.reduce((s, x) => s + x.score, 0) - 1) < 1e-9);
    }
    const R = model.config.image_resolution;
    const px = new Float32Array(5 * 3 * R * R);
    for (let i = 0; i < 5; i++) px.set(await preprocess(files[i]!, { size: R }), i * 3 * R * R);
    const byPixels = await clf.classify({ data: px, shape: [5, 3, R, R] });
    byPixels.forEach((p, i) => t.deepEqual(Array.from(p.scores), Array.from(byFile[i]!.scores)));
    // bank classes by id and by name take that class's prompts; free text fills the templates
    const b = loadPromptBank();
    const pr = resolveClassPrompts(b, ["glaucoma", "青光眼"]);
    t.deepEqual(pr.get("glaucoma"), pr.get("青光眼"));
    t.true(pr.get("glaucoma")!.positive.includes("视盘杯盘比扩大，C/D约0.7以上"));
  },
);

test.serial("bad class lists: an empty name and a repeated one are usage errors naming the culprit", async (t) => {
  const base = ["classify", "--model", modelFile, "--images", images, "--out", path.join(root, "x.csv")];
  let r = await run(...base, "--classes", "青光眼,,正常眼底");
  t.is(r.code, 2);
  t.regex(
    r.err,
    /^vilref classify: option '--classes <list>' argument '青光眼,,正常眼底' is invalid\. .*name 2 of 3 is empty/,
  );
  r = await run(...base, "--classes", "青光眼, ");
  t.is(r.code, 2);
  t.regex(r.err, /name 2 of 2 is empty/);
  r = await run(...base, "--classes", "青光眼,青光眼");
  t.is(r.code, 2);
  t.regex(r.err, /青光眼 is given twice/);
  const file = path.join(root, "classes.txt");
  writeFileSync(file, "青光眼\n正常眼底\n青光眼\n");
  r = await run(...base, "--classes-file", file);
  t.is(r.code, 2, r.err);
  t.regex(r.err, /青光眼 is given twice/);
  r = await run(...base);
  t.is(r.code, 2);
  t.regex(r.err, /--classes <list>, --classes-file <file> or --taxonomy/);
  r = await run(...base.slice(0, -2), "--out", path.join(root, "x.xlsx"), "--taxonomy");
  t.is(r.code, 2);
  t.regex(r.err, /--out <file>' argument .*x\.xlsx' is invalid\. Expected a \.csv, \.tsv or \.jsonl file/);
  r = await run(...base, "--taxonomy", "--threshold", "0.3");
  t.is(r.code, 2);
  t.regex(r.err, /--threshold needs --multi-label/);
});
