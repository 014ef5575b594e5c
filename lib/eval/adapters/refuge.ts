/**
 * REFUGE: fundus images for glaucoma classification (and optic disc/cup masks). The label comes
 * from a parent folder named Glaucoma / Non-Glaucoma (Training400's layout), else from a label table
 * exported as CSV (ImgName + "Label(Glaucoma=1)" or "Glaucoma Label") found under the root or given.
 * The split is the top folder's name (Training400 → train, Validation400 → val, Test400 → test).
 * Disc/cup masks (`*Disc_Cup_Masks*`, .bmp) of the same stem are attached for segmentation.
 * A binary task: one class, glaucoma.
 */
import path from "node:path";
import type { EvalDataset, EvalSample } from "../dataset.js";
import { DatasetError } from "../dataset.js";
import {
  binaryCell,
  findColumn,
  imageIndex,
  isImage,
  readTable,
  requireColumn,
  sample,
  splitFromPath,
  walk,
} from "./common.js";

const MASK_DIRS = /mask|annotation|ground ?truth|gt$/i;

export function refuge(root: string, options: { labels?: string } = {}): EvalDataset {
  const files = walk(root, isImage, MASK_DIRS);
  if (files.length === 0) throw new DatasetError(`refuge ${root}: no images`);
  const labelTables = (
    options.labels ? [options.labels] : walk(root, (f) => f.toLowerCase().endsWith(".csv"), undefined, 3)
  )
    .map(readTable)
    .filter((t) => options.labels || findColumn(t, ["ImgName"]) !== undefined);
  const fromTable = new Map<string, 0 | 1>();
  for (const t of labelTables) {
    const img = requireColumn(t, ["ImgName", "Image"], "ImgName");
    const lab = requireColumn(t, ["Label(Glaucoma=1)", "Glaucoma Label", "Label"], "glaucoma label");
    for (const row of t.rows) fromTable.set(row.cells[img]!, binaryCell(t, row, lab));
  }
  const masks = imageIndex(root);
  const samples: EvalSample[] = [];
  const unlabeled: string[] = [];
  files.forEach((f, i) => {
    const rel = path.relative(root, f).split(path.sep).join("/");
    const dirs = rel
      .split("/")
      .slice(0, -1)
      .map((d) => d.toLowerCase());
    let y: number | undefined;
    if (dirs.some((d) => /^non[-_ ]?glaucoma$/.test(d))) y = 0;
    else if (dirs.some((d) => d === "glaucoma")) y = 1;
    else y = fromTable.get(path.basename(f));
    if (y === undefined) {
      unlabeled.push(rel);
      return;
    }
    const stem = path.basename(f, path.extname(f));
    const mask = [...masks.entries()].find(([k, p]) => k === `${stem}.bmp` && MASK_DIRS.test(p))?.[1] ?? null;
    samples.push(
      sample(rel, f, f, i + 1, { split: splitFromPath(rel.split("/")[0] ?? ""), y: Float32Array.of(y), mask }),
    );
  });
  if (samples.length === 0)
    throw new DatasetError(
      `refuge ${root}: no image has a label (Glaucoma/Non-Glaucoma folders, ` +
        `or a CSV with ImgName and "Label(Glaucoma=1)")`,
    );
  const notes =
    unlabeled.length > 0 ? [`${unlabeled.length} images without a label left out (first: ${unlabeled[0]})`] : [];
  const noSplit = samples.filter((s) => s.split === null).length;
  if (noSplit > 0) notes.push(`${noSplit} images outside Training/Validation/Test folders have no split`);
  return {
    name: "refuge",
    root: path.resolve(root),
    task: "multilabel",
    classes: ["glaucoma"],
    promptKeys: ["glaucoma"],
    samples,
    notes,
  };
}
