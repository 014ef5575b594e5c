/**
 * The few-shot protocol's draw: K labelled images per class from the training split, from a seed.
 *
 * - single-label (multiclass, graded): K images of each class;
 * - multi-label: K images positive for each class (drawn per class among that class's positives,
 *   so an image positive for two classes can be drawn for both; the set is their union).
 *
 * Each class's candidates are taken in manifest order and shuffled by a generator seeded with
 * (seed, class index), so the same seed gives the same draw whatever the other classes hold. A
 * class with fewer than K candidates is an error naming it and how many it has. Images that share
 * an id (or, when the manifest has patient ids, a patient) with the test split are never drawn.
 */
import { hashSeed, permutation } from "../data/rng.js";
import type { EvalDataset, EvalSample } from "../eval/dataset.js";
import { DatasetError } from "../eval/dataset.js";

export interface ShotDraw {
  /** The drawn images, without repeats, in the order of the training split. */
  samples: EvalSample[];
  /** For each class (dataset order), the ids drawn for it: exactly K. */
  perClass: Record<string, string[]>;
  shots: number;
  seed: number;
}

export interface ShotOptions {
  /** Samples whose id, or patient id, must not be drawn (the test split). */
  exclude?: readonly EvalSample[];
}

/** Whether sample i is a candidate of class c. */
function candidate(ds: EvalDataset, s: EvalSample, c: number): boolean {
  if (ds.task === "multilabel") return s.y?.[c] === 1;
  return s.target === c;
}

/** K images per class of `train` (see the file header). */
export function sampleShots(
  ds: EvalDataset,
  train: readonly EvalSample[],
  shots: number,
  seed: number,
  options: ShotOptions = {},
): ShotDraw {
  if (!Number.isInteger(shots) || shots < 1) throw new RangeError(`shots: expected an integer ≥ 1, got ${shots}`);
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed: expected an integer ≥ 0, got ${seed}`);
  const ids = new Set<string>();
  const patients = new Set<string>();
  for (const s of options.exclude ?? []) {
    ids.add(s.id);
    if (s.patientId) patients.add(s.patientId);
  }
  const usable = train.filter((s) => !ids.has(s.id) && !(s.patientId && patients.has(s.patientId)));
  const chosen = new Set<number>();
  const perClass: Record<string, string[]> = {};
  ds.classes.forEach((name, c) => {
    const pool: number[] = [];
    usable.forEach((s, i) => candidate(ds, s, c) && pool.push(i));
    if (pool.length < shots)
      throw new DatasetError(
        `class ${JSON.stringify(name)}: ${pool.length} training ` +
          `image${pool.length === 1 ? "" : "s"}${ds.task === "multilabel" ? " positive for it" : ""}, ` +
          `fewer than --shots ${shots}`,
      );
    const order = permutation(pool.length, hashSeed(seed, c));
    const picked = Array.from(order.subarray(0, shots), (j) => pool[j]!);
    for (const i of picked) chosen.add(i);
    perClass[name] = picked.map((i) => usable[i]!.id);
  });
  const samples = [...chosen].sort((a, b) => a - b).map((i) => usable[i]!);
  return { samples, perClass, shots, seed };
}
