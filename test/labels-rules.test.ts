/** The rules file: validation with the path of the bad entry, and clinician extensions. */
import test from "ava";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_RULES_URL, Labeler, RulesError, loadRules, parseRules } from "../lib/labels/index.js";

const base = (): any => JSON.parse(readFileSync(DEFAULT_RULES_URL, "utf8"));

function rejects(t: any, mutate: (r: any) => void, pathWanted: string, message?: RegExp): void {
  const r = base();
  mutate(r);
  const err = t.throws(() => parseRules(r, "test.json"), { instanceOf: RulesError });
  t.is(err.path, pathWanted);
  t.true(err.message.includes(pathWanted));
  if (message) t.regex(err.message, message);
}

test("the packaged rules load and cover the taxonomy", (t) => {
  const r = loadRules();
  t.is(r.labels.length, 31);
  t.true(r.labels.every((l) => l.zh.length > 0 && l.en.length > 0));
  t.deepEqual(r.labels.find((l) => l.id === "pdr")?.implies, ["dr"]);
});

test("unknown label id names its entry", (t) => {
  rejects(t, (r) => (r.labels[3].id = "amd2"), "labels[3].id", /unknown label id "amd2"/);
});

test("duplicate label id names the second entry", (t) => {
  rejects(t, (r) => (r.labels[5].id = "dr"), "labels[5].id", /duplicate/);
});

test("a synonym that is not a string names its index", (t) => {
  rejects(t, (r) => (r.labels[2].synonyms[1] = 42), "labels[2].synonyms[1]");
  rejects(t, (r) => (r.labels[7].synonyms[0] = ""), "labels[7].synonyms[0]", /non-empty/);
});

test("an invalid or empty-matching pattern names its index", (t) => {
  rejects(
    t,
    (r) => (r.labels[1].patterns = ["ok", "视网膜(病变"]),
    "labels[1].patterns[1]",
    /invalid regular expression/,
  );
  rejects(t, (r) => (r.labels[1].patterns = ["x*"]), "labels[1].patterns[0]", /empty string/);
});

test("implications must name known labels", (t) => {
  rejects(t, (r) => (r.labels[2].implies = ["dr", "nope"]), "labels[2].implies[1]");
});

test("unknown keys and missing cue lists are rejected with their path", (t) => {
  rejects(t, (r) => (r.labels[0].synonym = ["x"]), "labels[0].synonym", /Unrecognized key/);
  rejects(t, (r) => delete r.cues.negation.pre, "cues.negation.pre");
  rejects(t, (r) => (r.numeric[0].label = "glaucomaa"), "numeric[0].label");
  rejects(t, (r) => (r.numeric[0].min = 6), "numeric[0].min");
  rejects(t, (r) => (r.version = 2), "version");
});

test("loadRules reports unreadable files and broken JSON with the file name", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-rules-"));
  const f = path.join(dir, "broken.json");
  writeFileSync(f, "{ not json");
  t.throws(() => loadRules(f), { instanceOf: RulesError, message: /broken\.json.*not valid JSON/ });
  t.throws(() => loadRules(path.join(dir, "missing.json")), { instanceOf: RulesError, message: /cannot read/ });
  const g = path.join(dir, "bad.json");
  const r = base();
  r.labels[4].patterns = ["("];
  writeFileSync(g, JSON.stringify(r));
  t.throws(() => loadRules(g), { message: /bad\.json: labels\[4\]\.patterns\[0\]/ });
});

test("a clinician can extend the rules: new synonym, new cue", (t) => {
  const r = base();
  const before = new Labeler(parseRules(r));
  t.deepEqual(before.label("诊断：OD MHole").labels, {});
  t.deepEqual(before.label("视网膜前膜存疑").labels, { erm: 1 });
  r.labels.find((l: any) => l.id === "macular_hole").abbreviations.push("MHole");
  r.cues.uncertainty.post.push("存疑");
  const after = new Labeler(parseRules(r));
  t.deepEqual(after.label("诊断：OD MHole").labels, { macular_hole: 1 });
  t.deepEqual(after.label("视网膜前膜存疑").labels, { erm: 0.5 });
  t.deepEqual(after.label("黄斑区视网膜前膜存疑").labels, { erm: 0.5 }, "the equivalents spell the new cue's findings");
});

test("the lexicon fields are validated with their path", (t) => {
  rejects(t, (r) => (r.equivalents = [["视盘", "视乳头"], [""]]), "equivalents[1]", /at least 2/);
  rejects(t, (r) => (r.equivalents = [["", ""]]), "equivalents[0]", /non-empty member/);
  rejects(t, (r) => (r.chars = { 視: "视", 網: "网络" }), "chars.網", /one character to one character/);
  rejects(t, (r) => (r.labels[1].absence = ["异常"]), "labels[1].absence", /exclusive/);
  rejects(t, (r) => (r.labels[14].signPatterns = ["视盘(色"]), "labels[14].signPatterns[0]", /invalid regular/);
  rejects(t, (r) => (r.cues.negation.prefix = [3]), "cues.negation.prefix[0]");
  rejects(t, (r) => (r.eyes.absent = "未拍"), "eyes.absent");
});

test("older rules files without the lexicon fields still load (defaults)", (t) => {
  const r = base();
  for (const k of ["equivalents", "chars"]) delete r[k];
  delete r.eyes.absent;
  delete r.cues.negation.prefix;
  delete r.cues.plan;
  for (const l of r.labels) for (const k of ["signs", "signPatterns", "absence", "treatment"]) delete l[k];
  const lab = new Labeler(parseRules(r));
  t.deepEqual(lab.label("左眼黄斑前膜").labels, { erm: 1 });
  t.deepEqual(lab.label("左眼黄斑部裂孔").labels, {}, "no equivalents: 黄斑部 is not 黄斑");
  t.deepEqual(lab.label("左眼視網膜脫離").labels, {}, "no character table");
});

test("a hospital adds an equivalence group, a sign and a traditional character", (t) => {
  const r = base();
  const lab0 = new Labeler(parseRules(r));
  t.deepEqual(lab0.label("黄斑中心小凹裂孔").labels, {});
  r.equivalents.push(["黄斑", "黄斑中心小凹"]);
  r.labels.find((l: any) => l.id === "glaucoma").signs = ["盘沿切迹"];
  r.chars["眥"] = "眦";
  const lab = new Labeler(parseRules(r));
  t.deepEqual(lab.label("黄斑中心小凹裂孔").labels, { macular_hole: 1 });
  t.deepEqual(lab.label("颞下方盘沿切迹").labels, { glaucoma: 1 });
  t.deepEqual(lab.label("颞下方盘沿切迹。诊断：青光眼待排").labels, { glaucoma: 0.5 }, "named outranks a sign");
});
