// LoRA (native/lora.cc) in the fine-tuner: a zero-initialised B gives outputs identical to the base
// model; training moves the factors and never the base weights; merging gives base + (alpha/rank)·B·A
// within 1e-6; the adapters are saved alone as safetensors and load back; bad input names the culprit.
import test from "ava";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Lora, loraTargets } from "../lib/adapt/lora.js";
import { readSafetensors } from "../lib/checkpoint/safetensors.js";
import { Finetuner } from "../lib/finetune/finetuner.js";
import { ViLReF } from "../lib/model/vilref.js";

const R = 32;
const dir = mkdtempSync(path.join(tmpdir(), "vilref-lora-"));

function toy(n: number, seed: number) {
  const images = new Float32Array(n * 3 * R * R);
  const labels = new Float32Array(n * 2);
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < n; i++) {
    const bright = i % 2;
    const left = (i >> 1) % 2;
    labels[2 * i] = bright;
    labels[2 * i + 1] = left;
    for (let k = 0; k < 3 * R * R; k++) {
      const x = k % R;
      images[i * 3 * R * R + k] = (bright ? 1 : -1) + (left && x < R / 2 ? 1 : 0) + 0.3 * (rand() - 0.5);
    }
  }
  return { images: { data: images, shape: [n, 3, R, R] }, labels: { data: labels, shape: [n, 2] } };
}

async function visual(model: ViLReF): Promise<Map<string, Float32Array>> {
  const state = await model.stateDict();
  return new Map(
    Object.entries(state)
      .filter(([k]) => k.startsWith("visual."))
      .map(([k, v]) => [k, Float32Array.from(v.data as Float32Array)]),
  );
}

test("target groups resolve to the image tower's released weight names", (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 1 });
  const att = loraTargets(model, "attention");
  const mlp = loraTargets(model, "mlp");
  t.true(att.length > 0 && mlp.length > 0);
  t.true(att.every((n) => /^visual\.transformer\.resblocks\.\d+\.attn\.(in_proj_weight|out_proj\.weight)$/.test(n)));
  t.true(mlp.every((n) => /mlp\.(c_fc|c_proj)\.weight$/.test(n)));
  t.deepEqual(loraTargets(model, "all").sort(), [...att, ...mlp].sort());
});

test("zero-initialised B: the adapted model's outputs are identical to the base model's", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 2 });
  const lora = new Lora(model, { rank: 4, targets: "all", seed: 3 });
  const x = toy(4, 1).images;
  for (const features of ["projected", "pre"] as const)
    t.deepEqual(
      Array.from((await lora.encodeImages(x, { features })).data as Float32Array),
      Array.from((await model.encodeImages(x, { features })).data as Float32Array),
    );
  // and the LoRA finetuner predicts what a frozen one with the same head predicts
  const a = new Finetuner(model, { classes: 2, seed: 5, lora });
  const b = new Finetuner(model, { classes: 2, seed: 5, frozen: true });
  t.deepEqual(Array.from((await a.predict(x)).data), Array.from((await b.predict(x)).data));
  const state = await lora.stateDict();
  const bs = Object.entries(state).filter(([k]) => k.endsWith(".lora_B"));
  t.true(bs.length > 0 && bs.every(([, v]) => v.data.every((z) => z === 0)));
});

