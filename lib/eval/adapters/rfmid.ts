/**
 * RFMiD (Retinal Fundus Multi-disease Image Dataset): label CSVs `RFMiD_Training_Labels.csv`,
 * `RFMiD_Validation_Labels.csv`, `RFMiD_Testing_Labels.csv` (columns ID, Disease_Risk, then one 0/1
 * column per disease), each beside a folder of `<ID>.png` images. Multi-label over the disease
 * columns (Disease_Risk is left out); the split is taken from the CSV's name.
 */
import path from "node:path";
import type { LabelId } from "../../labels/index.js";
import type { EvalDataset, EvalSample } from "../dataset.js";
import { DatasetError } from "../dataset.js";
import { binaryCell, imageIndex, readTable, requireColumn, sample, walk } from "./common.js";

/** RFMiD abbreviations → the taxonomy id whose prompts describe them (approximations noted). */
export const RFMID_TAXONOMY: Readonly<Record<string, LabelId>> = {
  DR: "dr",
  ARMD: "amd",
  MH: "media_opacity", // media haze
  DN: "drusen",
  MYA: "pathologic_myopia",
  BRVO: "rvo",
  CRVO: "rvo",
  TSLN: "tessellation",
  ERM: "erm",
  LS: "laser_scars",
  CSR: "csc",
  ODC: "glaucoma", // optic disc cupping
  ODP: "optic_atrophy", // optic disc pallor
  ODE: "disc_edema",
  MHL: "macular_hole",
  RP: "rp",
  CWS: "cotton_wool_spot",
  PRH: "hemorrhage", // preretinal haemorrhage
  MNF: "myelinated_fibers",
  CRAO: "rao",
  BRAO: "rao",
  CME: "macular_edema",
  VH: "vitreous_hemorrhage",
};

const SPLIT_OF_CSV: [RegExp, "train" | "val" | "test"][] = [
  [/train/i, "train"],
  [/valid|eval/i, "val"],
  [/test/i, "test"],
];

export function rfmid(root: string): EvalDataset {
  const csvs = walk(root, (f) => /labels?\.csv$/i.test(path.basename(f)), undefined, 3);
  if (csvs.length === 0)
    throw new DatasetError(`rfmid ${root}: no RFMiD label CSV (e.g. Training_Set/RFMiD_Training_Labels.csv) under it`);
  let classes: string[] | null = null;
  const samples: EvalSample[] = [];
  const notes: string[] = [];
  for (const file of csvs) {
    const split = SPLIT_OF_CSV.find(([re]) => re.test(path.basename(file)))?.[1];
    if (!split)
      throw new DatasetError(
        `${file}: cannot tell the split from the name (expected Training, Validation/Evaluation or Testing in it)`,
      );
    const t = readTable(file);
    const idCol = requireColumn(t, ["ID"], "ID");
    const diseases = t.header.filter((h) => h !== idCol && h.toLowerCase() !== "disease_risk");
    if (diseases.length === 0) throw new DatasetError(`${file}: no disease columns after ${idCol}`);
    if (classes === null) classes = diseases;
    else if (classes.join() !== diseases.join())
      throw new DatasetError(
        `${file}: its disease columns (${diseases.join(", ")}) differ from ${csvs[0]}'s (${classes.join(", ")})`,
      );
    const images = imageIndex(path.dirname(file));
    for (const row of t.rows) {
      const id = row.cells[idCol]!;
      if (id === "") throw new DatasetError(`${file}:${row.line}: column ${idCol}: empty`);
      const image = images.get(id);
      if (!image)
        throw new DatasetError(
          `${file}:${row.line}: no image ${id}.png (or another extension) under ${path.dirname(file)}`,
        );
      const y = Float32Array.from(diseases, (c) => binaryCell(t, row, c));
      samples.push(sample(`${split}/${id}`, image, file, row.line, { split, y }));
    }
  }
  const cls = classes!;
  const shared = Object.entries(RFMID_TAXONOMY).filter(
    ([a, id]) =>
      cls.includes(a) && Object.entries(RFMID_TAXONOMY).some(([b, j]) => b !== a && j === id && cls.includes(b)),
  );
  if (shared.length > 0)
    notes.push(
      `zero-shot: ${shared.map(([a, id]) => `${a}→${id}`).join(", ")} share prompts (the taxonomy does not ` +
        "tell them apart)",
    );
  return {
    name: "rfmid",
    root: path.resolve(root),
    task: "multilabel",
    classes: cls,
    promptKeys: cls.map((c) => RFMID_TAXONOMY[c] ?? null),
    samples,
    notes,
  };
}
