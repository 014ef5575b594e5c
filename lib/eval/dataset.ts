/**
 * Evaluation datasets: samples (the manifest's `Sample`) with a task, a class list and the targets
 * in the class order. Multi-label targets are one row per sample (1 positive, 0 negative, NaN not
 * known: uncertain or not graded for that class); single-label and graded targets are class
 * indices (`Sample.target`). Adapters (lib/eval/adapters) make these from the public sets' layouts.
 */
import path from "node:path";
import { hashSeed, mulberry32 } from "../data/rng.js";
import { readImageFolder, readManifest } from "../data/manifest.js";
import type { ManifestOptions, Sample } from "../data/manifest.js";
import { isShardSpec } from "../data/shards.js";
import { readSource } from "../data/source.js";
import { LABEL_IDS, isLabelId } from "../labels/index.js";

export type Task = "multilabel" | "multiclass" | "graded";

export interface EvalSample extends Sample {
  /** Multi-label targets over the dataset's classes (1 / 0 / NaN unknown). */
  y?: Float32Array;
  /** A segmentation mask belonging to the image (FIVES, REFUGE), for the segmentation protocol. */
  mask?: string | null;
}

export interface EvalDataset {
  /** Adapter name and root, for reports. */
  name: string;
  root: string;
  task: Task;
  classes: string[];
  /** For each class, the prompts-file key that describes it (a taxonomy id), or null when none is known. */
  promptKeys: (string | null)[];
  samples: EvalSample[];
  /** Things the adapter wants the user to know (left-out rows, assumptions). */
  notes: string[];
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DatasetError";
  }
}

/** Samples of one split; an empty split is an error naming the split and the ones there are. */
export function splitOf(ds: EvalDataset, split: string): EvalSample[] {
  const out = ds.samples.filter((s) => s.split === split);
  if (out.length === 0) {
    const have = [...new Set(ds.samples.map((s) => s.split ?? "(none)"))].sort();
    throw new DatasetError(
      `${ds.name} ${ds.root}: split "${split}" is empty (splits here: ${have.join(", ") || "none"})`,
    );
  }
  return out;
}

/**
 * Gives samples without a split one, deterministically from the seed and the patient (else the
 * sample id), so both eyes of a patient land in the same split. Returns how many were assigned.
 */
export function assignSplits(
  samples: EvalSample[],
  seed: number,
  fractions: { train: number; val: number } = { train: 0.6, val: 0.2 },
): number {
  let k = 0;
  for (const s of samples) {
    if (s.split !== null) continue;
    const key = s.patientId ?? s.id;
    let h = 0;
    for (let i = 0; i < key.length; i++) h = hashSeed(h, key.charCodeAt(i));
    const u = mulberry32(hashSeed(seed, h)).next();
    s.split = u < fractions.train ? "train" : u < fractions.train + fractions.val ? "val" : "test";
    k++;
  }
  return k;
}

/** Multi-label target matrix [n, C] (row-major) of samples; NaN where unknown. */
export function multiLabelTargets(samples: readonly EvalSample[], classes: number): Float32Array {
  const out = new Float32Array(samples.length * classes);
  samples.forEach((s, i) => {
    if (!s.y || s.y.length !== classes)
      throw new DatasetError(
        `${s.source.file}:${s.source.line}: sample ${s.id} has no label row over the ${classes} classes`,
      );
    out.set(s.y, i * classes);
  });
  return out;
}

/** Class indices of samples (single-label and graded tasks). */
export function classTargets(samples: readonly EvalSample[], classes: number): Int32Array {
  return Int32Array.from(samples, (s) => {
    if (s.target === null || s.target < 0 || s.target >= classes)
      throw new DatasetError(
        `${s.source.file}:${s.source.line}: sample ${s.id} has no class index below ${classes} (target ${s.target})`,
      );
    return s.target;
  });
}

/**
 * A manifest (or WebDataset shards: their json/cls parts) as an evaluation set. With `classes` that
 * are taxonomy ids (or none: every label asserted somewhere in the file), a multi-label task from
 * the labels column (1 → 1, 0.5 → unknown, absent → 0). With a target column in every row, a
 * single-label task whose class names are `classes` (required then) — `graded` when the classes are
 * ordered grades.
 */
