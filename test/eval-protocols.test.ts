// Protocol pieces with hand-computed values (retrieval ranks, single-label / graded metrics from
// scores) and the linear probe through images on a single-label folder set.
import test from "ava";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadDataset } from "../lib/eval/adapters/index.js";
import { evaluateScores } from "../lib/eval/evaluate.js";
import { linearProbe } from "../lib/eval/probe.js";
import { pairedRanks, retrievalFromRanks } from "../lib/eval/retrieval.js";
import { ViLReF } from "../lib/model/vilref.js";
import { setThreads } from "../lib/native.js";
import { encodeRendered, renderFundus } from "../lib/synth/index.js";

test("retrieval: ranks with ties against the query, recall@k and median rank both ways", async (t) => {
  // texts are unit vectors, so image i · text j is entry j of image i (exact in float32); pair i ↔ i:
  //   image 0 · texts = [0.5, 0, 0.25]   text 0 best → rank 0
  //   image 1 · texts = [0.5, 0.25, 1]   two texts above → rank 2
  //   image 2 · texts = [0.5, 0.5, 0.5]  all tied → rank 2 (ties never help)
  const images = { data: Float32Array.from([0.5, 0, 0.25, 0, 0.5, 0.25, 1, 0, 0.5, 0.5, 0.5, 0]), shape: [3, 4] };
  const texts = { data: Float32Array.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]), shape: [3, 4] };
  const ranks = await pairedRanks(images, texts);
  t.deepEqual([...ranks.imageToText], [0, 2, 2]);
  // text → image: text 0: [0.5, 0.5, 0.5] rank 2; text 1: [0, 0.25, 0.5] rank 1; text 2: [0.25, 1, 0.5] rank 1
  t.deepEqual([...ranks.textToImage], [2, 1, 1]);
  const r = retrievalFromRanks(ranks, [1, 2, 3], { resamples: 200, seed: 1 });
  t.is(r.imageToText.recall["R@1"]!.value, 1 / 3);
  t.is(r.imageToText.recall["R@2"]!.value, 1 / 3);
  t.is(r.imageToText.recall["R@3"]!.value, 1);
  t.is(r.imageToText.medianRank, 3, "ranks 1, 3, 3 (1-based)");
  t.is(r.textToImage.recall["R@1"]!.value, 0);
  t.is(r.textToImage.recall["R@2"]!.value, 2 / 3);
  t.is(r.textToImage.medianRank, 2);
  const e = r.imageToText.recall["R@1"]!;
  t.true(e.lo <= e.value && e.value <= e.hi && e.lo >= 0 && e.hi <= 1);
  // the intervals of the case this test had before the ranks moved to LibTorch (ranks [0,2,2] and [0,0,1]), unchanged
  const before = retrievalFromRanks(
    { imageToText: Int32Array.from([0, 2, 2]), textToImage: Int32Array.from([0, 0, 1]) },
    [1, 2, 3],
    { resamples: 200, seed: 1 },
  );
  t.deepEqual(
    Object.values(before.imageToText.recall).map((x) => [x.value, x.lo, x.hi]),
    [
      [1 / 3, 0, 1],
      [1 / 3, 0, 1],
      [1, 1, 1],
    ],
  );
  t.deepEqual(
    Object.values(before.textToImage.recall).map((x) => [x.value, x.lo, x.hi]),
    [
      [2 / 3, 0, 1],
      [1, 1, 1],
      [1, 1, 1],
    ],
  );
  await t.throwsAsync(pairedRanks(images, { data: texts.data.subarray(0, 8), shape: [2, 4] }), {
    instanceOf: RangeError,
    message: /pairedRanks: 3 images but 2 texts/,
  });
});

