import test from "ava";
import sharp from "sharp";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Labeler, loadRules } from "../lib/labels/index.js";
import { readManifest } from "../lib/data/manifest.js";
import { generateCase, planCase, renderFundus, writeSynthDataset } from "../lib/synth/index.js";

test("deterministic from the seed: same seed, same image and report; another seed differs", async (t) => {
  const a = await generateCase(11, 5, { size: 96 });
  const b = await generateCase(11, 5, { size: 96 });
  const c = await generateCase(12, 5, { size: 96 });
  t.deepEqual(a.image, b.image);
  t.is(a.text, b.text);
  t.notDeepEqual(a.image, c.image);
  t.deepEqual(planCase(11, 5), planCase(11, 5, {}));
});

test("the label extractor recovers the gold labels of the synthetic reports", (t) => {
  const lab = new Labeler(loadRules());
  const N = 400;
  let agree = 0;
  let eyes = 0;
  let suspected = 0;
  let negations = 0;
  const texts = new Set<string>();
  const seen = new Set<string>();
  for (let i = 0; i < N; i++) {
    const c = planCase(2024, i);
    const r = lab.label(c.text, { evidence: false });
    const same = JSON.stringify(Object.entries(c.labels).sort()) === JSON.stringify(Object.entries(r.labels).sort());
    if (same) agree++;
    else t.log(c.text, c.labels, r.labels);
    if (r.eye === c.eye) eyes++;
    if (Object.values(c.labels).includes(0.5)) suspected++;
    if (/未见|无/.test(c.text)) negations++;
    texts.add(c.text);
    for (const k of Object.keys(c.labels)) seen.add(k);
  }
  t.is(agree, N, "every report's extracted labels equal its gold labels");
  t.is(eyes, N);
  // Variety: suspicions, negations, distinct texts, the cue labels and normal all occur.
  t.true(suspected > N * 0.1, `suspected ${suspected}`);
  t.true(negations > N * 0.3, `negations ${negations}`);
  t.true(texts.size > N * 0.9);
  for (const k of [
    "normal",
    "dr",
    "hemorrhage",
    "hard_exudate",
    "cotton_wool_spot",
    "drusen",
    "glaucoma",
    "tessellation",
    "laser_scars",
    "optic_atrophy",
    "media_opacity",
  ])
    t.true(seen.has(k), k);
});

function count(rgb: Uint8Array, pred: (r: number, g: number, b: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < rgb.length; i += 3) if (pred(rgb[i]!, rgb[i + 1]!, rgb[i + 2]!)) n++;
  return n;
}

test("findings leave visible cues", (t) => {
  const base = { size: 192, seed: 77, eye: "right" as const, cdr: 0.3 };
  const plain = renderFundus({ ...base, findings: {} });
  const yellow = (r: number, g: number, b: number) => r > 200 && g > 170 && b < 150;
  const ex = renderFundus({ ...base, findings: { hard_exudate: "asserted" } });
  t.true(count(ex.rgb, yellow) > count(plain.rgb, yellow) + 20);
  const dark = (r: number, g: number, b: number) => r > 40 && r < 120 && g < 30 && b < 30;
  const hem = renderFundus({ ...base, findings: { hemorrhage: "asserted" } });
  t.true(count(hem.rgb, dark) > count(plain.rgb, dark) + 30);
  // A pale disc is bluer-white at the disc; an enlarged cup makes more near-white pixels there.
  const at = (img: typeof plain, ch: number) => {
    let s = 0;
    let n = 0;
    for (let y = Math.floor(img.disc.y - img.disc.r * 0.8); y < img.disc.y + img.disc.r * 0.8; y++)
      for (let x = Math.floor(img.disc.x - img.disc.r * 0.8); x < img.disc.x + img.disc.r * 0.8; x++) {
        s += img.rgb[3 * (y * img.size + x) + ch]!;
        n++;
      }
    return s / n;
  };
  const pale = renderFundus({ ...base, findings: { optic_atrophy: "asserted" } });
  t.true(at(pale, 2) > at(plain, 2) + 20);
  const cup = renderFundus({ ...base, cdr: 0.85, findings: { glaucoma: "asserted" } });
  t.true(at(cup, 2) > at(plain, 2) + 15);
  t.is(plain.blur, 0);
  t.true(renderFundus({ ...base, findings: { media_opacity: "asserted" } }).blur > 0);
  // Outside the field of view is black.
  t.deepEqual([...plain.rgb.subarray(0, 3)], [0, 0, 0]);
});

test("writeSynthDataset writes images and a manifest that readManifest reads", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-synth-"));
  const cases = await writeSynthDataset(dir, 6, 5, { size: 64, format: "jpeg" });
  const samples = readManifest(path.join(dir, "manifest.jsonl"));
  t.deepEqual(
    samples.map((s) => s.id),
    cases.map((c) => c.id),
  );
  t.deepEqual(
    samples.map((s) => s.labels),
    cases.map((c) => c.labels),
  );
  t.deepEqual(
    samples.map((s) => s.text),
    cases.map((c) => c.text),
  );
  const meta = await sharp(readFileSync(samples[0]!.image)).metadata();
  t.is(meta.format, "jpeg");
  t.is(meta.width, 64);
  // Case i does not depend on n.
  const more = await writeSynthDataset(mkdtempSync(path.join(tmpdir(), "vilref-synth-")), 8, 5, {
    size: 64,
    format: "jpeg",
  });
  t.deepEqual(
    more.slice(0, 6).map((c) => c.text),
    cases.map((c) => c.text),
  );
});
