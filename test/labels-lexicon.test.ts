/** Spelling variants (lexicon.ts), pattern pre-filters and the normaliser's character table. */
import test from "ava";
import { compileEquivalents, expandTerm, MAX_VARIANTS } from "../lib/labels/lexicon.js";
import { patternRequirements } from "../lib/labels/compile.js";
import { charTable, normalizeReport, originalSpan } from "../lib/labels/index.js";

test("expandTerm: every member of a group, the longest member at each place, the term itself first", (t) => {
  const eq = compileEquivalents([
    ["黄斑", "黄斑区", "黄斑部"],
    ["视盘", "视乳头"],
  ]);
  t.deepEqual(expandTerm("黄斑裂孔", eq), ["黄斑裂孔", "黄斑区裂孔", "黄斑部裂孔"]);
  t.deepEqual(expandTerm("黄斑区裂孔", eq), ["黄斑区裂孔", "黄斑裂孔", "黄斑部裂孔"], "黄斑区 is one token");
  t.deepEqual(expandTerm("视盘水肿", eq), ["视盘水肿", "视乳头水肿"]);
  t.deepEqual(expandTerm("出血", eq), ["出血"]);
});

test("expandTerm: an empty member drops a spelling only inside a term; the product is capped", (t) => {
  const eq = compileEquivalents([["性", "型", ""]]);
  t.deepEqual(expandTerm("糖尿病性视网膜病变", eq), ["糖尿病性视网膜病变", "糖尿病型视网膜病变", "糖尿病视网膜病变"]);
  t.deepEqual(expandTerm("增殖性", eq), ["增殖性", "增殖型"], "never dropped at the end");
  t.deepEqual(expandTerm("性病变", eq), ["性病变", "型病变"], "never dropped at the start");
  const many = compileEquivalents([["a", "b", "c", "d"]]);
  t.is(expandTerm("xaxaxaxaxax", many).length, MAX_VARIANTS);
});

test("patternRequirements: literals a pattern cannot match without", (t) => {
  t.deepEqual(patternRequirements("黄斑(?:区|部)?呈?(?:轻度|明显)水肿"), [["黄斑"], ["轻度", "明显"], ["水肿"]]);
  t.deepEqual(patternRequirements("(?<!非)增[殖生]期\\s*(?:dr|糖网)"), [["增"], ["期"], ["dr", "糖网"]]);
  t.deepEqual(patternRequirements("视网膜[^,]{0,4}脱离"), [["视网膜"], ["脱离"]]);
  t.deepEqual(patternRequirements("ab?c"), [["a"], ["c"]]);
  t.deepEqual(patternRequirements("(?:x|y.*)z"), [["x", "y"], ["z"]]);
  t.deepEqual(patternRequirements("(?:x|.y)z"), [["z"]], "a group whose alternative has no literal is not required");
  t.deepEqual(patternRequirements("a|b"), [], "top-level alternation: always run");
});

test("normalisation: the character table maps one unit to one; offsets survive Ⅱ → ii", (t) => {
  const table = charTable({ 視: "视", 網: "网" });
  t.is(normalizeReport("視網膜ＤＲ，", table).text, "视网膜dr,");
  t.is(normalizeReport("視網膜").text, "視網膜", "without a table nothing is mapped");
  const text = "DR Ⅱ期，視網膜";
  const nt = normalizeReport(text, table);
  t.is(nt.text, "dr ii期,视网膜");
  const at = nt.text.indexOf("期");
  t.deepEqual(originalSpan(nt, at, at + 1), [text.indexOf("期"), text.indexOf("期") + 1]);
  t.deepEqual(originalSpan(nt, 3, 5), [3, 4], "both units of ii point at Ⅱ");
  t.is(normalizeReport("眼底😀正常").text, "眼底😀正常");
});

test("compileEquivalents: groups sharing a member merge; an empty member does not join groups", (t) => {
  const eq = compileEquivalents([
    ["黄斑", "黄斑区"],
    ["黄斑", "黄斑中心小凹"],
    ["性", ""],
    ["型", ""],
  ]);
  t.deepEqual(expandTerm("黄斑裂孔", eq).sort(), ["黄斑中心小凹裂孔", "黄斑区裂孔", "黄斑裂孔"].sort());
  t.deepEqual(expandTerm("糖尿病性视网膜", eq), ["糖尿病性视网膜", "糖尿病视网膜"], "性 and 型 stay apart");
});
