/**
 * Patient-level scores: a diagnosis is made per patient from both eyes' photographs (ODIR's labels
 * are the patient's). Each patient's score for a class is the max or the mean of their images'
 * scores; the patient's label is positive when any eye is (multi-label; unknown only when every
 * eye is unknown), the highest grade (graded), or the eyes' common class (single-label: eyes that
 * disagree are an error naming the patient). Every image needs a patient id (the manifest's
 * patient_id column); one without is an error naming its file and line.
 */
import type { EvalDataset, EvalSample } from "../eval/dataset.js";
import { DatasetError } from "../eval/dataset.js";
import { evaluateScores } from "../eval/evaluate.js";
import type { MetricsReport } from "../eval/evaluate.js";
import type { BootstrapOptions } from "../eval/metrics.js";
import type { Targets } from "./adapters.js";

export type PatientAggregation = "max" | "mean";
export const PATIENT_AGGREGATIONS: readonly PatientAggregation[] = ["max", "mean"];

export interface PatientScores {
  /** Patient ids, in order of first appearance. */
  patients: string[];
  /** For each patient, the indices of their images among the given samples. */
  images: number[][];
  /** [P, C] row-major. */
  scores: Float32Array;
  n: number;
  targets: Targets;
  ds: EvalDataset;
}

function group(samples: readonly EvalSample[]): { patients: string[]; images: number[][] } {
  const index = new Map<string, number>();
  const images: number[][] = [];
  samples.forEach((s, i) => {
    if (!s.patientId)
      throw new DatasetError(
        "patient-level metrics need a patient id on every image: " +
          `${s.source.file}:${s.source.line} (sample ${s.id}) has none (manifest column patient_id)`,
      );
    let k = index.get(s.patientId);
    if (k === undefined) index.set(s.patientId, (k = images.push([]) - 1));
    images[k]!.push(i);
  });
  return { patients: [...index.keys()], images };
}

function patientTargets(ds: EvalDataset, samples: readonly EvalSample[], g: ReturnType<typeof group>): Targets {
  const C = ds.classes.length;
  if (ds.task === "multilabel") {
    const y = new Float32Array(g.patients.length * C).fill(Number.NaN);
    g.images.forEach((ids, p) => {
      for (let c = 0; c < C; c++)
        for (const i of ids) {
          const v = samples[i]!.y?.[c];
          if (v === 1) y[p * C + c] = 1;
          else if (v === 0 && Number.isNaN(y[p * C + c]!)) y[p * C + c] = 0;
        }
    });
    return { kind: "multilabel", y };
  }
  const t = Int32Array.from(g.images, (ids, p) => {
    const ts = ids.map((i) => samples[i]!.target ?? -1);
    if (ts.some((v) => v < 0)) throw new DatasetError(`patient ${g.patients[p]}: an image without a class`);
    if (ds.task !== "graded" && ts.some((v) => v !== ts[0]))
      throw new DatasetError(
        `patient ${g.patients[p]}: the eyes have different classes ` +
          `(${ts.map((v) => ds.classes[v]).join(", ")}); a patient-level label needs one`,
      );
    return Math.max(...ts);
  });
  return { kind: "single", t };
}

/** Per-patient scores and labels of per-image scores [n, C] (see the file header). */
export function aggregatePatients(
  ds: EvalDataset,
  samples: readonly EvalSample[],
  scores: ArrayLike<number>,
  how: PatientAggregation,
): PatientScores {
  const C = ds.classes.length;
  if (scores.length !== samples.length * C)
    throw new RangeError(`scores: expected ${samples.length}×${C} values, got ${scores.length}`);
  if (!PATIENT_AGGREGATIONS.includes(how))
    throw new RangeError(`aggregation: expected ${PATIENT_AGGREGATIONS.join(" or ")}, got ${String(how)}`);
  const g = group(samples);
  const out = new Float32Array(g.patients.length * C);
  g.images.forEach((ids, p) => {
    for (let c = 0; c < C; c++) {
      const v = ids.map((i) => scores[i * C + c]!);
      out[p * C + c] = how === "max" ? Math.max(...v) : v.reduce((a, b) => a + b, 0) / v.length;
    }
  });
  return { ...g, scores: out, n: g.patients.length, targets: patientTargets(ds, samples, g), ds };
}

/** Per-patient metrics, as a protocol's result carries them under `patient`. */
export type PatientReport = MetricsReport & { aggregation: PatientAggregation; patients: number };

/**
 * Per-patient metrics of per-image scores [n, C] over `classes` (a subset of the dataset's, by
 * name, in any order: the samples' label rows are taken at those columns, single-label targets
 * renumbered to them; an image whose class is not scored is an error naming its patient).
 * Multi-label scores are compared with `threshold`; single-label scores are probabilities (max or
 * mean over eyes, then the argmax).
 */
export function patientMetrics(
  ds: EvalDataset,
  samples: readonly EvalSample[],
  classes: readonly string[],
  scores: ArrayLike<number>,
  how: PatientAggregation,
  boot: BootstrapOptions,
  threshold = 0.5,
): PatientReport {
  const cols = classes.map((c) => ds.classes.indexOf(c));
  const view: EvalDataset = { ...ds, classes: [...classes] };
  // the label rows in the order of `classes`: multi-label columns picked, single-label targets renumbered
  const rows =
    ds.task === "multilabel"
      ? samples.map((s) => ({ ...s, ...(s.y ? { y: Float32Array.from(cols, (i) => s.y![i]!) } : {}) }))
      : samples.map((s) =>
          s.target === null || s.target === undefined ? s : { ...s, target: cols.indexOf(s.target) },
        );
  const agg = aggregatePatients(view, rows, scores, how);
  const report =
    agg.targets.kind === "multilabel"
      ? evaluateScores(
          {
            task: "multilabel",
            classes: view.classes,
            scores: Float64Array.from(agg.scores),
            n: agg.n,
            y: agg.targets.y,
            threshold,
          },
          boot,
        )
      : evaluateScores(
          {
            task: ds.task,
            classes: view.classes,
            scores: Float64Array.from(agg.scores),
            n: agg.n,
            targets: agg.targets.t,
          },
          boot,
        );
  return { ...report, aggregation: how, patients: agg.n };
}
