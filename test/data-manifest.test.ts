import test from "ava";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ManifestError, attachLabels, readImageFolder, readLabeledFile, readManifest } from "../lib/data/manifest.js";
import { expandGlob, resolveImageInputs } from "../lib/data/inputs.js";
import { parseRows } from "../lib/io/table.js";

const dir = mkdtempSync(path.join(tmpdir(), "vilref-manifest-"));
const w = (name: string, text: string) => {
  const f = path.join(dir, name);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text);
  return f;
};

test("CSV with quoting, a column mapping and paths relative to the manifest", (t) => {
  const f = w(
    "sub/m.csv",
    'path,report,diag,set,pid\nimg/a.png,"右眼：视网膜出血，""多处""\n第二行",dr;hemorrhage:0.5,train,p1\n/abs/b.png,,,val,\n',
  );
  const s = readManifest(f, {
    columns: { image: "path", text: "report", labels: "diag", split: "set", patientId: "pid" },
  });
  t.is(s.length, 2);
  t.is(s[0]!.image, path.join(dir, "sub/img/a.png"));
  t.is(s[0]!.id, "img/a.png");
  t.is(s[0]!.text, '右眼：视网膜出血，"多处"\n第二行');
  t.deepEqual(s[0]!.labels, { dr: 1, hemorrhage: 0.5 });
  t.is(s[0]!.patientId, "p1");
  t.is(s[1]!.image, "/abs/b.png");
  t.is(s[1]!.labels, null);
  t.is(s[1]!.source.line, 4); // the quoted newline makes row 2 span lines 2-3
  t.is(readManifest(f, { columns: { image: "path", split: "set" }, split: "val" }).length, 1);
});

test("TSV and JSONL manifests", (t) => {
  const tsv = w("m.tsv", "image\ttext\tid\na.jpg\t正常眼底\tx1\n");
  t.deepEqual(
    readManifest(tsv).map((s) => [s.id, s.text]),
    [["x1", "正常眼底"]],
  );
  const jl = w(
    "m.jsonl",
    '{"image":"a.png","text":"t","labels":{"dr":1},"eye":"left","target":2}\n\n{"image":"b.png","labels":["erm"]}\n',
  );
  const s = readManifest(jl);
  t.deepEqual(
    s.map((x) => x.labels),
    [{ dr: 1 }, { erm: 1 }],
  );
  t.is(s[0]!.eye, "left");
  t.is(s[0]!.target, 2);
});

test("bad rows are errors naming the file and line", (t) => {
  const cases: [string, string, RegExp][] = [
    ["bad1.jsonl", '{"image":"a.png"}\n{"image":"b.png"}\n{"image": oops}\n', /bad1\.jsonl:3: not valid JSON/],
    ["bad2.jsonl", '{"image":"a.png"}\n{"text":"no image"}\n', /bad2\.jsonl:2: no image path/],
    ["bad3.csv", "image,text\na.png,x\nb.png,y,extra\n", /bad3\.csv:3: 3 fields, the header has 2/],
    ["bad4.csv", 'image,labels\na.png,"dr;notalabel"\n', /bad4\.csv:2: labels: unknown label id "notalabel"/],
    ["bad5.jsonl", '{"image":"a.png","labels":{"dr":2}}\n', /bad5\.jsonl:1: labels\.dr: expected 1, 0\.5 or 0/],
    ["bad6.csv", 'image,text\na.png,"never closed\n', /bad6\.csv:2: unterminated quoted field/],
    [
      "bad7.jsonl",
      '{"image":"a.png","id":"k"}\n{"image":"b.png","id":"k"}\n',
      /bad7\.jsonl:2: duplicate id "k" \(first on line 1\)/,
    ],
    ["bad8.csv", "picture\na.png\n", /bad8\.csv:1: no "image" column/],
  ];
  for (const [name, text, re] of cases) {
    const e = t.throws(() => readManifest(w(name, text)), { instanceOf: ManifestError });
    t.regex(e!.message, re);
  }
  // Option errors name the key.
  t.throws(() => readManifest(w("ok.csv", "image\na.png\n"), { columns: { image: "" } }), {
    message: /columns\.image/,
  });
  t.throws(() => readManifest(w("ok.csv", "image\na.png\n"), { colums: {} } as never), {
    message: /colums|Unrecognized/,
  });
  t.deepEqual(parseRows("a,b\r\n1,2", { delimiter: "," }), [
    { fields: ["a", "b"], line: 1 },
    { fields: ["1", "2"], line: 2 },
  ]);
});

