// Dataset adapters on tiny fake layouts of the public sets, evaluation-set helpers, and the errors
// bad input gets (each naming the culprit).
import test from "ava";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { ADAPTERS, loadDataset } from "../lib/eval/adapters/index.js";
import { assignSplits, manifestDataset, splitOf } from "../lib/eval/dataset.js";
import { evaluateScores } from "../lib/eval/evaluate.js";
import { classPrompts, loadPromptBank } from "../lib/eval/zeroshot.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-adapters-"));
let png: Buffer;
test.before(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 120, g: 40, b: 20 } } })
    .png()
    .toBuffer();
});
function put(rel: string, content?: string): string {
  const p = path.join(root, rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, content ?? png);
  return p;
}

test("rfmid: label CSVs per split beside their image folders; disease columns as classes", (t) => {
  const r = "rfmid";
  put(
    `${r}/Training_Set/RFMiD_Training_Labels.csv`,
    "ID,Disease_Risk,DR,ARMD,MH,OTHER\n1,1,1,0,0,0\n2,0,0,0,0,0\n3,1,0,1,1,0\n",
  );
  for (const i of [1, 2, 3]) put(`${r}/Training_Set/Training/${i}.png`);
  put(`${r}/Evaluation_Set/RFMiD_Validation_Labels.csv`, "ID,Disease_Risk,DR,ARMD,MH,OTHER\n1,1,0,0,1,0\n");
  put(`${r}/Evaluation_Set/Validation/1.png`);
  put(`${r}/Test_Set/RFMiD_Testing_Labels.csv`, "ID,Disease_Risk,DR,ARMD,MH,OTHER\n1,0,0,0,0,1\n");
  put(`${r}/Test_Set/Test/1.png`);
  const ds = loadDataset({ adapter: "rfmid", path: path.join(root, r) });
  t.is(ds.task, "multilabel");
  t.deepEqual(ds.classes, ["DR", "ARMD", "MH", "OTHER"]);
  t.deepEqual(ds.promptKeys, ["dr", "amd", "media_opacity", null]);
  t.deepEqual(ds.samples.map((s) => s.id).sort(), ["test/1", "train/1", "train/2", "train/3", "val/1"]);
  const v = ds.samples.find((s) => s.id === "val/1")!;
  t.is(v.split, "val");
  t.is(
    v.image,
    path.join(root, r, "Evaluation_Set/Validation/1.png"),
    "the image of the validation CSV, not training's 1.png",
  );
  t.deepEqual([...v.y!], [0, 0, 1, 0]);
  t.deepEqual([...ds.samples.find((s) => s.id === "train/3")!.y!], [0, 1, 1, 0]);
  t.is(splitOf(ds, "train").length, 3);
  // a bad cell names file, line and column; a missing image names the row
  put(`${r}-bad/Training_Set/RFMiD_Training_Labels.csv`, "ID,Disease_Risk,DR\n1,1,1\n2,0,yes\n");
  put(`${r}-bad/Training_Set/Training/1.png`);
  put(`${r}-bad/Training_Set/Training/2.png`);
  t.throws(() => loadDataset({ adapter: "rfmid", path: path.join(root, `${r}-bad`) }), {
    message: /RFMiD_Training_Labels\.csv:3: column DR: expected 0 or 1, got "yes"/,
  });
  put(`${r}-noimg/Training_Set/RFMiD_Training_Labels.csv`, "ID,Disease_Risk,DR\n7,1,1\n");
  t.throws(() => loadDataset({ adapter: "rfmid", path: path.join(root, `${r}-noimg`) }), {
    message: /RFMiD_Training_Labels\.csv:2: no image 7\.png/,
  });
  put(`${r}-noid/Training_Set/RFMiD_Training_Labels.csv`, "Image,DR\n1,1\n");
  t.throws(() => loadDataset({ adapter: "rfmid", path: path.join(root, `${r}-noid`) }), {
    message: /no ID column .*columns: Image, DR/,
  });
});

