/**
 * Rule families of the labeler, each with its own small reports (written for these tests, not
 * taken from the dev set).
 */
import test from "ava";
import { Labeler, labelReport, toLabelVector, LABEL_IDS, type LabelMap } from "../lib/labels/index.js";

const lab = new Labeler();
const L = (text: string): LabelMap => lab.label(text).labels;
/** The findings only: a report that only negates findings also states a normal fundus (tested below). */
const F = (text: string): LabelMap => {
  const { normal: _normal, ...rest } = lab.label(text).labels;
  return rest;
};

test("taxonomy: 31 labels, ids in the fixed order, the rules cover every one", (t) => {
  t.is(LABEL_IDS.length, 31);
  t.is(LABEL_IDS[0], "normal");
  t.is(LABEL_IDS[30], "myelinated_fibers");
  t.deepEqual([...lab.labels].sort(), [...LABEL_IDS].sort());
});

test("synonyms and abbreviations, full-width and case-insensitive, whole words only", (t) => {
  t.deepEqual(L("诊断：左眼BRVO"), { rvo: 1 });
  t.deepEqual(L("印象：ｃｒａｏ"), { rao: 1 });
  t.deepEqual(L("诊断：老年性黄斑变性（湿性）"), { amd: 1 });
  t.deepEqual(L("视网膜前膜，黄斑部轻度牵拉"), { erm: 1 });
  t.deepEqual(L("双眼PRP术后"), { laser_scars: 1 }, "RP inside PRP is not retinitis pigmentosa");
  t.deepEqual(L("后极部RPE改变"), {}, "RP inside RPE is not retinitis pigmentosa");
  t.deepEqual(L("诊断：中浆（右眼）"), { csc: 1 });
  t.deepEqual(L("黄斑区多发玻璃疣"), { drusen: 1 });
});

test("longest match wins where terms overlap", (t) => {
  t.deepEqual(L("诊断：非增殖性糖尿病视网膜病变（重度）"), { dr: 1 });
  t.deepEqual(L("诊断：NPDR"), { dr: 1 });
  t.deepEqual(L("玻璃体腔大量积血，眼底不入"), { vitreous_hemorrhage: 1 });
  t.deepEqual(L("玻璃体出血"), { vitreous_hemorrhage: 1 });
  t.deepEqual(L("结膜下出血"), {});
  t.deepEqual(L("黄斑区见脉络膜新生血管"), { neovascularization: 1 }, "CNV is neovascularization");
  t.deepEqual(F("虹膜新生血管"), {}, "iris vessels are not a fundus finding");
  t.deepEqual(L("高度近视，近视性黄斑变性"), { pathologic_myopia: 1 });
});

test("implications: pdr implies dr, with the same certainty", (t) => {
  t.deepEqual(L("诊断：PDR"), { dr: 1, pdr: 1 });
  t.deepEqual(L("考虑增生性糖尿病视网膜病变可能"), { dr: 0.5, pdr: 0.5 });
  t.deepEqual(L("诊断：DR Ⅳ期"), { dr: 1, pdr: 1 });
  t.deepEqual(L("轻度NPDR，不除外PDR"), { dr: 1, pdr: 0.5 });
  const r = lab.label("诊断：PDR");
  t.truthy(r.evidence.find((e) => e.label === "dr" && e.source === "implied" && e.from === "pdr"));
});

test("negation before a finding, limited to its clause", (t) => {
  t.deepEqual(F("周边视网膜无裂孔，未见视网膜脱离"), {});
  t.deepEqual(F("未见出血、硬性渗出及棉絮斑"), {});
  t.deepEqual(F("无明显微动脉瘤，可见黄斑水肿"), { macular_edema: 1 });
  t.deepEqual(F("后极部无出血，硬性渗出成簇"), { hard_exudate: 1 });
  t.deepEqual(F("否认视网膜色素变性"), {});
  t.deepEqual(F("已排除黄斑裂孔"), {});
  t.deepEqual(F("排除视盘水肿，诊断视神经萎缩"), { optic_atrophy: 1 });
  t.deepEqual(F("不伴玻璃体积血"), {});
  t.deepEqual(F("无灌注区周围新生血管"), { neovascularization: 1 }, "无 inside 无灌注区 is not a negation");
});

