/**
 * ODIR-5K: the annotation sheet (data.xlsx, exported as CSV) — ID, Patient Age, Patient Sex,
 * Left-Fundus, Right-Fundus, Left/Right-Diagnostic Keywords and the patient-level 0/1 columns
 * N D G C A H M O — and the images it names, anywhere under the root. Each row gives two samples
 * (left and right eye) with the patient's labels (ODIR's labels are per patient, not per eye).
 * ODIR has no labelled validation or test set, so the patients are split 60/20/20 from the seed.
 */
import path from "node:path";
import type { LabelId } from "../../labels/index.js";
import type { EvalDataset, EvalSample } from "../dataset.js";
import { assignSplits, DatasetError } from "../dataset.js";
import { binaryCell, findColumn, imageIndex, readTable, requireColumn, sample, walk } from "./common.js";

export const ODIR_CLASSES = ["N", "D", "G", "C", "A", "H", "M", "O"] as const;
export const ODIR_TAXONOMY: Readonly<Record<string, LabelId | null>> = {
  N: "normal",
  D: "dr",
  G: "glaucoma",
  C: "media_opacity",
  A: "amd",
  H: "hypertensive_retinopathy",
  M: "pathologic_myopia",
  O: null,
};

export function odir(root: string, options: { seed?: number; labels?: string } = {}): EvalDataset {
  const candidates = options.labels
    ? [options.labels]
    : walk(root, (f) => f.toLowerCase().endsWith(".csv"), undefined, 3);
  const file = candidates.find((f) => findColumn(readTable(f), ["Left-Fundus"]) !== undefined);
  if (!file)
    throw new DatasetError(
      `odir ${root}: no annotation CSV with a Left-Fundus column (export ODIR-5K's data.xlsx as CSV into the ` +
        "root, or give it with --labels)",
    );
  const t = readTable(file);
  const idCol = requireColumn(t, ["ID"], "ID");
  const left = requireColumn(t, ["Left-Fundus"], "Left-Fundus");
  const right = requireColumn(t, ["Right-Fundus"], "Right-Fundus");
  const cols = ODIR_CLASSES.map((c) => requireColumn(t, [c], `label ${c}`));
  const images = imageIndex(root);
  const samples: EvalSample[] = [];
  for (const row of t.rows) {
    const id = row.cells[idCol]!;
    const y = Float32Array.from(cols, (c) => binaryCell(t, row, c));
    for (const [col, eye] of [
      [left, "left"],
      [right, "right"],
    ] as const) {
      const name = row.cells[col]!;
      if (name === "") throw new DatasetError(`${file}:${row.line}: column ${col}: empty`);
      const image = images.get(name);
      if (!image) throw new DatasetError(`${file}:${row.line}: column ${col}: no image ${name} under ${root}`);
      samples.push(sample(name, image, file, row.line, { y, eye, patientId: id }));
    }
  }
  if (samples.length === 0) throw new DatasetError(`${file}: no rows`);
  const k = assignSplits(samples, options.seed ?? 0);
  return {
    name: "odir",
    root: path.resolve(root),
    task: "multilabel",
    classes: [...ODIR_CLASSES],
    promptKeys: ODIR_CLASSES.map((c) => ODIR_TAXONOMY[c] ?? null),
    samples,
    notes: [
      `labels are per patient (both eyes get them); ${k / 2} patients split 60/20/20 into train/val/test from the seed`,
    ],
  };
}
