/**
 * The broadened rules (issue #18), one short case per class: abbreviations, variant names,
 * normalisation, negation/uncertainty/absence cues with clause and list scope, normals worded
 * without 正常 or 未见异常, per-eye results, signs, and the evidence that explains each label.
 * The cases are written for these tests; none is taken from a gold set.
 */
import test from "ava";
import { Labeler, type LabelId, type LabelMap } from "../lib/labels/index.js";

const lab = new Labeler();
const L = (text: string): LabelMap => lab.label(text).labels;
/** The findings only (a report that only negates findings also states a normal fundus). */
const F = (text: string): LabelMap => {
  const { normal: _normal, ...rest } = lab.label(text).labels;
  return rest;
};

const ABBREVIATIONS: [string, LabelMap][] = [
  ["DR", { dr: 1 }],
  ["NPDR", { dr: 1 }],
  ["PDR", { dr: 1, pdr: 1 }],
  ["AMD", { amd: 1 }],
  ["CNV", { neovascularization: 1 }],
  ["BRVO", { rvo: 1 }],
  ["CRVO", { rvo: 1 }],
  ["CRAO", { rao: 1 }],
  ["BRAO", { rao: 1 }],
  ["ERM", { erm: 1 }],
  ["MH", { macular_hole: 1 }],
  ["RD", { retinal_detachment: 1 }],
  ["CSC", { csc: 1 }],
  ["RP", { rp: 1 }],
  ["PPA", { peripapillary_atrophy: 1 }],
  ["VH", { vitreous_hemorrhage: 1 }],
  ["PRP", { laser_scars: 1 }],
  ["ME", { macular_edema: 1 }],
  ["CME", { macular_edema: 1 }],
  ["DME", { dr: 1, macular_edema: 1 }],
];

test("abbreviations: alone, inside Chinese, in either case and full width; negated", (t) => {
  const fullWidth = (s: string): string => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0));
  for (const [abbr, want] of ABBREVIATIONS) {
    t.deepEqual(L(abbr), want, abbr);
    t.deepEqual(L(`诊断：右眼${abbr}，建议随访`), want, `${abbr} inside Chinese`);
    t.deepEqual(L(`OS ${abbr.toLowerCase()}`), want, `${abbr} lower case`);
    t.deepEqual(L(`印象：${fullWidth(abbr)}`), want, `${abbr} full width`);
    t.deepEqual(F(`未见${abbr}`), {}, `未见${abbr}`);
    t.deepEqual(F(`${abbr}（－）`), {}, `${abbr}（－）`);
    t.deepEqual(F(`no ${abbr}`), {}, `no ${abbr}`);
  }
});

test('"DR" and other short abbreviations do not fire inside longer tokens', (t) => {
  const rules = (text: string): string[] => lab.label(text).evidence.map((e) => e.rule);
  t.false(
    rules("诊断：PDR").some((r) => r.startsWith("dr.abbreviations")),
    "PDR names pdr; dr only by implication",
  );
  t.true(rules("诊断：NPDR").includes("dr.abbreviations[1] NPDR"));
  t.deepEqual(F("DRUSEN seen at the macula"), { drusen: 1 });
  t.deepEqual(F("see address card"), {});
  t.deepEqual(F("Hydrops, 3rd visit"), {});
  t.deepEqual(F("后极部RPE改变"), {}, "RP inside RPE");
  t.deepEqual(F("MEWDS待排"), {}, "ME inside MEWDS");
  t.deepEqual(F("macular star"), {}, "MA inside macular");
});

test("variant names: disc names, inserted location characters, 型/性 suffixes, old names", (t) => {
  for (const disc of ["视盘", "视乳头", "视神经乳头", "视神经盘"]) t.deepEqual(L(`${disc}水肿`), { disc_edema: 1 });
  t.deepEqual(L("左眼黄斑部前膜"), { erm: 1 });
  t.deepEqual(L("黄斑区视网膜前膜"), { erm: 1 });
  t.deepEqual(L("黄斑部裂孔"), { macular_hole: 1 });
  t.deepEqual(L("黄斑区全层裂孔"), { macular_hole: 1 });
  t.deepEqual(L("玻璃体腔积血"), { vitreous_hemorrhage: 1 });
  t.deepEqual(L("增殖型糖尿病视网膜病变"), { dr: 1, pdr: 1 });
  t.deepEqual(L("增生性糖网"), { dr: 1, pdr: 1 });
  t.deepEqual(L("非增殖型糖尿病视网膜病变"), { dr: 1 });
  t.deepEqual(L("轻度非增殖期糖网"), { dr: 1 }, "非 + a pdr term is non-proliferative");
  t.deepEqual(L("渗出型老年性黄斑变性"), { amd: 1 });
  t.deepEqual(L("糖尿病视网膜病变"), L("糖尿病性视网膜病变"));
  t.deepEqual(L("视网膜静脉分支阻塞"), { rvo: 1 });
  t.deepEqual(L("视网膜中央静脉闭塞"), { rvo: 1 });
  t.deepEqual(L("视网膜脱落"), { retinal_detachment: 1 });
  t.deepEqual(L("晶状体明显混浊"), { media_opacity: 1 });
});

