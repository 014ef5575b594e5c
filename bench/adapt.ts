/**
 * Issue 21's goals on the demo's synthetic data, with the demo's pre-trained model, in one run:
 *
 *   fewshot  on the same K-shot draws (seeds 0…draws−1): zero-shot, a K-shot linear probe (the
 *            probe of `eval probe` on the draw's pre-projection features, C chosen on val),
 *            Tip-Adapter, Tip-Adapter-F and CLIP-Adapter; mean test AUC over the draws.
 *   lora     LoRA (rank 8, attention targets) against full fine-tuning on the first draw, same
 *            epochs and head: test AUC, trainable parameters, and peak RSS of each in a child
 *            process of its own (the optimizer state of the backbone is what full fine-tuning adds).
 *
 * The few-shot pool is the demo's training set ("train" split of data-train-…); its held-out set is
 * split by patient into val (a third) and test (two thirds). Classes: those with K training
 * positives and both labels in val and test.
 *
 * Run: npx tsx bench/adapt.ts --demo vilref-demo [--shots 16] [--draws 3] [--epochs 10] [--rounds 1]
 *        [--targets attention|mlp|all|name,name…] [fewshot] [lora]
 * (lora: full and LoRA alternate, `--rounds` times each; LoRA rank 8 on --targets)
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fewShotAdapter } from "../lib/adapt/fewshot.js";
import { loraFewShot } from "../lib/adapt/lora-fewshot.js";
import { sampleShots } from "../lib/adapt/shots.js";
import { manifestDataset, multiLabelTargets, splitOf } from "../lib/eval/dataset.js";
import type { EvalDataset } from "../lib/eval/dataset.js";
import { encodeImageSet, textEncoder, tokenizerFor } from "../lib/eval/features.js";
import { meanAuc, predictProba, standardize, trainProbe } from "../lib/eval/probe.js";
import { ViLReF } from "../lib/model/vilref.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : dflt);
const demo = opt("--demo", "vilref-demo");
const shots = Number(opt("--shots", "16"));
const draws = Number(opt("--draws", "3"));
const epochs = Number(opt("--epochs", "10"));
const rounds = Number(opt("--rounds", "1"));
/** LoRA's targets: a group (attention, mlp, all) or released weight names, comma-separated. */
const loraTargets = opt("--targets", "attention");

function find(dir: string, re: RegExp): string {
  const hit = readdirSync(dir).find((f) => re.test(f));
  if (!hit) throw new Error(`${dir}: nothing matching ${re}`);
  return path.join(dir, hit);
}