test("labeled files from `vilref labels --out` join onto a manifest by id", (t) => {
  const m = w(
    "lab/m.jsonl",
    '{"id":"r1","image":"a.png","text":"..."}\n{"id":"r2","image":"b.png"}\n{"id":"r3","image":"c.png"}\n',
  );
  const lab = w(
    "lab/labels.jsonl",
    '{"id":"r1","labels":{"dr":1,"hemorrhage":0.5},"eye":"right"}\n' +
      '{"id":"r2","labels":{"normal":1},"eye":null,"ignored":["erm"]}\n',
  );
  const entries = readLabeledFile(lab);
  t.deepEqual(entries.get("r2")!.ignored, ["erm"]);
  const s = readManifest(m);
  const res = attachLabels(s, entries);
  t.deepEqual(res, { matched: 2, missing: ["r3"] });
  t.deepEqual(s[0]!.labels, { dr: 1, hemorrhage: 0.5 });
  t.is(s[0]!.eye, "right");
  t.deepEqual(readManifest(m, { labelsFile: lab })[1]!.labels, { normal: 1 });
  t.throws(() => readLabeledFile(w("lab/bad.jsonl", '{"id":"a","labels":{}}\n{"labels":{}}\n')), {
    message: /bad\.jsonl:2: no id/,
  });
});

test("image folders: one class per folder, sorted", (t) => {
  for (const f of ["if/normal/1.png", "if/normal/2.jpg", "if/dr/3.tif", "if/dr/notes.txt", "if/amd/sub/4.webp"])
    w(f, "x");
  const { samples, classes } = readImageFolder(path.join(dir, "if"));
  t.deepEqual(classes, ["amd", "dr", "normal"]);
  t.deepEqual(
    samples.map((s) => [s.id, s.target]),
    [
      ["amd/sub/4.webp", 0],
      ["dr/3.tif", 1],
      ["normal/1.png", 2],
      ["normal/2.jpg", 2],
    ],
  );
});

test("embed inputs: folder, glob, manifest", (t) => {
  for (const f of ["in/a/1.png", "in/a/2.jpg", "in/b/3.png", "in/b/x.txt"]) w(f, "x");
  t.deepEqual(
    resolveImageInputs(path.join(dir, "in")).map((s) => s.id),
    ["a/1.png", "a/2.jpg", "b/3.png"],
  );
  t.deepEqual(
    expandGlob(path.join(dir, "in/**/*.png")).map((f) => path.relative(dir, f)),
    ["in/a/1.png", "in/b/3.png"],
  );
  t.deepEqual(
    expandGlob(path.join(dir, "in/*/{2,3}.*")).map((f) => path.basename(f)),
    ["2.jpg", "3.png"],
  );
  t.is(resolveImageInputs(w("in/m.csv", "image\na/1.png\n"))[0]!.image, path.join(dir, "in/a/1.png"));
  t.throws(() => resolveImageInputs(path.join(dir, "in/*.nothing")), { message: /no image files match/ });
});

test("a glob's * stays in its folder: data/*.png does not descend into sub-folders; ** does", (t) => {
  for (const f of ["g/data/a.png", "g/data/b.PNG", "g/data/c.txt", "g/data/sub/d.png", "g/data/sub/deep/e.png"])
    w(f, "x");
  const rel = (files: string[]) => files.map((f) => path.relative(path.join(dir, "g"), f));
  t.deepEqual(rel(expandGlob("data/*.png", path.join(dir, "g"))), ["data/a.png"]);
  t.deepEqual(rel(expandGlob(path.join(dir, "g/data/*.png"))), ["data/a.png"]);
  t.deepEqual(rel(expandGlob(path.join(dir, "g/data/*"))), ["data/a.png", "data/b.PNG"]); // images only
  t.deepEqual(rel(expandGlob("data/*/*.png", path.join(dir, "g"))), ["data/sub/d.png"]);
  t.deepEqual(rel(expandGlob("data/**/*.png", path.join(dir, "g"))), [
    "data/a.png",
    "data/sub/d.png",
    "data/sub/deep/e.png",
  ]);
  t.deepEqual(rel(expandGlob("data/?.png", path.join(dir, "g"))), ["data/a.png"]);
  t.deepEqual(rel(expandGlob("data/[ab].*", path.join(dir, "g"))), ["data/a.png", "data/b.PNG"]);
  t.deepEqual(
    resolveImageInputs(path.join(dir, "g/data/*.png")).map((s) => s.id),
    ["a.png"],
  );
});