test("normalisation: traditional characters, variant forms, full-width forms; evidence stays on the original", (t) => {
  t.deepEqual(L("左眼視網膜脫離"), { retinal_detachment: 1 });
  t.deepEqual(L("黃斑區裂孔"), { macular_hole: 1 });
  t.deepEqual(L("屈光间质浑浊"), { media_opacity: 1 });
  t.deepEqual(L("ＤＲ（－），ＤＭＥ（－）"), { normal: 1 });
  const text = "雙眼眼底檢查：沒有糖尿病視網膜病變表現，DR Ⅱ期待排";
  const r = lab.label(text);
  t.deepEqual(r.labels, { dr: 0.5 });
  for (const e of r.evidence) if (e.start >= 0) t.is(text.slice(e.start, e.end), e.text);
});

test("negation: verbs of seeing or finding, 'any', result markers, finding: result", (t) => {
  for (const cue of ["未见", "未发现", "未查见", "没有看到", "看不出", "未观察到", "未检出", "无明显"])
    t.deepEqual(F(`${cue}视网膜出血`), {}, cue);
  t.deepEqual(F("未发现任何出血、渗出或新生血管"), {});
  for (const marker of ["阴性", "(-)", "（－）", "－", " -"]) t.deepEqual(F(`新生血管${marker}`), {}, marker);
  t.deepEqual(F("视网膜脱离：无"), {});
  t.deepEqual(F("【出血】阴性"), {});
  t.deepEqual(F("DR筛查结果：双眼均无"), {});
  t.deepEqual(F("DR分级：无明显视网膜病变"), {});
  t.deepEqual(F("DR：0级"), {});
  t.deepEqual(L("黄斑前膜未见明显进展"), { erm: 1 }, "未见 mid-clause does not negate what precedes it");
});

test("negation over lists: 及/和/、/或, collective negatives, an item that escapes", (t) => {
  t.deepEqual(F("未见出血、硬性渗出及棉絮斑"), {});
  t.deepEqual(F("无出血或微血管瘤"), {});
  t.deepEqual(F("出血、渗出及新生血管均未见"), {});
  t.deepEqual(F("出血、棉絮斑均阴性"), {});
  t.deepEqual(F("出血，渗出，新生血管均未见"), {}, "a comma list closed by a collective negative");
  t.deepEqual(F("No hemorrhage, exudate or NV seen"), {}, "an English list");
  t.deepEqual(F("未见出血、棉絮斑及新生血管，但可见数个微血管瘤"), { microaneurysm: 1 });
  t.deepEqual(F("未见出血及渗出而见少许微血管瘤"), { microaneurysm: 1 });
  t.deepEqual(F("除微血管瘤外未见出血"), { microaneurysm: 1 });
  t.deepEqual(L("无DR，豹纹状眼底"), { tessellation: 1 }, "a negative does not carry over a comma");
  t.deepEqual(L("No DR, mild AMD"), { amd: 1 });
  t.deepEqual(L("黄斑前膜余未见明显异常"), { erm: 1 }, "余 ends the finding's scope");
  t.deepEqual(F("非DR改变"), {}, "非 negates the term right after it");
  t.deepEqual(L("非缺血型CRVO"), { rvo: 1 }, "… and nothing further");
});

test("uncertainty cues give 0.5; causes, confirmations and 原因待查 do not hedge the finding", (t) => {
  const hedged = [
    "视网膜前膜待排",
    "视网膜前膜待查",
    "可疑视网膜前膜",
    "视网膜前膜可疑",
    "疑视网膜前膜",
    "疑似视网膜前膜",
    "考虑视网膜前膜",
    "不除外视网膜前膜",
    "不能排除视网膜前膜",
    "视网膜前膜不能除外",
    "视网膜前膜可能",
    "需警惕视网膜前膜",
    "似有视网膜前膜",
    "视网膜前膜？",
    "? ERM",
    "r/o ERM",
    "ERM suspect",
    "是否有视网膜前膜",
    "检查有无视网膜前膜",
  ];
  for (const text of hedged) t.deepEqual(L(text), { erm: 0.5 }, text);
  t.deepEqual(L("左眼视盘水肿原因待查"), { disc_edema: 1 });
  t.deepEqual(L("疑PDR→已核实为PDR"), { dr: 1, pdr: 1 });
  t.deepEqual(L("考虑视盘炎症所致的视盘水肿"), { disc_edema: 1 });
  t.deepEqual(L("既往确诊青光眼"), { glaucoma: 1 }, "确诊 stops 既往");
});

test("history and plans: a past disease is not a finding, a past treatment left scars, a planned one did not", (t) => {
  t.deepEqual(F("既往视网膜脱离"), {});
  t.deepEqual(F("黄斑前膜剥除术后"), {});
  t.deepEqual(L("曾行激光光凝"), { laser_scars: 1 });
  t.deepEqual(L("s/p PRP"), { laser_scars: 1 });
  t.deepEqual(L("曾因糖尿病视网膜病变行全视网膜光凝"), { dr: 1, laser_scars: 1 });
  t.deepEqual(L("PDR，建议PRP"), { dr: 1, pdr: 1 });
  t.deepEqual(F("建议激光光凝治疗"), {});
});