test("odir: one annotation row → left and right eye with the patient's labels, \
patients kept together in a split", (t) => {
  const r = "odir";
  const head =
    "ID,Patient Age,Patient Sex,Left-Fundus,Right-Fundus,Left-Diagnostic Keywords,Right-Diagnostic " +
    "Keywords,N,D,G,C,A,H,M,O";
  const rows = Array.from(
    { length: 10 },
    (_, i) =>
      `${i},60,Male,${i}_left.jpg,${i}_right.jpg,normal fundus,"moderate non proliferative retinopathy, ` +
      `drusen",0,${i % 2},0,0,0,0,0,${i % 3 === 0 ? 1 : 0}`,
  );
  put(`${r}/full.csv`, [head, ...rows].join("\n") + "\n");
  for (let i = 0; i < 10; i++) for (const e of ["left", "right"]) put(`${r}/Training Images/${i}_${e}.jpg`);
  const ds = loadDataset({ adapter: "odir", path: path.join(root, r), seed: 1 });
  t.deepEqual(ds.classes, ["N", "D", "G", "C", "A", "H", "M", "O"]);
  t.deepEqual(ds.promptKeys, [
    "normal",
    "dr",
    "glaucoma",
    "media_opacity",
    "amd",
    "hypertensive_retinopathy",
    "pathologic_myopia",
    null,
  ]);
  t.is(ds.samples.length, 20);
  const l3 = ds.samples.find((s) => s.id === "3_left.jpg")!;
  const r3 = ds.samples.find((s) => s.id === "3_right.jpg")!;
  t.is(l3.eye, "left");
  t.is(r3.eye, "right");
  t.deepEqual([...l3.y!], [0, 1, 0, 0, 0, 0, 0, 1]);
  t.deepEqual([...r3.y!], [...l3.y!]);
  for (let i = 0; i < 10; i++)
    t.is(
      ds.samples.find((s) => s.id === `${i}_left.jpg`)!.split,
      ds.samples.find((s) => s.id === `${i}_right.jpg`)!.split,
      `patient ${i}: both eyes in one split`,
    );
  t.true(ds.samples.every((s) => s.split === "train" || s.split === "val" || s.split === "test"));
  t.regex(ds.notes.join(" "), /labels are per patient/);
  put(`${r}-bad/data.csv`, "ID,Left-Fundus,Right-Fundus,N,D,C,A,H,M,O\n0,0_left.jpg,0_right.jpg,1,0,0,0,0,0,0\n");
  t.throws(() => loadDataset({ adapter: "odir", path: path.join(root, `${r}-bad`) }), {
    message: /data\.csv: no label G column/,
  });
});

test("fives: the class from the file name, masks from Ground truth, a validation split carved from training", (t) => {
  const r = "fives";
  const names = ["1_A", "2_D", "3_G", "4_N", "5_A", "6_D", "7_G", "8_N", "9_A", "10_N"];
  for (const n of names) put(`${r}/train/Original/${n}.png`);
  put(`${r}/train/Ground truth/1_A.png`);
  put(`${r}/test/Original/11_G.png`);
  const ds = loadDataset({ adapter: "fives", path: path.join(root, r) });
  t.is(ds.task, "multiclass");
  t.deepEqual(ds.classes, ["amd", "dr", "glaucoma", "normal"]);
  const byId = new Map(ds.samples.map((s) => [s.id, s]));
  t.is(byId.get("train/Original/2_D.png")!.target, 1);
  t.is(byId.get("train/Original/10_N.png")!.target, 3);
  t.is(byId.get("test/Original/11_G.png")!.split, "test");
  t.is(byId.get("test/Original/11_G.png")!.target, 2);
  t.is(byId.get("train/Original/1_A.png")!.mask, path.join(root, r, "train/Ground truth/1_A.png"));
  t.is(byId.get("train/Original/5_A.png")!.mask, null);
  const tr = ds.samples.filter((s) => s.split === "train").length;
  const va = ds.samples.filter((s) => s.split === "val").length;
  t.is(tr + va, 10);
  put(`${r}-bad/train/Original/12_Q.png`);
  t.throws(() => loadDataset({ adapter: "fives", path: path.join(root, `${r}-bad`) }), {
    message: /12_Q\.png.*cannot read the class from "12_Q\.png"/,
  });
});

test("messidor: grade tables (MESSIDOR and MESSIDOR-2 columns) as a graded task", (t) => {
  const r = "messidor";
  put(
    `${r}/Annotation_Base11.csv`,
    "Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema\n" +
      "20051019_38557_0100_PP.tif,LaTIM,0,0\n20051020_43808_0100_PP.tif,LaTIM,3,1\n",
  );
  put(`${r}/Base11/20051019_38557_0100_PP.tif`);
  put(`${r}/Base11/20051020_43808_0100_PP.tif`);
  const ds = loadDataset({ adapter: "messidor", path: path.join(root, r) });
  t.is(ds.task, "graded");
  t.deepEqual(ds.classes, ["0", "1", "2", "3"]);
  t.deepEqual(ds.promptKeys, ["dr_grade_0", "dr_grade_1", "dr_grade_2", "dr_grade_3"]);
  t.deepEqual(
    ds.samples.map((s) => s.target),
    [0, 3],
  );
  // MESSIDOR-2: ids without extension, an ungradable row without a grade
  const r2 = "messidor2";
  put(`${r2}/messidor_data.csv`, "id_code,diagnosis,adjudicated_gradable\nIM001,2,1\nIM002,,0\nIM003,4,1\n");
  put(`${r2}/images/IM001.png`);
  put(`${r2}/images/IM003.png`);
  const ds2 = loadDataset({ adapter: "messidor", path: path.join(root, r2) });
  t.deepEqual(ds2.classes, ["0", "1", "2", "3", "4"]);
  t.deepEqual(
    ds2.samples.map((s) => [s.id, s.target]),
    [
      ["IM001", 2],
      ["IM003", 4],
    ],
  );
  t.regex(ds2.notes[0]!, /1 rows without a grade \(ungradable\) left out/);
  put(`${r2}-bad/m.csv`, "id_code,diagnosis\nIM001,two\n");
  put(`${r2}-bad/IM001.png`);
  t.throws(() => loadDataset({ adapter: "messidor", path: path.join(root, `${r2}-bad`) }), {
    message: /m\.csv:2: column diagnosis: expected a grade 0\.\.9, got "two"/,
  });
});

