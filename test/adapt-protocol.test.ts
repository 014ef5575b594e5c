// The few-shot protocol end to end on a small synthetic set (lib/synth) with a random tiny model
// and a deterministic stand-in text encoder: every method runs through draws, validation choice,
// test metrics and patient aggregation; Tip-Adapter with α fixed at 0 reports the zero-shot AUC;
// the CLI writes its outputs.
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_RATIOS, fewShotAdapter } from "../lib/adapt/fewshot.js";
import type { FewShotResult } from "../lib/adapt/fewshot.js";
import { loraFewShot } from "../lib/adapt/lora-fewshot.js";
import { manifestDataset } from "../lib/eval/dataset.js";
import type { EvalDataset } from "../lib/eval/dataset.js";
import type { TextEncodeFn } from "../lib/eval/features.js";
import { normalizeRows } from "../lib/eval/features.js";
import { ViLReF } from "../lib/model/vilref.js";
import { writeSynthDataset } from "../lib/synth/index.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-adapt-"));
let ds: EvalDataset;

/** A deterministic unit vector per text (a stand-in for the text tower). */
const fakeText =
  (d: number): TextEncodeFn =>
  async (texts) => {
    const out = new Float32Array(texts.length * d);
    texts.forEach((s, i) => {
      let h = 2166136261;
      for (const ch of s) h = Math.imul(h ^ ch.codePointAt(0)!, 16777619) >>> 0;
      for (let k = 0; k < d; k++)
        out[i * d + k] = ((h = Math.imul(h ^ (h >>> 15), 2246822507) >>> 0) / 2 ** 32) * 2 - 1;
    });
    return normalizeRows(out, texts.length, d);
  };

test.before(async () => {
  await writeSynthDataset(root, 90, 3, { size: 64 });
  const file = path.join(root, "manifest.jsonl");
  const rows = readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  // patients split 50/20/30 by their index (both eyes in one split)
  const split = (p: string) => {
    const k = [...p].reduce((a, c) => a + c.charCodeAt(0), 0) % 10;
    return k < 5 ? "train" : k < 7 ? "val" : "test";
  };
  writeFileSync(file, rows.map((r) => JSON.stringify({ ...r, split: split(String(r.patient_id)) })).join("\n") + "\n");
  const all = manifestDataset(file);
  // the classes with 3+ positives in train and both labels in val and test
  const count = (s: string, c: number, v: number) => all.samples.filter((x) => x.split === s && x.y![c] === v).length;
  const classes = all.classes.filter(
    (_, c) => count("train", c, 1) >= 3 && ["val", "test"].every((s) => count(s, c, 1) > 0 && count(s, c, 0) > 0),
  );
  ds = manifestDataset(file, { classes });
});

test("tip, tip-f and clip-adapter: draws, validation choice, test metrics, patients", async (t) => {
  t.true(ds.classes.length >= 2, ds.classes.join(","));
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const enc = fakeText(model.config.embed_dim);
  const testIds = new Set(ds.samples.filter((s) => s.split === "test").map((s) => s.id));
  for (const method of ["tip", "tip-f", "clip-adapter"] as const) {
    const r = await fewShotAdapter(model, enc, ds, {
      method,
      shots: 2,
      draws: 2,
      resamples: 20,
      epochs: 3,
      patient: "max",
    });
    t.is(r.seeds.length, 2, method);
    t.deepEqual(
      r.seeds.map((s) => s.seed),
      [0, 1],
    );
    for (const s of r.seeds) {
      t.true(Object.values(s.perClass).every((ids) => ids.length === 2 && ids.every((id) => !testIds.has(id))));
      t.true(Number.isFinite(s.testAuc), `${method} ${s.testAuc}`);
    }
    t.is(r.n, testIds.size);
    t.is(r.predictions.ids.length, testIds.size);
    t.is(r.predictions.scores.length, testIds.size * ds.classes.length);
    t.deepEqual(r.predictions.classes, ds.classes);
    t.is(r.predictions.gold.length, testIds.size);
    t.is(r.overSeeds.draws, 2);
    const patients = new Set(ds.samples.filter((s) => s.split === "test").map((s) => s.patientId));
    t.is(r.patient!.patients, patients.size);
    t.is(r.patient!.n, patients.size);
    if (method !== "clip-adapter") t.true(r.seeds.every((s) => s.beta !== undefined && s.alpha !== undefined));
    if (method !== "tip") t.true(r.seeds.every((s) => s.losses!.length === 3));
  }
});

