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