test("refuge: Glaucoma/Non-Glaucoma folders, a label CSV for validation, \
masks attached and not taken as images", (t) => {
  const r = "refuge";
  put(`${r}/Training400/Glaucoma/g0001.jpg`);
  put(`${r}/Training400/Non-Glaucoma/n0001.jpg`);
  put(`${r}/Annotation-Training400/Disc_Cup_Masks/Glaucoma/g0001.bmp`);
  put(`${r}/Validation400/V0001.jpg`);
  put(`${r}/Validation400/V0002.jpg`);
  put(`${r}/Validation400/V0003.jpg`);
  put(`${r}/Validation400-GT/labels.csv`, "ImgName,Label(Glaucoma=1)\nV0001.jpg,1\nV0002.jpg,0\n");
  const ds = loadDataset({ adapter: "refuge", path: path.join(root, r) });
  t.deepEqual(ds.classes, ["glaucoma"]);
  const byId = new Map(ds.samples.map((s) => [s.id, s]));
  t.deepEqual([...byId.keys()].sort(), [
    "Training400/Glaucoma/g0001.jpg",
    "Training400/Non-Glaucoma/n0001.jpg",
    "Validation400/V0001.jpg",
    "Validation400/V0002.jpg",
  ]);
  t.deepEqual([...byId.get("Training400/Glaucoma/g0001.jpg")!.y!], [1]);
  t.deepEqual([...byId.get("Training400/Non-Glaucoma/n0001.jpg")!.y!], [0]);
  t.deepEqual([...byId.get("Validation400/V0001.jpg")!.y!], [1]);
  t.is(byId.get("Validation400/V0002.jpg")!.split, "val");
  t.is(byId.get("Training400/Glaucoma/g0001.jpg")!.split, "train");
  t.is(
    byId.get("Training400/Glaucoma/g0001.jpg")!.mask,
    path.join(root, r, "Annotation-Training400/Disc_Cup_Masks/Glaucoma/g0001.bmp"),
  );
  t.regex(ds.notes.join(" "), /1 images without a label left out \(first: Validation400\/V0003\.jpg\)/);
});

test("folder and manifest sets; unknown adapter, unknown class, empty split and missing prompts are named", (t) => {
  for (const [c, n] of [
    ["amd", 3],
    ["normal", 4],
  ] as const)
    for (let i = 0; i < n; i++) put(`folder/${c}/${c}${i}.png`);
  const ds = loadDataset({ path: path.join(root, "folder"), seed: 2 });
  t.is(ds.name, "folder");
  t.deepEqual(ds.classes, ["amd", "normal"]);
  t.deepEqual(
    ds.samples.map((s) => s.target),
    [0, 0, 0, 1, 1, 1, 1],
  );
  t.regex(ds.notes[0]!, /7 images split 60\/20\/20/);
  t.throws(() => loadDataset({ adapter: "kaggle", path: path.join(root, "folder") }), {
    message: /unknown adapter "kaggle" \(adapters: manifest, folder, rfmid, odir, fives, messidor, refuge\)/,
  });
  t.throws(() => loadDataset({ path: path.join(root, "nope") }), { message: /--data .*nope: no such file or folder/ });
  t.deepEqual(Object.keys(ADAPTERS), ["manifest", "folder", "rfmid", "odir", "fives", "messidor", "refuge"]);

  const m = put(
    "m/manifest.jsonl",
    [
      { image: "a.png", labels: { dr: 1 }, split: "test" },
      { image: "b.png", labels: { dr: 0.5, erm: 1 }, split: "test" },
      { image: "c.png", labels: { normal: 1 }, split: "train" },
    ]
      .map((x) => JSON.stringify(x))
      .join("\n") + "\n",
  );
  const md = manifestDataset(m);
  t.deepEqual(md.classes, ["normal", "dr", "erm"], "the labels asserted somewhere, in taxonomy order");
  t.deepEqual([...md.samples[1]!.y!], [0, Number.NaN, 1], "0.5 is unknown");
  t.throws(() => manifestDataset(m, { classes: ["dr", "diabetes"] }), {
    message: /unknown class name "diabetes": the manifest's labels are taxonomy ids/,
  });
  t.throws(() => splitOf(md, "val"), { message: /split "val" is empty \(splits here: test, train\)/ });
  const bank = loadPromptBank();
  t.throws(() => classPrompts(bank, "OTHER"), {
    message: /unknown class name "OTHER": no prompts for it in .*zh-fundus\.json/,
  });
  const s = [
    { ...md.samples[0]!, split: null, patientId: "p1" },
    { ...md.samples[1]!, split: null, patientId: "p1" },
  ];
  t.is(assignSplits(s, 5), 2);
  t.is(s[0]!.split, s[1]!.split);
});

