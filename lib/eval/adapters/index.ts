/**
 * Dataset adapters: each turns a public set's own layout into an evaluation set (samples with the
 * manifest's Sample fields, a task, classes and targets). `loadDataset` picks one by name.
 */
import { statSync } from "node:fs";
import type { EvalDataset } from "../dataset.js";
import { DatasetError, folderDataset, manifestDataset } from "../dataset.js";
import { isShardSpec } from "../../data/shards.js";
import { fives } from "./fives.js";
import { messidor } from "./messidor.js";
import { odir } from "./odir.js";
import { refuge } from "./refuge.js";
import { rfmid } from "./rfmid.js";

export { rfmid, RFMID_TAXONOMY } from "./rfmid.js";
export { odir, ODIR_CLASSES, ODIR_TAXONOMY } from "./odir.js";
export { fives, FIVES_CLASSES } from "./fives.js";
export { messidor } from "./messidor.js";
export { refuge } from "./refuge.js";

export interface DatasetSpec {
  /** Adapter name (default: manifest for a file, folder for a directory). */
  adapter?: string;
  /** The manifest file or the dataset's root folder. */
  path: string;
  /** Manifest: class names (taxonomy ids for labels; names in target order for a target column). */
  classes?: string[];
  /** Manifest with a target column: the classes are ordered grades. */
  graded?: boolean;
  /** A label table to use instead of searching the root (odir, messidor, refuge). */
  labels?: string;
  /** Seed of the splits an adapter assigns. */
  seed?: number;
}

export const ADAPTERS: Readonly<Record<string, { description: string; load: (spec: DatasetSpec) => EvalDataset }>> = {
  manifest: {
    description:
      "a vilref manifest (CSV/TSV/JSONL) or WebDataset shards: labels column (json labels) → multi-label, " +
      "or target column (cls) + --classes",
    load: (s) =>
      manifestDataset(s.path, { ...(s.classes ? { classes: s.classes } : {}), ...(s.graded ? { graded: true } : {}) }),
  },
  folder: {
    description: "image folders root/<class>/<image> (or root/<split>/<class>/<image>)",
    load: (s) => folderDataset(s.path, { ...(s.seed !== undefined ? { seed: s.seed } : {}) }),
  },
  rfmid: {
    description: "RFMiD: *_Labels.csv (ID, Disease_Risk, disease columns) beside the image folders",
    load: (s) => rfmid(s.path),
  },
  odir: {
    description: "ODIR-5K: data.xlsx exported as CSV (Left-Fundus, Right-Fundus, N D G C A H M O) and the images",
    load: (s) =>
      odir(s.path, { ...(s.seed !== undefined ? { seed: s.seed } : {}), ...(s.labels ? { labels: s.labels } : {}) }),
  },
  fives: {
    description: "FIVES: train|test/Original/<n>_<A|D|G|N>.png (class in the file name)",
    load: (s) => fives(s.path, { ...(s.seed !== undefined ? { seed: s.seed } : {}) }),
  },
  messidor: {
    description: "MESSIDOR / MESSIDOR-2: the grade table exported as CSV and the images (graded DR)",
    load: (s) =>
      messidor(s.path, {
        ...(s.seed !== undefined ? { seed: s.seed } : {}),
        ...(s.labels ? { labels: s.labels } : {}),
      }),
  },
  refuge: {
    description:
      "REFUGE: Glaucoma/Non-Glaucoma folders or an ImgName/Label(Glaucoma=1) CSV; " +
      "Training400/Validation400/Test400 splits",
    load: (s) => refuge(s.path, { ...(s.labels ? { labels: s.labels } : {}) }),
  },
};

/** An evaluation set from a spec; an unknown adapter is an error listing the known ones. */
export function loadDataset(spec: DatasetSpec): EvalDataset {
  let name = spec.adapter;
  if ((name === undefined || name === "manifest") && isShardSpec(spec.path)) return ADAPTERS.manifest!.load(spec);
  if (name === undefined) {
    let st;
    try {
      st = statSync(spec.path);
    } catch {
      throw new DatasetError(`--data ${spec.path}: no such file or folder`);
    }
    name = st.isDirectory() ? "folder" : "manifest";
  }
  const a = ADAPTERS[name];
  if (!a)
    throw new DatasetError(`unknown adapter ${JSON.stringify(name)} (adapters: ${Object.keys(ADAPTERS).join(", ")})`);
  try {
    statSync(spec.path);
  } catch {
    throw new DatasetError(`${name} ${spec.path}: no such file or folder`);
  }
  return a.load(spec);
}