test("negation after a finding: （-）, 阴性, …未见 at the clause end", (t) => {
  t.deepEqual(F("新生血管（－），视网膜脱离(-)"), {});
  t.deepEqual(F("棉絮斑阴性"), {});
  t.deepEqual(F("出血及微动脉瘤未见。"), {});
  t.deepEqual(L("黄斑前膜未见明显进展"), { erm: 1 }, "未见 in mid-clause does not negate what precedes it");
  t.deepEqual(F("动静脉交叉压迫征（+），视网膜动脉硬化"), { hypertensive_retinopathy: 1 });
});

test("uncertainty: 可疑, 疑似, 考虑…可能, 不除外, 待排, 建议…排除, ?", (t) => {
  t.deepEqual(L("可疑视网膜前膜"), { erm: 0.5 });
  t.deepEqual(L("疑似视网膜分支动脉阻塞"), { rao: 0.5 });
  t.deepEqual(L("考虑视网膜色素变性可能"), { rp: 0.5 });
  t.deepEqual(L("不除外黄斑囊样水肿"), { macular_edema: 0.5 });
  t.deepEqual(L("CSC待排"), { csc: 0.5 });
  t.deepEqual(L("建议OCT检查以排除黄斑板层裂孔"), { macular_hole: 0.5 });
  t.deepEqual(L("建议FFA检查、排除视网膜静脉阻塞"), { rvo: 0.5 });
  t.deepEqual(L("视乳头水肿？建议神经内科就诊"), { disc_edema: 0.5 });
});

test("list numbers end a cue's scope", (t) => {
  t.deepEqual(L("结论：1、右眼可疑青光眼 2、左眼黄斑前膜"), { glaucoma: 0.5, erm: 1 });
  t.deepEqual(L("(1)可疑AMD(2)视网膜前膜"), { amd: 0.5, erm: 1 });
});

test("precedence across the report: asserted > suspected > negated", (t) => {
  t.deepEqual(L("右眼视网膜脱离。左眼可疑视网膜脱离。"), { retinal_detachment: 1 });
  t.deepEqual(L("左眼未见黄斑水肿；右眼黄斑水肿待排"), { macular_edema: 0.5 });
  t.deepEqual(L("右眼未见出血。左眼点状出血。"), { hemorrhage: 1 });
});

test("history is not a finding", (t) => {
  t.deepEqual(L("糖尿病史15年，眼底未见异常"), { normal: 1 });
  t.deepEqual(L("既往视网膜脱离，现视网膜平伏"), { normal: 1 });
  t.deepEqual(L("青光眼家族史"), {});
  t.deepEqual(L("右眼白内障术后，人工晶状体眼"), {});
  t.deepEqual(L("视网膜脱离复位术后，周边可见激光斑"), { laser_scars: 1 });
  const r = lab.label("青光眼家族史");
  t.is(r.evidence[0]?.status, "history");
  t.is(lab.label("白内障术后").evidence[0]?.status, "excluded");
});

test("numeric rule: C/D ≥ 0.6 is suspected glaucoma unless diagnosed or excluded; full-width digits", (t) => {
  t.deepEqual(L("视盘C/D 0.7"), { glaucoma: 0.5 });
  t.deepEqual(L("杯盘比约０．８，盘沿窄"), { glaucoma: 0.5 });
  t.deepEqual(L("Ｃ／Ｄ＝0.6"), { glaucoma: 0.5 });
  t.deepEqual(L("C/D 0.4~0.6"), { glaucoma: 0.5 });
  t.deepEqual(L("视盘界清，C/D 0.5"), { normal: 1 });
  t.deepEqual(L("C/D=0.9，诊断：原发性闭角型青光眼"), { glaucoma: 1 });
  t.deepEqual(F("C/D 0.65，视野正常，已排除青光眼"), {});
  const ev = lab.label("视盘C/D 0.7").evidence.find((e) => e.source === "numeric");
  t.is(ev?.value, 0.7);
  t.is(ev?.text, "C/D 0.7");
});

