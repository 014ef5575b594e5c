/**
 * Scores on both gold sets at the goal levels of issue #18 (the labeler is deterministic):
 * the independent hand-labelled set (test/labels/independent-gold.jsonl, six house styles, per-eye
 * labels for two-eye reports) and the shared dev set. Also `vilref labels eval --errors`.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { Labeler, errorGroups, evaluate, formatErrors, type Eye, type LabelMap } from "../lib/labels/index.js";
import { register } from "../lib/cli/labels.js";
import { sharedPath } from "./helpers/shared.js";

interface GoldRow {
  id: string;
  text: string;
  labels: LabelMap;
  eye: Eye | null;
  style?: string;
  perEye?: { left?: LabelMap; right?: LabelMap };
}

const goldPath = new URL("./labels/independent-gold.jsonl", import.meta.url).pathname;
const devPath = sharedPath("labels", "dev-reports.jsonl");
const read = (file: string): GoldRow[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as GoldRow);
const lab = new Labeler();

function score(rows: GoldRow[]) {
  return evaluate(
    rows.map((x) => {
      const p = lab.label(x.text);
      return { gold: x.labels, pred: p.labels, goldEye: x.eye, predEye: p.eye };
    }),
  );
}

test("independent gold set: micro-F1 ≥ 0.97, macro-F1 ≥ 0.95, recall ≥ 0.95, exact match ≥ 0.85", (t) => {
  const rows = read(goldPath);
  t.true(rows.length >= 420);
  t.true(new Set(rows.map((r) => r.style)).size >= 6);
  const r = score(rows);
  t.log(
    `micro P ${r.micro.precision.toFixed(3)} R ${r.micro.recall.toFixed(3)} F1 ${r.micro.f1.toFixed(3)}, ` +
      `macro F1 ${r.macro.f1.toFixed(3)}, exact ${r.exactMatch.toFixed(3)}, eye ${r.eyeAccuracy.toFixed(3)}`,
  );
  t.true(r.micro.f1 >= 0.97);
  t.true(r.macro.f1 >= 0.95);
  t.true(r.micro.recall >= 0.95);
  t.true(r.exactMatch >= 0.85);
  t.true(r.eyeAccuracy >= 0.95);
});

test("independent gold set, per eye: each described eye's labels (normal for an eye with nothing found)", (t) => {
  const rows = read(goldPath).filter((r) => r.perEye);
  t.true(rows.length >= 100);
  const pairs = rows.flatMap((x) => {
    const p = lab.label(x.text);
    return (["left", "right"] as const)
      .filter((side) => x.perEye?.[side])
      .map((side) => ({ gold: x.perEye?.[side] as LabelMap, pred: p.byEye[side] }));
  });
  const r = evaluate(pairs);
  t.log(`per eye (${pairs.length} eyes): micro F1 ${r.micro.f1.toFixed(3)}, exact ${r.exactMatch.toFixed(3)}`);
  t.true(r.micro.f1 >= 0.97);
  t.true(r.exactMatch >= 0.85);
  const oneNormal = rows.filter((x) => {
    const { left, right } = x.perEye ?? {};
    return (left?.normal === 1) !== (right?.normal === 1) && left && right;
  });
  t.true(oneNormal.length >= 20, "reports with one normal eye and one abnormal eye");
  let agree = 0;
  for (const x of oneNormal) {
    const p = lab.label(x.text);
    if (p.labels.normal === undefined && (p.byEye.left.normal === 1) === (x.perEye?.left?.normal === 1)) agree++;
  }
  t.true(agree / oneNormal.length >= 0.95, `${agree} of ${oneNormal.length}`);
});

test("dev set stays at ≥ 0.99 (micro-F1, macro-F1, exact match)", (t) => {
  const rows = read(devPath);
  t.true(rows.length >= 300);
  const r = score(rows);
  t.log(`micro F1 ${r.micro.f1.toFixed(3)}, macro F1 ${r.macro.f1.toFixed(3)}, exact ${r.exactMatch.toFixed(3)}`);
  t.true(r.micro.f1 >= 0.99);
  t.true(r.macro.f1 >= 0.99);
  t.true(r.exactMatch >= 0.99);
  t.is(r.eyeAccuracy, 1);
});

test("errorGroups: misses by the cue that negated them or the nearest rule term; false positives by rule", (t) => {
  const inputs = [
    { id: "a", text: "右眼未见黄斑裂孔", gold: { macular_hole: 1 as const } },
    { id: "b", text: "左眼未见黄斑裂孔", gold: { macular_hole: 1 as const } },
    { id: "c", text: "黄斑中心小孔样改变", gold: { macular_hole: 1 as const } },
    { id: "d", text: "右眼黄斑裂孔", gold: {} },
    { id: "e", text: "黄斑裂孔待排", gold: { macular_hole: 1 as const } },
  ].map((x) => ({ ...x, result: lab.label(x.text) }));
  const groups = errorGroups(inputs, lab);
  const key = (id: string): string | undefined => groups.find((g) => g.cases.some((c) => c.id === id))?.key;
  const negated = groups.find((g) => g.key.startsWith("negated by cue 未见"));
  t.deepEqual(
    negated?.cases.map((c) => c.id),
    ["a", "b"],
  );
  t.is(negated?.kind, "missed");
  t.regex(key("c") ?? "", /^no rule matched; nearest rule term 黄斑/);
  t.regex(groups.find((g) => g.cases[0]?.id === "c")?.cases[0]?.context ?? "", /黄斑/);
  t.is(groups.find((g) => g.cases[0]?.id === "d")?.kind, "false positive");
  t.is(key("d"), "asserted, no cue: term 黄斑裂孔 (macular_hole.synonyms[0] 黄斑裂孔)");
  t.is(groups.find((g) => g.cases[0]?.id === "e")?.kind, "wrong value");
  t.regex(key("e") ?? "", /^suspected by cue 待排/);
  const text = formatErrors(groups);
  t.regex(text, /^macular_hole: missed 3, wrong value 1, false positive 1$/m);
  t.regex(text, /missed ×2 {2}negated by cue 未见/);
  t.is(formatErrors([]), "no errors");
});

test.serial("`vilref labels eval --errors` prints the grouped errors and the per-report list", async (t) => {
  const program = new Command("vilref").exitOverride();
  register(program);
  let stdout = "";
  const write = process.stdout.write.bind(process.stdout);
  (process.stdout as unknown as { write: (s: string) => boolean }).write = (s: string) => ((stdout += s), true);
  try {
    await program.parseAsync(["labels", "eval", "--gold", goldPath, "--errors"], { from: "user" });
  } finally {
    (process.stdout as unknown as { write: typeof write }).write = write;
  }
  t.regex(stdout, /^micro\s+precision/m);
  t.regex(stdout, /errors by label and by the nearest cue or term:/);
  t.regex(stdout, /^\S+: missed \d+, wrong value \d+, false positive \d+$/m);
  t.regex(stdout, /per report:/);
});