export function manifestDataset(
  file: string,
  options: { classes?: string[]; graded?: boolean; manifest?: ManifestOptions } = {},
): EvalDataset {
  // WebDataset shards (KEY.json carries labels/target, KEY.cls a class) stand in for a manifest
  const shards = isShardSpec(file) ? readSource(file, { manifest: options.manifest ?? {} }) : null;
  const samples: EvalSample[] = shards ? shards.samples : readManifest(file, options.manifest ?? {});
  const root = path.resolve(file);
  if (samples.length === 0) throw new DatasetError(`${file}: no samples`);
  const notes: string[] = (shards?.problems ?? []).map(
    (p) => `skipped ${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`,
  );
  if (samples.every((s) => s.target !== null) && samples.some((s) => s.labels === null)) {
    if (!options.classes)
      throw new DatasetError(
        `${file}: rows have a target column but no labels; give the class names in target order (--classes)`,
      );
    const classes = options.classes;
    for (const s of samples)
      if (s.target! >= classes.length)
        throw new DatasetError(
          `${s.source.file}:${s.source.line}: target ${s.target} but only ${classes.length} classes ` +
            `(${classes.join(", ")})`,
        );
    return {
      name: "manifest",
      root,
      task: options.graded ? "graded" : "multiclass",
      classes,
      promptKeys: classes.map((c) => (isLabelId(c) ? c : null)),
      samples,
      notes,
    };
  }
  for (const s of samples)
    if (s.labels === null)
      throw new DatasetError(
        `${s.source.file}:${s.source.line}: sample ${s.id} has no labels (a multi-label evaluation needs a ` +
          "labels column or --labels-file)",
      );
  let classes = options.classes;
  if (classes) {
    for (const c of classes)
      if (!isLabelId(c))
        throw new DatasetError(
          `unknown class name ${JSON.stringify(c)}: the manifest's labels are taxonomy ids (${LABEL_IDS.join(", ")})`,
        );
  } else {
    classes = LABEL_IDS.filter((id) => samples.some((s) => s.labels?.[id] === 1));
    if (classes.length === 0) throw new DatasetError(`${file}: no label is asserted in any row`);
  }
  for (const s of samples)
    s.y = Float32Array.from(classes, (c) => {
      const v = s.labels?.[c as keyof typeof s.labels];
      return v === 1 ? 1 : v === 0.5 ? Number.NaN : 0;
    });
  return { name: "manifest", root, task: "multilabel", classes, promptKeys: [...classes], samples, notes };
}

/** An image folder root/<class>/<image> as a single-label set; splits assigned when the folders have none. */
export function folderDataset(root: string, options: { seed?: number } = {}): EvalDataset {
  const splitDirs = ["train", "val", "test"].filter((d) => {
    try {
      return readImageFolder(path.join(root, d)).samples.length > 0;
    } catch {
      return false;
    }
  });
  const notes: string[] = [];
  let samples: EvalSample[];
  let classes: string[];
  if (splitDirs.length > 0) {
    // root/<split>/<class>/<image>: the class list is the union, in sorted order
    const parts = splitDirs.map((d) => ({ d, ...readImageFolder(path.join(root, d)) }));
    classes = [...new Set(parts.flatMap((p) => p.classes))].sort();
    samples = parts.flatMap((p) =>
      p.samples.map((s) => ({
        ...s,
        id: `${p.d}/${s.id}`,
        split: p.d,
        target: classes.indexOf(p.classes[s.target!]!),
      })),
    );
  } else {
    const r = readImageFolder(root);
    classes = r.classes;
    samples = r.samples;
    const k = assignSplits(samples, options.seed ?? 0);
    if (k > 0) notes.push(`no split folders: ${k} images split 60/20/20 into train/val/test from the seed`);
  }
  if (samples.length === 0) throw new DatasetError(`${root}: no images under the class folders`);
  return {
    name: "folder",
    root: path.resolve(root),
    task: "multiclass",
    classes,
    promptKeys: classes.map((c) => (isLabelId(c) ? c : null)),
    samples,
    notes,
  };
}