test("laterality: report eye, per-eye labels, evidence eye", (t) => {
  const r = lab.label("左眼：黄斑前膜。\n右眼：眼底未见明显异常。");
  t.is(r.eye, "both");
  t.deepEqual(r.labels, { erm: 1 });
  t.deepEqual(r.byEye.left, { erm: 1 });
  t.deepEqual(r.byEye.right, { normal: 1 });
  t.is(r.evidence.find((e) => e.label === "erm")?.eye, "left");
  t.is(lab.label("OD 黄斑裂孔").eye, "right");
  t.is(lab.label("os: 有髓神经纤维").eye, "left");
  t.is(lab.label("双眼豹纹状眼底").eye, "both");
  t.is(lab.label("ＯＵ 豹纹状眼底").eye, "both");
  t.is(lab.label("视乳头水肿（双眼）").eye, "both");
  t.is(lab.label("豹纹状眼底").eye, null);
  const s = lab.label("OD: C/D 0.3。OS: C/D 0.8。");
  t.deepEqual(s.byEye.left, { glaucoma: 0.5 });
  t.deepEqual(s.byEye.right, { normal: 1 }, "an eye described with nothing found is normal");
});

test("normal: only when nothing else, and stated or described", (t) => {
  t.deepEqual(L("眼底未见明显异常"), { normal: 1 });
  t.deepEqual(L("视盘界清，色淡红，黄斑中心凹反光可见"), { normal: 1 });
  t.deepEqual(L("正常眼底，右眼黄斑前膜"), { erm: 1 });
  t.deepEqual(L("眼底大致正常，可疑青光眼"), { glaucoma: 0.5 });
  const r = lab.label("患者视物模糊");
  t.deepEqual(r.labels, {});
  t.true(r.warnings.some((w) => /no finding/.test(w)));
  t.deepEqual(L("未见出血、渗出及新生血管"), { normal: 1 }, "a fundus found without findings is normal");
});

test("evidence: spans point into the original text, with status and cue", (t) => {
  const text = "ＯＤ：未见新生血管，可疑微动脉瘤；糖网（背景期）";
  const r = lab.label(text);
  t.deepEqual(r.labels, { dr: 1, microaneurysm: 0.5 });
  for (const e of r.evidence) if (e.start >= 0) t.is(text.slice(e.start, e.end), e.text);
  const nv = r.evidence.find((e) => e.label === "neovascularization");
  t.is(nv?.status, "negated");
  t.is(nv?.cue?.text, "未见");
  t.is(nv?.cue?.type, "negation");
  const ma = r.evidence.find((e) => e.label === "microaneurysm");
  t.is(ma?.status, "suspected");
  t.is(ma?.cue?.text, "可疑");
  t.is(ma?.eye, "right");
  t.deepEqual(lab.label(text, { evidence: false }).evidence, []);
});

test("uncertainty policy: keep, positive, negative, drop", (t) => {
  const text = "黄斑前膜；可疑黄斑裂孔";
  t.deepEqual(lab.label(text).labels, { erm: 1, macular_hole: 0.5 });
  t.deepEqual(lab.label(text, { uncertainty: "positive" }).labels, { erm: 1, macular_hole: 1 });
  t.deepEqual(lab.label(text, { uncertainty: "negative" }).labels, { erm: 1, macular_hole: 0 });
  const d = lab.label(text, { uncertainty: "drop" });
  t.deepEqual(d.labels, { erm: 1 });
  t.deepEqual(d.ignored, ["macular_hole"]);
  const v = toLabelVector(d.labels, d.ignored);
  t.is(v[LABEL_IDS.indexOf("erm")], 1);
  t.true(Number.isNaN(v[LABEL_IDS.indexOf("macular_hole")]));
  t.is(v[0], 0);
});

test("bad input: empty or non-text reports give an empty map and a warning, never a throw", (t) => {
  for (const bad of ["", "   \n", null, undefined, 42, {}, ["眼底未见异常"]]) {
    const r = labelReport(bad);
    t.deepEqual(r.labels, {});
    t.is(r.eye, null);
    t.is(r.warnings.length, 1);
  }
  t.notThrows(() => labelReport("\u0000\uFFFD😀（（（，，，"));
  t.notThrows(() => labelReport("视".repeat(100_000)));
});