test("CLIP-Adapter: the blend ratio with the best validation AUC is kept; a given ratio is used alone", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const enc = fakeText(model.config.embed_dim);
  const o = { method: "clip-adapter", shots: 2, draws: 2, resamples: 0, epochs: 3 } as const;
  const chosen = await fewShotAdapter(model, enc, ds, o);
  const each: FewShotResult[] = [];
  for (const ratio of DEFAULT_RATIOS) {
    const r = await fewShotAdapter(model, enc, ds, { ...o, ratio });
    t.true(r.seeds.every((s) => s.ratio === ratio));
    each.push(r);
  }
  chosen.seeds.forEach((s, k) => {
    const i = DEFAULT_RATIOS.indexOf(s.ratio!);
    t.true(i >= 0, String(s.ratio));
    // the same training (same seed and ratio) as the single-ratio run, and no ratio did better on val
    t.is(s.valAuc, each[i]!.seeds[k]!.valAuc);
    t.is(s.testAuc, each[i]!.seeds[k]!.testAuc);
    t.true(each.every((r) => r.seeds[k]!.valAuc <= s.valAuc));
  });
});

test("Tip-Adapter with α fixed at 0 scores exactly the zero-shot AUC", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 2 });
  const r = await fewShotAdapter(model, fakeText(model.config.embed_dim), ds, {
    method: "tip",
    shots: 2,
    alphas: [0],
    resamples: 0,
  });
  t.is(r.seeds[0]!.alpha, 0);
  t.is(r.seeds[0]!.testAuc, r.zeroShotAuc);
});

test("LoRA: few-shot fine-tuning of the adapters and a head; the base weights unchanged", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 3 });
  const before = (await model.stateDict())["visual.transformer.resblocks.0.attn.in_proj_weight"]!.data.slice();
  let saved = 0;
  const r = await loraFewShot(model, ds, {
    shots: 2,
    epochs: 2,
    rank: 1,
    targets: "attention",
    resamples: 20,
    patient: "mean",
    onAdapters: async (l) => void (saved = l.config.parameters),
  });
  t.is(r.method, "lora");
  t.true(Number.isFinite(r.seeds[0]!.testAuc));
  t.true(saved > 0);
  t.is(r.trainableParameters, saved + ds.classes.length * model.config.vision_width + ds.classes.length);
  t.deepEqual((await model.stateDict())["visual.transformer.resblocks.0.attn.in_proj_weight"]!.data, before);
  t.truthy(r.patient);
});

test("a class with too few training images is an error naming it", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  await t.throwsAsync(fewShotAdapter(model, fakeText(model.config.embed_dim), ds, { method: "tip", shots: 500 }), {
    message: new RegExp(`class "${ds.classes[0]}": \\d+ training images positive for it, fewer than --shots 500`),
  });
});