test("normal reports worded without 正常 or 未见异常", (t) => {
  for (const text of [
    "眼底无殊",
    "双眼眼底未见特殊",
    "眼底检查在正常范围内",
    "眼底大致如常",
    "无阳性发现",
    "未见病理改变",
    "未见器质性病变",
    "视盘、黄斑、血管均无特殊",
    "OU WNL",
    "NAD",
    "fundus unremarkable",
    "无DR",
    "DR(－)",
    "OD：眼底(-)",
  ])
    t.deepEqual(L(text), { normal: 1 }, text);
  t.deepEqual(L("眼底无殊，右眼黄斑前膜"), { erm: 1 }, "normal only when nothing else is found");
});

test("per eye: one eye normal, the other not — per-eye results and no global normal", (t) => {
  const cases: [string, LabelMap, LabelMap][] = [
    ["右眼：黄斑前膜。左眼：眼底无殊。", { erm: 1 }, { normal: 1 }],
    ["OD 黄斑前膜 OS 未见异常", { erm: 1 }, { normal: 1 }],
    ["R 中度NPDR，点状出血；L 无DR", { dr: 1, hemorrhage: 1 }, { normal: 1 }],
    ["R: 视盘下缘有髓神经纤维 / L: (-)", { myelinated_fibers: 1 }, { normal: 1 }],
    ["右眼视网膜脱离。左眼周边视网膜未见变性", { retinal_detachment: 1 }, { normal: 1 }],
  ];
  for (const [text, right, left] of cases) {
    const r = lab.label(text);
    t.deepEqual(r.byEye.right, right, text);
    t.deepEqual(r.byEye.left, left, text);
    t.is(r.labels.normal, undefined, text);
    t.is(r.eye, "both", text);
  }
  const absent = lab.label("左眼：黄斑裂孔，转诊。右眼未拍。");
  t.is(absent.eye, "left", "an eye not examined does not count");
  t.deepEqual(absent.byEye.right, {});
  t.is(lab.label("右眼视盘颜色比左眼淡").eye, "right", "a comparison does not describe the other eye");
  const loose = lab.label("右眼：黄斑区视网膜表面皱褶。左眼：未见异常。诊断：黄斑前膜");
  t.deepEqual(loose.byEye.right, { erm: 1 }, "a conclusion without an eye goes where the label was seen");
  t.deepEqual(loose.byEye.left, { normal: 1 });
});

test("signs imply a label the report does not name; a named mention outranks a sign", (t) => {
  t.deepEqual(L("周边部视网膜可见骨细胞样色素沉着"), { rp: 1 });
  t.deepEqual(L("周边部视网膜可见骨细胞样色素沉着。诊断：视网膜色素变性待排"), { rp: 0.5 });
  t.deepEqual(L("视盘颞侧色淡"), { optic_atrophy: 1 });
  t.deepEqual(L("视盘颞侧色淡。诊断：视神经萎缩待排"), { optic_atrophy: 0.5 });
  t.deepEqual(L("视盘色苍白。诊断：视神经萎缩待排"), { optic_atrophy: 1 }, "a stated pale disc names the label");
  t.deepEqual(L("视盘明显隆起，边界模糊。诊断：视盘水肿？"), { disc_edema: 1 }, "a stated swollen disc names it");
  t.deepEqual(F("视盘边界模糊"), {}, "a blurred margin alone is not disc edema");
  t.deepEqual(L("视盘颞侧弧形斑"), { peripapillary_atrophy: 1 });
  t.deepEqual(L("视盘颞侧可见白色弧形萎缩区"), { peripapillary_atrophy: 1 });
  t.deepEqual(L("樱桃红斑"), { rao: 1 });
  t.deepEqual(L("地图样萎缩"), { chorioretinal_atrophy: 1 }, "geographic atrophy is AMD only when AMD is named");
});

test("--explain: each label's deciding rule, span and cue", (t) => {
  const text = "OD：视盘颞侧色淡，未见出血。诊断：右眼视神经萎缩待排";
  const r = lab.label(text);
  t.deepEqual(r.labels, { optic_atrophy: 0.5 });
  const decisive = r.evidence.filter((e) => e.decisive);
  t.is(decisive.length, 1);
  const d = decisive[0]!;
  t.is(d.label, "optic_atrophy");
  t.is(d.rule, "optic_atrophy.synonyms[0] 视神经萎缩");
  t.is(text.slice(d.start, d.end), "视神经萎缩");
  t.is(d.cue?.rule, "cues.uncertainty.post[0] 待排");
  t.is(d.cue?.type, "uncertainty");
  const sign = r.evidence.find((e) => e.source === "sign");
  t.is(sign?.rule.startsWith("optic_atrophy.signPatterns"), true);
  t.is(sign?.decisive, undefined, "the sign did not decide: the label is named");
  const neg = r.evidence.find((e) => e.label === ("hemorrhage" as LabelId));
  t.is(neg?.status, "negated");
  t.is(neg?.cue?.rule, "cues.negation.pre[0] 未见");
});
