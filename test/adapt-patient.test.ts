// Patient-level aggregation on hand-built manifests: two eyes, one patient label; max and mean;
// a manifest without patient ids is an error naming the file, line and column.
import test from "ava";
import { aggregatePatients } from "../lib/adapt/patient.js";
import type { EvalDataset, EvalSample } from "../lib/eval/dataset.js";
import { evaluateScores } from "../lib/eval/evaluate.js";

function eye(id: string, patientId: string | null, extra: Partial<EvalSample>, line: number): EvalSample {
  return {
    id,
    image: `${id}.png`,
    text: null,
    labels: null,
    target: null,
    split: "test",
    patientId,
    eye: id.endsWith("L") ? "left" : "right",
    source: { file: "odir.csv", line },
    ...extra,
  } as EvalSample;
}

const ml = (samples: EvalSample[]): EvalDataset => ({
  name: "toy",
  root: "/",
  task: "multilabel",
  classes: ["dr", "amd"],
  promptKeys: ["dr", "amd"],
  samples,
  notes: [],
});

test("two eyes, one patient label: max and mean over the eyes", (t) => {
  const samples = [
    eye("1L", "p1", { y: Float32Array.from([1, 0]) }, 2),
    eye("1R", "p1", { y: Float32Array.from([0, Number.NaN]) }, 3),
    eye("2L", "p2", { y: Float32Array.from([0, 0]) }, 4),
    eye("2R", "p2", { y: Float32Array.from([0, 1]) }, 5),
    eye("3L", "p3", { y: Float32Array.from([Number.NaN, Number.NaN]) }, 6),
  ];
  const scores = [0.9, 0.1, 0.3, 0.5, 0.2, 0.4, 0.6, 0.8, 0.7, 0.0];
  const mx = aggregatePatients(ml(samples), samples, scores, "max");
  t.deepEqual(mx.patients, ["p1", "p2", "p3"]);
  t.deepEqual(mx.images, [[0, 1], [2, 3], [4]]);
  t.deepEqual(Array.from(mx.scores), [0.9, 0.5, 0.6, 0.8, 0.7, 0].map(Math.fround));
  t.is(mx.targets.kind, "multilabel");
  // positive when any eye is; unknown only when every eye is
  t.deepEqual(Array.from(mx.targets.kind === "multilabel" ? mx.targets.y : []), [1, 0, 0, 1, Number.NaN, Number.NaN]);
  const mean = aggregatePatients(ml(samples), samples, scores, "mean");
  t.deepEqual(Array.from(mean.scores), [0.6, 0.3, 0.4, 0.6, 0.7, 0].map(Math.fround));
  // the per-patient report counts patients, not images
  const r = evaluateScores(
    {
      task: "multilabel",
      classes: ["dr", "amd"],
      scores: Float64Array.from(mx.scores),
      n: mx.n,
      y: mx.targets.kind === "multilabel" ? mx.targets.y : new Float32Array(),
    },
    { resamples: 0 },
  );
  t.is(r.n, 3);
  t.is(r.perClass.dr!.positives, 1);
  t.is(r.perClass.dr!.negatives, 1);
});

test("single-label: the eyes' common class; graded: the worse eye's grade; disagreeing classes are an error", (t) => {
  const samples = [
    eye("1L", "p1", { target: 2 }, 2),
    eye("1R", "p1", { target: 0 }, 3),
    eye("2L", "p2", { target: 1 }, 4),
  ];
  const graded: EvalDataset = { ...ml(samples), task: "graded", classes: ["g0", "g1", "g2"] };
  const g = aggregatePatients(graded, samples, new Array(9).fill(0), "max");
  t.deepEqual(g.targets.kind === "single" ? Array.from(g.targets.t) : [], [2, 1]);
  const multiclass: EvalDataset = { ...graded, task: "multiclass" };
  t.throws(() => aggregatePatients(multiclass, samples, new Array(9).fill(0), "max"), {
    message: /patient p1: the eyes have different classes \(g2, g0\)/,
  });
});

test("a manifest without patient ids asked for patient-level metrics: an error naming the file and line", (t) => {
  const samples = [
    eye("1L", "p1", { y: Float32Array.from([1, 0]) }, 2),
    eye("9R", null, { y: Float32Array.from([0, 0]) }, 3),
  ];
  const e = t.throws(() => aggregatePatients(ml(samples), samples, [0, 0, 0, 0], "max"));
  t.regex(e!.message, /patient id.*odir\.csv:3 \(sample 9R\).*patient_id/);
  t.throws(() => aggregatePatients(ml(samples), samples, [0, 0], "max"), { instanceOf: RangeError, message: /scores/ });
});

test("patientMetrics: the scored classes' columns of the label rows, counted per patient", async (t) => {
  const { patientMetrics } = await import("../lib/adapt/patient.js");
  const samples = [
    eye("1L", "p1", { y: Float32Array.from([1, 0]) }, 2),
    eye("1R", "p1", { y: Float32Array.from([0, 1]) }, 3),
    eye("2L", "p2", { y: Float32Array.from([0, 0]) }, 4),
  ];
  // only "amd" scored: the patient labels are column 1 (p1 positive, p2 negative)
  const r = patientMetrics(ml(samples), samples, ["amd"], [0.2, 0.9, 0.4], "max", { resamples: 0 });
  t.is(r.n, 2);
  t.is(r.patients, 2);
  t.deepEqual(r.classes, ["amd"]);
  t.is(r.perClass.amd!.positives, 1);
  t.is(r.metrics.auc!.value, 1);
});

test("patientMetrics, single-label: classes in another order than the dataset's give the same metrics", async (t) => {
  const { patientMetrics } = await import("../lib/adapt/patient.js");
  const sl: EvalDataset = { ...ml([]), task: "multiclass", classes: ["normal", "dr", "amd"] };
  const samples = [
    eye("1L", "p1", { target: 0 }, 2),
    eye("1R", "p1", { target: 0 }, 3),
    eye("2L", "p2", { target: 1 }, 4),
    eye("3L", "p3", { target: 2 }, 5),
    eye("4L", "p4", { target: 1 }, 6),
  ];
  // probabilities per image over normal, dr, amd; p4's dr is scored below its amd (one mistake)
  const natural = [0.7, 0.2, 0.1, 0.6, 0.3, 0.1, 0.1, 0.8, 0.1, 0.2, 0.1, 0.7, 0.1, 0.4, 0.5];
  const order = [2, 0, 1]; // amd, normal, dr
  const permuted = natural.map((_, k) => natural[Math.floor(k / 3) * 3 + order[k % 3]!]!);
  const a = patientMetrics(sl, samples, sl.classes, natural, "max", { resamples: 0 });
  const b = patientMetrics(sl, samples, ["amd", "normal", "dr"], permuted, "max", { resamples: 0 });
  t.is(a.metrics.accuracy!.value, 0.75);
  t.is(b.metrics.accuracy!.value, a.metrics.accuracy!.value);
  t.is(b.metrics.auc!.value, a.metrics.auc!.value);
  for (const c of sl.classes) t.deepEqual(b.perClass[c], a.perClass[c], c);
});