test("vilref eval adapter --method lora writes the metrics, the predictions and the adapters", async (t) => {
  const { main } = await import("../lib/cli/main.js");
  const out = path.join(root, "lora.json");
  const pred = path.join(root, "pred.jsonl");
  const adapters = path.join(root, "lora.safetensors");
  let stdout = "";
  const code = await main(
    [
      "node",
      "vilref",
      "eval",
      "adapter",
      "--model",
      "preset:tiny-vit",
      "--data",
      path.join(root, "manifest.jsonl"),
      "--classes",
      ds.classes.join(","),
      "--method",
      "lora",
      "--shots",
      "2",
      "--epochs",
      "1",
      "--rank",
      "2",
      "--bootstrap",
      "10",
      "--patient",
      "max",
      "--out",
      out,
      "--predictions",
      pred,
      "--save-adapters",
      adapters,
      "--no-progress",
    ],
    { out: (s) => (stdout += s), err: (s) => (stdout += s) },
  );
  t.is(code, 0, stdout);
  const r = JSON.parse(readFileSync(out, "utf8")) as {
    method: string;
    shots: number;
    n: number;
    patient: { patients: number };
    trainableParameters: number;
  };
  t.like(r, { method: "lora", shots: 2 });
  t.true(r.patient.patients > 0 && r.trainableParameters > 0);
  const lines = readFileSync(pred, "utf8").trim().split("\n");
  t.is(lines.length, r.n);
  t.deepEqual(Object.keys((JSON.parse(lines[0]!) as { scores: object }).scores), ds.classes);
  for (const line of lines) {
    // the shared predictions layout: probabilities, and the classes at ≥ 0.5 predicted (multi-label)
    const row = JSON.parse(line) as { scores: Record<string, number>; predicted: string[]; gold: string[] };
    t.true(
      Object.values(row.scores).every((p) => p >= 0 && p <= 1),
      line,
    );
    t.deepEqual(
      row.predicted,
      ds.classes.filter((c) => row.scores[c]! >= 0.5),
      line,
    );
    t.true(Array.isArray(row.gold), line);
  }
  t.true(readFileSync(adapters).length > 0);
  const bad = await main(
    [
      "node",
      "vilref",
      "eval",
      "adapter",
      "--model",
      "preset:tiny-vit",
      "--data",
      out,
      "--method",
      "tip",
      "--shots",
      "2",
      "--save-adapters",
      adapters,
    ],
    { out: () => {}, err: () => {} },
  );
  t.is(bad, 2);
});

test("zero-shot and the probe report per-patient metrics; \
without patient ids it is an error naming the row", async (t) => {
  const { zeroShot } = await import("../lib/eval/zeroshot.js");
  const { linearProbe } = await import("../lib/eval/probe.js");
  const model = ViLReF.create("tiny-vit", { seed: 5 });
  const testSet = ds.samples.filter((s) => s.split === "test");
  const patients = new Set(testSet.map((s) => s.patientId)).size;
  const zs = await zeroShot(model, fakeText(model.config.embed_dim), ds, testSet, { resamples: 10, patient: "mean" });
  t.is(zs.patient!.patients, patients);
  t.deepEqual(zs.patient!.classes, zs.classes);
  const pr = await linearProbe(model, ds, { resamples: 10, patient: "max", cGrid: [1], onWarning: () => {} });
  t.is(pr.patient!.n, patients);
  // the same set with the patient ids taken away
  const anonymous = { ...ds, samples: ds.samples.map((s) => ({ ...s, patientId: null })) };
  const noIds = anonymous.samples.filter((s) => s.split === "test");
  await t.throwsAsync(
    zeroShot(model, fakeText(model.config.embed_dim), anonymous, noIds, { resamples: 0, patient: "max" }),
    {
      message: /patient-level metrics need a patient id on every image: .*manifest\.jsonl:\d+ \(sample .*\) has none/,
    },
  );
});

test("loraFewShot's full option (the baseline) trains the tower itself and takes one draw", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 6 });
  const key = "visual.transformer.resblocks.0.attn.in_proj_weight";
  const before = Array.from((await model.stateDict())[key]!.data as Float32Array);
  const r = await loraFewShot(model, ds, { shots: 2, epochs: 1, resamples: 0, full: { backboneLr: 1e-3 } });
  t.is(r.method, "finetune");
  t.true(r.trainableParameters > r.backboneParameters / 2);
  t.notDeepEqual(Array.from((await model.stateDict())[key]!.data as Float32Array), before);
  await t.throwsAsync(loraFewShot(model, ds, { shots: 2, draws: 2, full: { backboneLr: 1e-3 } }), {
    instanceOf: RangeError,
    message: /draws: full fine-tuning changes the model; one draw/,
  });
});