/** The combined manifest (see the file header) and the model file. */
function prepare(): { file: string; modelFile: string } {
  const train = path.join(find(demo, /^data-train-/), "manifest.jsonl");
  const held = path.join(find(demo, /^data-heldout-/), "manifest.jsonl");
  const rows = (f: string) =>
    readFileSync(f, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const hash = (s: string) => [...s].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0, 7);
  const out = [
    ...rows(train)
      .filter((r) => r.split === "train")
      .map((r) => ({ ...r, image: path.join(path.dirname(train), String(r.image)) })),
    ...rows(held).map((r) => ({
      ...r,
      id: `h-${String(r.id)}`,
      patient_id: `h-${String(r.patient_id)}`,
      image: path.join(path.dirname(held), String(r.image)),
      split: hash(String(r.patient_id)) % 3 === 0 ? "val" : "test",
    })),
  ];
  const file = path.join(mkdtempSync(path.join(tmpdir(), "vilref-bench-adapt-")), "manifest.jsonl");
  writeFileSync(file, out.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const run = find(demo, /^run-/);
  return { file, modelFile: path.join(run, "final", "model.safetensors") };
}

function chooseClasses(file: string): EvalDataset {
  const all = manifestDataset(file);
  const count = (s: string, c: number, v: number) => all.samples.filter((x) => x.split === s && x.y![c] === v).length;
  const classes = all.classes.filter(
    (_, c) => count("train", c, 1) >= shots && ["val", "test"].every((s) => count(s, c, 1) > 0 && count(s, c, 0) > 0),
  );
  return manifestDataset(file, { classes });
}

/** The K-shot linear probe on the same draw as the adapters. */
async function probeAuc(model: ViLReF, ds: EvalDataset, seed: number): Promise<number> {
  const test = splitOf(ds, "test");
  const draw = sampleShots(ds, splitOf(ds, "train"), shots, seed, { exclude: test });
  const enc = async (s: typeof test) => {
    const f = await encodeImageSet(model, s, { features: "pre" });
    const used = f.used.map((i) => s[i]!);
    return {
      X: f.data,
      n: f.n,
      d: f.d,
      targets: { kind: "multilabel" as const, y: multiLabelTargets(used, ds.classes.length), K: ds.classes.length },
    };
  };
  const tr = await enc(draw.samples);
  const va = await enc(splitOf(ds, "val"));
  const te = await enc(test);
  const p = await trainProbe(tr, va, tr.d, {});
  const P = await predictProba(p.model, standardize(te.X, te.n, te.d, p.standardizer), te.n);
  return meanAuc(P, te.n, te.targets);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f3 = (x: number) => x.toFixed(3);

async function fewshot(): Promise<void> {
  const { file, modelFile } = prepare();
  const ds = chooseClasses(file);
  const model = await ViLReF.load(modelFile);
  const { tokenizer } = tokenizerFor(modelFile, model.vocabSha256);
  const enc = textEncoder(model, tokenizer, Math.min(52, model.config.text_max_position_embeddings));
  console.log(`${ds.classes.length} classes (${ds.classes.join(", ")}); ${shots} shots; ${draws} draws`);
  const probe: number[] = [];
  for (let k = 0; k < draws; k++) probe.push(await probeAuc(model, ds, k));
  const rows: [string, number[]][] = [["linear probe", probe]];
  let zs = Number.NaN;
  for (const method of ["tip", "tip-f", "clip-adapter"] as const) {
    const r = await fewShotAdapter(model, enc, ds, { method, shots, draws, resamples: 0, epochs: 50 });
    zs = r.zeroShotAuc;
    rows.push([method, r.seeds.map((s) => s.testAuc)]);
  }
  console.log(`zero-shot              mean AUC ${f3(zs)}`);
  for (const [name, v] of rows)
    console.log(`${name.padEnd(22)} mean AUC ${f3(mean(v))}  (draws: ${v.map(f3).join(", ")})`);
}

/** One fine-tuning run in this process: "lora" or "full"; prints a JSON line. */
async function tuneChild(kind: string): Promise<void> {
  const { file, modelFile } = prepare();
  const ds = chooseClasses(file);
  const model = await ViLReF.load(modelFile);
  const before = process.resourceUsage().maxRSS;
  const r = await loraFewShot(model, ds, {
    shots,
    epochs,
    rank: 8,
    targets: ["attention", "mlp", "all"].includes(loraTargets)
      ? (loraTargets as "attention" | "mlp" | "all")
      : loraTargets.split(","),
    resamples: 0,
    ...(kind === "full" ? { full: { backboneLr: 1e-5 } } : {}),
  });
  console.log(
    JSON.stringify({
      kind,
      auc: r.seeds[0]!.testAuc,
      trainable: r.trainableParameters,
      backbone: r.backboneParameters,
      rssBefore: before,
      rssPeak: process.resourceUsage().maxRSS,
    }),
  );
}

async function lora(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const results = Array.from({ length: 2 * rounds }, (_, i) => (i % 2 ? "lora" : "full")).map((kind) => {
    const p = spawnSync(process.execPath, ["--import=tsx", self, "--child", kind, ...args], { encoding: "utf8" });
    if (p.status !== 0) throw new Error(`${kind}: ${p.stderr}`);
    return JSON.parse(p.stdout.trim().split("\n").at(-1)!) as {
      kind: string;
      auc: number;
      trainable: number;
      backbone: number;
      rssPeak: number;
    };
  });
  const full = results.find((r) => r.kind === "full")!;
  for (const r of results) {
    const pct = (of: number) => ((100 * r.trainable) / of).toFixed(2);
    const share = `${pct(r.backbone)} % of the tower, ${pct(full.trainable)} % of full fine-tuning's`;
    const rss = `peak RSS ${(r.rssPeak / 1024).toFixed(0)} MiB`;
    console.log(`${r.kind.padEnd(5)} test AUC ${f3(r.auc)}  trainable ${r.trainable} (${share})  ${rss}`);
  }
}

if (args.includes("--child")) await tuneChild(opt("--child", "lora"));
else {
  if (args.includes("fewshot") || !args.includes("lora")) await fewshot();
  if (args.includes("lora")) await lora();
}