test("graded task from scores: accuracy, balanced accuracy, macro F1, kappas as computed by hand", (t) => {
  // argmax of the scores gives the predictions [0,1,1,1,2,0] for targets [0,0,1,1,2,2]
  // (the pair of test/metrics.test.ts: accuracy 4/6, balanced ⅔, kappa ½, linear 0.4, quadratic 2/7)
  const preds = [0, 1, 1, 1, 2, 0];
  const scores = Float64Array.from(preds.flatMap((p) => [0, 1, 2].map((c) => (c === p ? 0.8 : 0.1))));
  const r = evaluateScores(
    { task: "graded", classes: ["0", "1", "2"], scores, n: 6, targets: Int32Array.from([0, 0, 1, 1, 2, 2]) },
    { resamples: 100 },
  );
  const v = (k: string) => r.metrics[k]!.value;
  t.is(v("accuracy"), 4 / 6);
  t.true(Math.abs(v("balancedAccuracy") - 2 / 3) < 1e-12);
  t.true(Math.abs(v("f1") - (0.5 + 0.8 + 2 / 3) / 3) < 1e-12);
  t.true(Math.abs(v("kappa") - 0.5) < 1e-12);
  t.true(Math.abs(v("kappaLinear") - 0.4) < 1e-12);
  t.true(Math.abs(v("kappaQuadratic") - 2 / 7) < 1e-12);
  t.deepEqual(r.confusion, [
    [1, 1, 0],
    [0, 2, 0],
    [1, 0, 1],
  ]);
  // one-vs-rest AUC of class 1: its score is 0.8 for cases 1,2,3 (targets 0,1,1) and 0.1 otherwise:
  // positives (2, 3) both 0.8; negatives 0.8 (case 1) and 0.1 ×3 → (½ + 1 + 1 + 1)·2 / 8 = 7/8
  t.is(r.perClass["1"]!.auc.value, 7 / 8);
  const multi = evaluateScores(
    { task: "multiclass", classes: ["0", "1", "2"], scores, n: 6, targets: Int32Array.from([0, 0, 1, 1, 2, 2]) },
    { resamples: 0 },
  );
  t.false("kappaQuadratic" in multi.metrics, "weighted kappas only for graded tasks");
  t.true(Number.isNaN(multi.metrics.accuracy!.lo), "no resamples, no interval");
});

test("linear probe through images: a single-label folder set (hazy vs clear fundi) with a random tiny \
ViT", async (t) => {
  setThreads(2);
  const root = mkdtempSync(path.join(tmpdir(), "vilref-probe-folder-"));
  // 40 images a class per split folder, drawn at the model's 32 px
  for (const [split, n, base] of [
    ["train", 40, 0],
    ["val", 20, 1000],
    ["test", 30, 2000],
  ] as const)
    for (const [cls, findings] of [
      ["media_opacity", { media_opacity: "asserted" as const }],
      ["normal", {}],
    ] as const) {
      mkdirSync(path.join(root, split, cls), { recursive: true });
      for (let i = 0; i < n; i++) {
        const img = renderFundus({
          size: 32,
          seed: base + i * 2 + (cls === "normal" ? 1 : 0),
          eye: i % 2 ? "left" : "right",
          findings,
          cdr: 0.3,
        });
        writeFileSync(path.join(root, split, cls, `${i}.png`), await encodeRendered(img));
      }
    }
  const ds = loadDataset({ adapter: "folder", path: root });
  t.deepEqual(ds.classes, ["media_opacity", "normal"]);
  t.is(ds.samples.filter((s) => s.split === "test").length, 60);
  const model = ViLReF.create("tiny-vit", { seed: 4 });
  const r = await linearProbe(model, ds, { resamples: 100 });
  t.log(`accuracy ${r.metrics.accuracy!.value.toFixed(3)}, AUC ${r.metrics.auc!.value.toFixed(3)}, C ${r.C}`);
  t.is(r.task, "multiclass");
  t.deepEqual(r.splits, { train: 80, val: 40, test: 60 });
  t.is(r.featureDim, 64, "pre-projection width of tiny-vit");
  t.true(r.metrics.accuracy!.value >= 0.85, `accuracy ${r.metrics.accuracy!.value}`);
  t.true(r.metrics.auc!.value >= 0.9, `AUC ${r.metrics.auc!.value}`);
  t.is(r.selection.length, 13);
  t.deepEqual(r.warnings, []);
  // L-BFGS cut short: every fit is reported, in the result (the JSON --out writes) and through
  // onWarning (stderr by default)
  const heard: string[] = [];
  const cut = await linearProbe(model, ds, {
    resamples: 0,
    cGrid: [0.1, 1],
    maxIter: 1,
    onWarning: (m) => heard.push(m),
  });
  t.is(cut.warnings.length, 3);
  t.deepEqual(heard, cut.warnings);
  t.regex(
    cut.warnings[2]!,
    new RegExp(
      /^the final fit at C = (0\.1|1) did not converge for all classes \(multinomial\) /.source +
        /\(L-BFGS stopped after 1 iteration\)/.source,
    ),
  );
  t.true(cut.selection.every((row) => !row.converged));
});
