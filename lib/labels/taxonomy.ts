/**
 * The label set (../shared/labels/TAXONOMY.md). The ids and their order are the project's
 * contract: label vectors, configs, zero-shot class lists and evaluation files use them.
 */
export const LABEL_IDS = [
  "normal",
  "dr",
  "pdr",
  "amd",
  "glaucoma",
  "pathologic_myopia",
  "tessellation",
  "rvo",
  "rao",
  "hypertensive_retinopathy",
  "erm",
  "macular_hole",
  "macular_edema",
  "retinal_detachment",
  "optic_atrophy",
  "disc_edema",
  "drusen",
  "laser_scars",
  "media_opacity",
  "rnfld",
  "csc",
  "rp",
  "hemorrhage",
  "hard_exudate",
  "cotton_wool_spot",
  "microaneurysm",
  "neovascularization",
  "vitreous_hemorrhage",
  "chorioretinal_atrophy",
  "peripapillary_atrophy",
  "myelinated_fibers",
] as const;

export type LabelId = (typeof LABEL_IDS)[number];

/** 1: asserted; 0.5: suspected / to be ruled out; 0: only under the "negative" uncertainty policy. */
export type LabelValue = 1 | 0.5 | 0;

export type LabelMap = Partial<Record<LabelId, LabelValue>>;

export type Eye = "left" | "right" | "both";

const ID_SET: ReadonlySet<string> = new Set(LABEL_IDS);

export function isLabelId(s: unknown): s is LabelId {
  return typeof s === "string" && ID_SET.has(s);
}

/**
 * A label map as a vector in taxonomy order. `ignored` labels (uncertainty policy "drop") get
 * `ignoredValue` (default NaN) so a loss can mask them.
 */
export function toLabelVector(
  labels: LabelMap,
  ignored: readonly LabelId[] = [],
  ignoredValue = Number.NaN,
): Float32Array {
  const v = new Float32Array(LABEL_IDS.length);
  LABEL_IDS.forEach((id, i) => {
    v[i] = labels[id] ?? 0;
  });
  for (const id of ignored) v[LABEL_IDS.indexOf(id)] = ignoredValue;
  return v;
}
