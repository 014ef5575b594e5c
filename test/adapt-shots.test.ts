// The few-shot sampler: exactly K per class, the same draw for the same seed, disjoint from the
// test split (ids and patients), multi-label drawn per positive class, an error naming a class
// with too few images.
import test from "ava";
import { sampleShots } from "../lib/adapt/shots.js";
import { seedSummary } from "../lib/adapt/summary.js";
import type { EvalDataset, EvalSample } from "../lib/eval/dataset.js";

function sample(id: string, split: string, extra: Partial<EvalSample>): EvalSample {
  return {
    id,
    image: `${id}.png`,
    text: null,
    labels: null,
    target: null,
    split,
    patientId: null,
    eye: null,
    source: { file: "m.csv", line: 2 },
    ...extra,
  } as EvalSample;
}

/** Single-label: class c has 5 + c training images; 3 test images per class. */
function single(): EvalDataset {
  const samples: EvalSample[] = [];
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 5 + c; i++)
      samples.push(sample(`tr-${c}-${i}`, "train", { target: c, patientId: `p-${c}-${i}` }));
    for (let i = 0; i < 3; i++) samples.push(sample(`te-${c}-${i}`, "test", { target: c, patientId: `q-${c}-${i}` }));
  }
  return {
    name: "toy",
    root: "/",
    task: "multiclass",
    classes: ["a", "b", "c"],
    promptKeys: [null, null, null],
    samples,
    notes: [],
  };
}

const train = (ds: EvalDataset) => ds.samples.filter((s) => s.split === "train");
const test_ = (ds: EvalDataset) => ds.samples.filter((s) => s.split === "test");

test("exactly K per class, each of its class, no repeats", (t) => {
  const ds = single();
  const d = sampleShots(ds, train(ds), 4, 7);
  t.is(d.samples.length, 12);
  t.is(new Set(d.samples.map((s) => s.id)).size, 12);
  ds.classes.forEach((name, c) => {
    t.is(d.perClass[name]!.length, 4);
    for (const id of d.perClass[name]!) t.true(id.startsWith(`tr-${c}-`), id);
  });
});

test("the same seed gives the same draw; other seeds give others", (t) => {
  const ds = single();
  const ids = (seed: number) => sampleShots(ds, train(ds), 3, seed).samples.map((s) => s.id);
  t.deepEqual(ids(5), ids(5));
  const draws = new Set([0, 1, 2, 3, 4, 5].map((s) => ids(s).join(",")));
  t.true(draws.size > 1);
});

test("disjoint from the test split, by id and by patient", (t) => {
  const ds = single();
  // a training image that shares a patient with a test image, and one that shares an id
  const leak = sample("tr-x", "train", { target: 0, patientId: "q-0-0" });
  const dup = sample("te-1-0", "train", { target: 1, patientId: "z" });
  const pool = [...train(ds), leak, dup];
  for (let seed = 0; seed < 20; seed++) {
    const d = sampleShots(ds, pool, 5, seed, { exclude: test_(ds) });
    const ids = new Set(test_(ds).map((s) => s.id));
    t.false(d.samples.some((s) => ids.has(s.id) || s.patientId === "q-0-0"));
  }
});

test("a class with fewer images than K is an error naming it and its count", (t) => {
  const ds = single();
  const e = t.throws(() => sampleShots(ds, train(ds), 6, 0));
  t.regex(e!.message, /class "a": 5 training images, fewer than --shots 6/);
  t.throws(() => sampleShots(ds, train(ds), 0, 0), { instanceOf: RangeError, message: /shots/ });
});

test("multi-label: K positives of each class, the draw their union", (t) => {
  const rows: [string, number[]][] = [];
  for (let i = 0; i < 12; i++) rows.push([`m${i}`, [i % 2, i % 3 === 0 ? 1 : 0]]);
  const samples = rows.map(([id, y]) => sample(id, "train", { y: Float32Array.from(y) }));
  const ds: EvalDataset = {
    name: "ml",
    root: "/",
    task: "multilabel",
    classes: ["x", "y"],
    promptKeys: [null, null],
    samples,
    notes: [],
  };
  const d = sampleShots(ds, samples, 3, 1);
  for (const [c, name] of ds.classes.entries()) {
    t.is(d.perClass[name]!.length, 3);
    for (const id of d.perClass[name]!) t.is(samples.find((s) => s.id === id)!.y![c], 1);
  }
  t.is(d.samples.length, new Set([...d.perClass.x!, ...d.perClass.y!]).size);
  t.throws(() => sampleShots(ds, samples, 5, 1), { message: /class "y": 4 training images positive for it/ });
});

test("seedSummary: mean with a t-interval", (t) => {
  const s = seedSummary([0.7, 0.8, 0.9]);
  t.is(s.draws, 3);
  t.true(Math.abs(s.mean - 0.8) < 1e-12);
  t.true(Math.abs(s.sd - 0.1) < 1e-12);
  t.true(Math.abs(s.hi - (0.8 + (4.303 * 0.1) / Math.sqrt(3))) < 1e-9);
  t.true(Number.isNaN(seedSummary([0.5]).lo));
});