test("training moves the factors, never the base weights; merge gives base + scale·B·A within 1e-6", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  const base = await visual(model);
  const lora = new Lora(model, { rank: 4, alpha: 8, targets: "attention", seed: 1 });
  t.is(lora.config.scale, 2);
  const ft = new Finetuner(model, { classes: 2, lr: 1e-2, loraLr: 1e-2, seed: 1, lora });
  t.true(ft.config.frozen && ft.config.lora);
  const head = 2 * 64 + 2;
  t.is(ft.config.trainableParameters, head + lora.config.parameters);
  const batch = toy(16, 2);
  const losses: number[] = [];
  for (let i = 0; i < 25; i++) losses.push((await ft.step(batch)).loss);
  t.true(losses.at(-1)! < 0.8 * losses[0]!, `losses ${losses[0]} → ${losses.at(-1)}`);
  // the base weights are bit-identical
  t.deepEqual(await visual(model), base);
  const factors = await lora.stateDict();
  t.true(Object.entries(factors).some(([k, v]) => k.endsWith(".lora_B") && v.data.some((z) => z !== 0)));
  // the finetuner's state holds the factors under lora.*
  const st = await ft.stateDict();
  t.true(Object.keys(st).some((k) => k.startsWith("lora.")) && !Object.keys(st).some((k) => k.startsWith("visual.")));
  const adapted = (await lora.encodeImages(batch.images, { features: "pre" })).data as Float32Array;
  await lora.merge();
  t.true(lora.merged);
  const merged = await visual(model);
  let worst = 0;
  for (const name of lora.config.targets) {
    const A = factors[`${name}.lora_A`]!;
    const B = factors[`${name}.lora_B`]!;
    const [out, r] = B.shape as [number, number];
    const fanIn = A.shape[1]!;
    const W = base.get(name)!;
    const M = merged.get(name)!;
    for (let o = 0; o < out; o++)
      for (let i = 0; i < fanIn; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += B.data[o * r + k]! * A.data[k * fanIn + i]!;
        worst = Math.max(worst, Math.abs(M[o * fanIn + i]! - (W[o * fanIn + i]! + 2 * s)));
      }
  }
  t.true(worst <= 1e-6, `largest difference ${worst}`);
  // weights that were not targets are untouched
  for (const [k, v] of base) if (!lora.config.targets.includes(k)) t.deepEqual(merged.get(k), v, k);
  // the merged model computes what the adapted one did
  const now = (await model.encodeImages(batch.images, { features: "pre" })).data as Float32Array;
  t.true(now.every((v, i) => Math.abs(v - adapted[i]!) <= 1e-4 * (1 + Math.abs(adapted[i]!))));
  await t.throwsAsync(ft.step(batch), { message: /merged/ });
  await t.throwsAsync(lora.merge(), { message: /merged into the model already/ });
});

test("the adapters are saved alone as safetensors and load back onto a fresh model", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 6 });
  const lora = new Lora(model, { rank: 2, targets: "mlp", seed: 2 });
  const ft = new Finetuner(model, { classes: 2, lr: 1e-2, loraLr: 1e-2, seed: 1, lora });
  for (let i = 0; i < 3; i++) await ft.step(toy(8, i));
  const file = path.join(dir, "adapters.safetensors");
  await lora.save(file);
  const { tensors, metadata } = await readSafetensors(file);
  t.is(metadata.format, "vilref-lora");
  t.is(metadata.rank, "2");
  t.deepEqual([...tensors.keys()].sort(), Object.keys(await lora.stateDict()).sort());
  t.true([...tensors.keys()].every((k) => /\.lora_[AB]$/.test(k)));
  const params = model.parameters().filter((p) => p.name.startsWith("visual."));
  const towerBytes = 4 * params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  t.true(statSync(file).size < towerBytes / 4, `${statSync(file).size} bytes against the tower's ${towerBytes}`);
  const fresh = ViLReF.create("tiny-vit", { seed: 6 });
  const back = await Lora.load(fresh, file);
  const x = toy(3, 9).images;
  t.deepEqual(Array.from((await back.encodeImages(x)).data), Array.from((await lora.encodeImages(x)).data));
});

test("bad input: errors name the target, the rank, the option", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 7 });
  t.throws(() => new Lora(model, { rank: 2, targets: ["visual.ln_post.weight"] }), {
    instanceOf: RangeError,
    message: /options\.targets\[0\]: "visual\.ln_post\.weight" is not a weight LoRA can adapt/,
  });
  t.throws(() => new Lora(model, { rank: 100000, targets: "attention" }), { message: /options\.rank/ });
  t.throws(() => new Lora(model, { rank: 0, targets: "attention" }), { message: /options\.rank/ });
  t.throws(() => new Lora(model, { rank: 2, targets: "convs" as never }), {
    message: /targets: expected attention, mlp, all/,
  });
  const other = ViLReF.create("tiny-vit", { seed: 8 });
  const lora = new Lora(other, { rank: 2, targets: "attention" });
  t.throws(() => new Finetuner(model, { classes: 2, lora }), {
    message: /options\.lora: the adapters belong to another model/,
  });
});

test("dispose: the adapters refuse calls, a finetuner using them refuses to run; \
the model's dispose disposes them", async (t) => {
  const model = ViLReF.create("tiny-vit", { seed: 9 });
  const lora = new Lora(model, { rank: 2, targets: "attention" });
  const ft = new Finetuner(model, { classes: 2, lora });
  await lora.dispose();
  t.true(lora.disposed);
  await t.throwsAsync(lora.stateDict(), { message: /Lora was disposed/ });
  await t.throwsAsync(ft.step(toy(4, 1)), { message: /LoRA adapters \(options\.lora\) were disposed/ });
  t.throws(() => new Finetuner(model, { classes: 2, lora }), { message: /options\.lora: the adapters were disposed/ });
  const other = new Lora(model, { rank: 2, targets: "mlp" });
  await model.dispose();
  t.true(other.disposed);
});