test("prompt bank: templates × names + expert descriptions; the version-1 file layout still reads", (t) => {
  const bank = loadPromptBank();
  const dr = classPrompts(bank, "dr");
  t.deepEqual(dr.positive.slice(0, 4), [
    "眼底照片显示糖尿病视网膜病变",
    "可见糖尿病视网膜病变",
    "眼底照片显示糖网",
    "可见糖网",
  ]);
  t.true(dr.positive.includes("视网膜可见微血管瘤、点片状出血及硬性渗出"), "descriptions are positive prompts");
  t.deepEqual(dr.negative, ["眼底照片未见糖尿病视网膜病变", "未见糖尿病视网膜病变", "眼底照片未见糖网", "未见糖网"]);
  t.deepEqual(classPrompts(bank, "normal").negative, ["眼底可见病变", "眼底异常"]);
  for (const id of ["normal", "dr", "glaucoma", "hemorrhage", "myelinated_fibers", "dr_grade_4"])
    t.true(bank.classes.get(id)!.descriptions.length > 0, id);
  const v1 = put(
    "prompts-v1.json",
    JSON.stringify({
      positive: ["可见{zh}"],
      negative: ["未见{zh}"],
      names: { hemorrhage: "出血" },
      overrides: { normal: { positive: ["正常眼底"] } },
    }),
  );
  const b1 = loadPromptBank(v1);
  t.deepEqual(classPrompts(b1, "hemorrhage"), { positive: ["可见出血"], negative: ["未见出血"] });
  t.deepEqual(
    classPrompts(b1, "erm"),
    { positive: ["可见黄斑前膜"], negative: ["未见黄斑前膜"] },
    "the taxonomy's Chinese name by default",
  );
  t.deepEqual(classPrompts(b1, "normal").positive, ["正常眼底"]);
  const bad = put(
    "prompts-bad.json",
    JSON.stringify({ positive: ["可见{zh}"], negative: ["未见{zh}"], names: { diabetes: "糖尿病" } }),
  );
  t.throws(() => loadPromptBank(bad), { message: /names\.diabetes: not a label id/ });
  const bad2 = put(
    "prompts-bad2.json",
    JSON.stringify({ templates: { positive: ["可见{name}"], negative: [] }, classes: {} }),
  );
  t.throws(() => loadPromptBank(bad2), { message: /templates\.negative: expected at least one string/ });
});

test("a class without positives: AUC NaN, reported with a note, left out of the mean; never a crash", (t) => {
  // class a: scores rank the two positives first → AUC 1; class b: no positives
  const scores = Float64Array.from([0.9, 0.1, 0.8, 0.2, 0.3, 0.3, 0.2, 0.4]);
  const y = Float32Array.from([1, 0, 1, 0, 0, 0, 0, 0]);
  const r = evaluateScores(
    { task: "multilabel", classes: ["a", "b"], scores, n: 4, y, threshold: 0.5 },
    { resamples: 100 },
  );
  t.is(r.perClass.a!.auc.value, 1);
  t.true(Number.isNaN(r.perClass.b!.auc.value));
  t.is(r.metrics.auc!.value, 1, "the mean leaves b out");
  t.is(r.perClass.b!.positives, 0);
  t.deepEqual(r.notes, ["b: no positives among 4 cases; AUC undefined, left out of the mean AUC"]);
  // F1 at 0.5 for a: predictions [1, 1, 0, 0] vs labels [1, 1, 0, 0] → 1
  t.is(r.perClass.a!.f1.value, 1);
  t.deepEqual(r.confusion, {
    a: [
      [2, 0],
      [0, 2],
    ],
    b: [
      [4, 0],
      [0, 0],
    ],
  });
});
