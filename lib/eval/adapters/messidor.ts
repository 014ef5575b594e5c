/**
 * MESSIDOR: the grade table exported as CSV — MESSIDOR's per-base sheets (Image name,
 * Ophthalmologic department, Retinopathy grade, Risk of macular edema) or MESSIDOR-2's
 * (image_id / id_code, adjudicated_dr_grade / diagnosis) — and the images, anywhere under the
 * root. A graded task over the DR grades 0..max; rows without a grade (ungradable) are left out
 * with a note. There are no official splits: images are split 60/20/20 from the seed.
 */
import path from "node:path";
import type { EvalDataset, EvalSample } from "../dataset.js";
import { assignSplits, DatasetError } from "../dataset.js";
import { findColumn, imageIndex, readTable, requireColumn, sample, walk } from "./common.js";

const IMAGE_COLUMNS = ["Image name", "image_id", "id_code", "image"];
const GRADE_COLUMNS = ["Retinopathy grade", "adjudicated_dr_grade", "diagnosis", "dr_grade", "grade"];

export function messidor(
  root: string,
  options: { seed?: number; labels?: string; gradeColumn?: string } = {},
): EvalDataset {
  const tables = (options.labels ? [options.labels] : walk(root, (f) => /\.(csv|tsv)$/i.test(f), undefined, 3))
    .map(readTable)
    .filter((t) => options.labels || findColumn(t, IMAGE_COLUMNS) !== undefined);
  if (tables.length === 0)
    throw new DatasetError(
      `messidor ${root}: no grade table (a CSV with one of the columns ${IMAGE_COLUMNS.join(", ")}; ` +
        "export the .xls sheets as CSV)",
    );
  const images = imageIndex(root);
  const samples: EvalSample[] = [];
  let ungraded = 0;
  for (const t of tables) {
    const imageCol = requireColumn(t, IMAGE_COLUMNS, "image name");
    const gradeCol = options.gradeColumn
      ? requireColumn(t, [options.gradeColumn], "grade")
      : requireColumn(t, GRADE_COLUMNS, "retinopathy grade");
    for (const row of t.rows) {
      const name = row.cells[imageCol]!;
      const g = row.cells[gradeCol]!;
      if (g === "") {
        ungraded++;
        continue;
      }
      const grade = Number(g);
      if (!Number.isInteger(grade) || grade < 0 || grade > 9)
        throw new DatasetError(
          `${t.file}:${row.line}: column ${gradeCol}: expected a grade 0..9, got ${JSON.stringify(g)}`,
        );
      const image = images.get(name);
      if (!image) throw new DatasetError(`${t.file}:${row.line}: column ${imageCol}: no image ${name} under ${root}`);
      samples.push(sample(name, image, t.file, row.line, { target: grade }));
    }
  }
  if (samples.length === 0) throw new DatasetError(`messidor ${root}: no graded rows`);
  const max = Math.max(...samples.map((s) => s.target!));
  const classes = Array.from({ length: max + 1 }, (_, g) => String(g));
  const notes: string[] = [];
  if (ungraded > 0) notes.push(`${ungraded} rows without a grade (ungradable) left out`);
  const k = assignSplits(samples, options.seed ?? 0);
  notes.push(`${k} images split 60/20/20 into train/val/test from the seed`);
  return {
    name: "messidor",
    root: path.resolve(root),
    task: "graded",
    classes,
    promptKeys: classes.map((g) => `dr_grade_${g}`),
    samples,
    notes,
  };
}
