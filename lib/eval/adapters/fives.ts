/**
 * FIVES (Fundus Image Vessel Segmentation): `train/Original/<n>_<L>.png` and `test/Original/...`,
 * vessel masks of the same name in `Ground truth/`. The class is the letter in the file name:
 * A (AMD), D (diabetic retinopathy), G (glaucoma), N (normal). FIVES has no validation split: 20% of
 * the training images (from the seed) are held out as one.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { EvalDataset, EvalSample } from "../dataset.js";
import { assignSplits, DatasetError } from "../dataset.js";
import { isImage, sample, splitFromPath, walk } from "./common.js";

export const FIVES_CLASSES = ["amd", "dr", "glaucoma", "normal"] as const;
const LETTER: Record<string, number> = { A: 0, D: 1, G: 2, N: 3 };

export function fives(root: string, options: { seed?: number } = {}): EvalDataset {
  const files = walk(root, (f) => isImage(f) && /^original$/i.test(path.basename(path.dirname(f))));
  if (files.length === 0)
    throw new DatasetError(`fives ${root}: no images in Original/ folders (expected train/Original/1_A.png ...)`);
  const samples: EvalSample[] = files.map((f, i) => {
    const m = /^(\d+)_([A-Za-z])\.[^.]+$/.exec(path.basename(f));
    const target = m ? LETTER[m[2]!.toUpperCase()] : undefined;
    if (!m || target === undefined)
      throw new DatasetError(
        `${f}: FIVES file names are <number>_<A|D|G|N>.png; cannot read the class from ` +
          `${JSON.stringify(path.basename(f))}`,
      );
    const split = splitFromPath(path.relative(root, path.dirname(path.dirname(f))));
    const maskFile = path.join(path.dirname(path.dirname(f)), "Ground truth", path.basename(f));
    return sample(path.relative(root, f).split(path.sep).join("/"), f, f, i + 1, {
      split: split === "train" ? null : split,
      target,
      mask: existsSync(maskFile) ? maskFile : null,
    });
  });
  const notes: string[] = [];
  // the training images without a split get train/val (80/20)
  const k = assignSplits(samples, options.seed ?? 0, { train: 0.8, val: 0.2 });
  if (k > 0)
    notes.push(
      `no validation split in FIVES: ${samples.filter((s) => s.split === "val").length} of ${k} training ` +
        "images held out for validation (from the seed)",
    );
  return {
    name: "fives",
    root: path.resolve(root),
    task: "multiclass",
    classes: [...FIVES_CLASSES],
    promptKeys: [...FIVES_CLASSES],
    samples,
    notes,
  };
}
