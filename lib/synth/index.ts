/**
 * Synthetic fundus data: procedural images with visible cues, a Chinese report for each, and the
 * report's gold labels. Deterministic from (seed, index): case i is the same whatever n is.
 * `writeSynthDataset` writes images/ and a manifest.jsonl that `readManifest` reads as it is.
 */
import { mkdirSync } from "node:fs";
import { atomicWriteFile, atomicWriteFileSync } from "../io/atomic.js";
import path from "node:path";
import sharp from "sharp";
import type { Eye, LabelMap } from "../labels/index.js";
import { hashSeed, mulberry32, type Rng } from "../data/rng.js";
import { renderFundus, type Rendered } from "./fundus.js";
import {
  SYNTH_FINDINGS,
  goldLabels,
  writeReport,
  type ReportPlan,
  type Statement,
  type SynthFinding,
} from "./report.js";

export { SYNTH_FINDINGS, goldLabels, writeReport } from "./report.js";
export type { ReportPlan, Statement, SynthFinding } from "./report.js";
export { renderFundus } from "./fundus.js";
export type { FundusSpec, Rendered } from "./fundus.js";

export interface SynthOptions {
  /** Image side in pixels (default 384). */
  size?: number;
  /** Fraction of cases with nothing to find (default 0.25). */
  normalFraction?: number;
  format?: "png" | "jpeg" | "webp" | "tiff";
}

export interface SynthCase {
  id: string;
  index: number;
  eye: Eye;
  plan: ReportPlan;
  /** What the image shows (suspected findings are drawn fainter). */
  findings: SynthFinding[];
  text: string;
  labels: LabelMap;
  /** Deterministic split from the seed: 80% train, 10% val, 10% test. */
  split: "train" | "val" | "test";
  patientId: string;
}

const WEIGHTS: Record<SynthFinding, number> = {
  hemorrhage: 3,
  hard_exudate: 3,
  cotton_wool_spot: 1.5,
  drusen: 2,
  glaucoma: 2,
  tessellation: 2,
  laser_scars: 1,
  optic_atrophy: 1,
  media_opacity: 1,
};

function weightedPick(r: Rng, avail: SynthFinding[]): SynthFinding {
  const total = avail.reduce((a, f) => a + WEIGHTS[f], 0);
  let u = r.next() * total;
  for (const f of avail) {
    u -= WEIGHTS[f];
    if (u < 0) return f;
  }
  return avail[avail.length - 1]!;
}

/** The plan of case `index` for a seed: eye, findings, how the report states them. */
export function planCase(seed: number, index: number, options: SynthOptions = {}): SynthCase {
  const r = mulberry32(hashSeed(seed, index, 1));
  const eye: Eye = r.chance(0.5) ? "right" : "left";
  const present: Partial<Record<SynthFinding, Statement>> = {};
  if (!r.chance(options.normalFraction ?? 0.25)) {
    const k = r.chance(0.5) ? 1 : r.chance(0.7) ? 2 : 3;
    const avail = [...SYNTH_FINDINGS];
    for (let j = 0; j < k; j++) {
      const f = weightedPick(r, avail);
      avail.splice(avail.indexOf(f), 1);
      present[f] = r.chance(0.8) ? "asserted" : "suspected";
      // Diabetic pictures come together.
      if (f === "hemorrhage" && avail.includes("hard_exudate") && r.chance(0.5)) {
        avail.splice(avail.indexOf("hard_exudate"), 1);
        present.hard_exudate = r.chance(0.85) ? "asserted" : "suspected";
      }
    }
  }
  let dr: Statement | null = null;
  if (present.hemorrhage === "asserted" && present.hard_exudate === "asserted" && r.chance(0.6))
    dr = r.chance(0.8) ? "asserted" : "suspected";
  const cdr =
    present.glaucoma === "asserted"
      ? r.pick([0.7, 0.8, 0.9])
      : present.glaucoma === "suspected"
        ? r.pick([0.6, 0.7])
        : r.pick([0.2, 0.3, 0.4, 0.5]);
  const plan: ReportPlan = { eye, present, dr, cdr };
  const u = r.next();
  const text = writeReport(mulberry32(hashSeed(seed, index, 2)), plan);
  return {
    id: `synth-${String(index).padStart(5, "0")}`,
    index,
    eye,
    plan,
    findings: Object.keys(present) as SynthFinding[],
    text,
    labels: goldLabels(plan),
    split: u < 0.8 ? "train" : u < 0.9 ? "val" : "test",
    patientId: `p${hashSeed(seed, index >> 1, 3).toString(36)}`,
  };
}

/** Renders case `c`'s image (pixels only). */
export function renderCase(seed: number, c: SynthCase, size = 384): Rendered {
  return renderFundus({
    size,
    seed: hashSeed(seed, c.index, 4),
    eye: c.eye,
    findings: c.plan.present,
    cdr: c.plan.cdr,
  });
}

/** Encodes a rendered image (media haze blurred here, with sharp). */
export async function encodeRendered(
  img: Rendered,
  format: NonNullable<SynthOptions["format"]> = "png",
): Promise<Buffer> {
  let s = sharp(Buffer.from(img.rgb.buffer, img.rgb.byteOffset, img.rgb.byteLength), {
    raw: { width: img.size, height: img.size, channels: 3 },
  });
  if (img.blur > 0) s = s.blur(img.blur);
  if (format === "jpeg") return s.jpeg({ quality: 92 }).toBuffer();
  if (format === "webp") return s.webp({ quality: 92 }).toBuffer();
  if (format === "tiff") return s.tiff().toBuffer();
  return s.png({ compressionLevel: 3 }).toBuffer();
}

/** One case with its encoded image. */
export async function generateCase(
  seed: number,
  index: number,
  options: SynthOptions = {},
): Promise<SynthCase & { image: Buffer }> {
  const c = planCase(seed, index, options);
  const image = await encodeRendered(renderCase(seed, c, options.size ?? 384), options.format ?? "png");
  return { ...c, image };
}

const EXT = { png: ".png", jpeg: ".jpg", webp: ".webp", tiff: ".tif" } as const;

/**
 * Writes n cases to dir: images/<id>.<ext> and manifest.jsonl
 * ({"id","image","text","labels","eye","split","patient_id","findings"} a line, written last and
 * atomically). Returns the cases.
 */
export async function writeSynthDataset(
  dir: string,
  n: number,
  seed: number,
  options: SynthOptions & { onProgress?: (done: number, n: number) => void } = {},
): Promise<SynthCase[]> {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n: expected a whole number ≥ 0, got ${n}`);
  const fmt = options.format ?? "png";
  mkdirSync(path.join(dir, "images"), { recursive: true });
  const cases: SynthCase[] = [];
  const lines: string[] = [];
  // Rendering is JavaScript (one thread); encoding runs on sharp's threads, overlapping the next render.
  let inflight: Promise<void> = Promise.resolve();
  for (let i = 0; i < n; i++) {
    const c = planCase(seed, i, options);
    const img = renderCase(seed, c, options.size ?? 384);
    const rel = `images/${c.id}${EXT[fmt]}`;
    const prev = inflight;
    inflight = (async () => {
      const buf = await encodeRendered(img, fmt);
      await prev;
      await atomicWriteFile(path.join(dir, rel), buf, { fsync: false });
      options.onProgress?.(i + 1, n);
    })();
    cases.push(c);
    lines.push(
      JSON.stringify({
        id: c.id,
        image: rel,
        text: c.text,
        labels: c.labels,
        eye: c.eye,
        split: c.split,
        patient_id: c.patientId,
        findings: c.findings,
      }),
    );
    if (i % 4 === 3) await inflight;
  }
  await inflight;
  atomicWriteFileSync(path.join(dir, "manifest.jsonl"), lines.join("\n") + (lines.length ? "\n" : ""));
  return cases;
}
