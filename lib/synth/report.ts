/**
 * Chinese colour-fundus reports for synthetic cases, from varied templates: findings with
 * assertions, negations ("未见…", "无…") and suspicions ("…待排", "可疑…", "不除外…"), distractors
 * (history of diabetes, normal structures), an eye, and an impression. The gold labels are what
 * the report says, by construction, under the taxonomy's rules (../shared/labels/TAXONOMY.md).
 */
import type { Eye, LabelMap } from "../labels/index.js";
import type { Rng } from "../data/rng.js";

/** The findings the synthetic images can show. */
export const SYNTH_FINDINGS = [
  "hemorrhage",
  "hard_exudate",
  "cotton_wool_spot",
  "drusen",
  "glaucoma",
  "tessellation",
  "laser_scars",
  "optic_atrophy",
  "media_opacity",
] as const;
export type SynthFinding = (typeof SYNTH_FINDINGS)[number];

/** How the report states a finding the image shows. */
export type Statement = "asserted" | "suspected";

export interface ReportPlan {
  eye: Eye;
  /** Findings present in the image, and how the report states each. */
  present: Partial<Record<SynthFinding, Statement>>;
  /** Diabetic retinopathy named in the impression (only with haemorrhages and exudates). */
  dr: Statement | null;
  /** Cup-to-disc ratio written in the report. */
  cdr: number;
}

const EYE_ZH: Record<Eye, string> = { right: "右眼", left: "左眼", both: "双眼" };

type Phrase = (r: Rng, p: ReportPlan) => string;

const ASSERT: Record<SynthFinding, Phrase[]> = {
  hemorrhage: [
    () => "视网膜可见散在点片状出血",
    () => "后极部视网膜可见多处出血斑",
    () => "视网膜散在火焰状出血",
    () => "可见视网膜出血",
  ],
  hard_exudate: [() => "黄斑区可见硬性渗出", () => "后极部可见黄白色硬性渗出", () => "视网膜散在硬性渗出"],
  cotton_wool_spot: [() => "血管弓附近可见棉絮斑", () => "视网膜可见数个棉絮斑", () => "可见软性渗出"],
  drusen: [() => "黄斑区可见多个玻璃膜疣", () => "后极部散在玻璃膜疣", () => "黄斑周围可见黄白色玻璃膜疣"],
  glaucoma: [(r, p) => `视盘杯盘比扩大，C/D约${p.cdr.toFixed(1)}`, (r, p) => `视杯扩大，C/D=${p.cdr.toFixed(1)}`],
  tessellation: [() => "眼底呈豹纹状改变", () => "可见豹纹状眼底", () => "脉络膜血管透见，呈豹纹状"],
  laser_scars: [() => "周边视网膜可见激光斑", () => "中周部可见散在激光光凝斑及激光斑", () => "视网膜可见陈旧激光斑"],
  optic_atrophy: [() => "视盘色苍白", () => "视盘边界清，色苍白"],
  media_opacity: [() => "屈光间质混浊，眼底窥不清", () => "屈光间质混浊，眼底模糊"],
};

/** Suspicion phrases (gold 0.5). */
const SUSPECT: Record<SynthFinding, Phrase[]> = {
  hemorrhage: [() => "视网膜可疑出血", () => "视网膜出血待排"],
  hard_exudate: [() => "黄斑区可疑硬性渗出", () => "后极部疑似硬性渗出"],
  cotton_wool_spot: [() => "可疑棉絮斑", () => "视网膜疑似棉絮斑"],
  drusen: [() => "黄斑区可疑玻璃膜疣", () => "黄斑区玻璃膜疣待排"],
  glaucoma: [(r, p) => `C/D约${p.cdr.toFixed(1)}`, (r, p) => `视杯略大，C/D约${p.cdr.toFixed(1)}`],
  tessellation: [() => "可疑豹纹状眼底"],
  laser_scars: [() => "周边视网膜可疑激光斑"],
  optic_atrophy: [() => "视盘色淡，可疑视神经萎缩", () => "视神经萎缩待排"],
  media_opacity: [() => "屈光间质混浊待排"],
};

/** Negations of findings the image does not show. */
const NEGATE: Partial<Record<SynthFinding, string[]>> = {
  hemorrhage: ["未见出血", "视网膜未见明显出血", "无出血"],
  hard_exudate: ["未见硬性渗出", "无明显硬性渗出"],
  cotton_wool_spot: ["未见棉絮斑"],
  drusen: ["黄斑区未见玻璃膜疣", "未见明显玻璃膜疣"],
  laser_scars: ["未见激光斑"],
};

/** Impression terms (diagnoses) for findings, asserted / suspected. */
const IMPRESSION: Partial<Record<SynthFinding, { assert: string[]; suspect: string[] }>> = {
  glaucoma: { assert: ["青光眼", "青光眼性视神经病变"], suspect: ["青光眼待排", "可疑青光眼", "青光眼？"] },
  optic_atrophy: { assert: ["视神经萎缩"], suspect: ["视神经萎缩待排"] },
  tessellation: { assert: ["豹纹状眼底"], suspect: [] },
  media_opacity: { assert: ["屈光间质混浊"], suspect: [] },
};

const NORMAL_DESCRIPTIONS = ["视盘界清色可", "视盘边界清，色淡红", "视网膜平伏", "黄斑中心凹反光可见", "血管走行自然"];

/** The taxonomy labels a plan's report states. */
export function goldLabels(p: ReportPlan): LabelMap {
  const m: LabelMap = {};
  for (const [f, st] of Object.entries(p.present) as [SynthFinding, Statement][]) m[f] = st === "asserted" ? 1 : 0.5;
  if (p.dr) m.dr = p.dr === "asserted" ? 1 : 0.5;
  if (Object.keys(m).length === 0) m.normal = 1;
  return m;
}

/** Writes the report for a plan. */
export function writeReport(r: Rng, p: ReportPlan): string {
  const findings: string[] = [];
  const present = Object.entries(p.present) as [SynthFinding, Statement][];
  const impression: string[] = [];
  for (const [f, st] of present) {
    const list = st === "asserted" ? ASSERT[f] : SUSPECT[f];
    findings.push(r.pick(list)(r, p));
    const imp = IMPRESSION[f];
    if (imp) {
      const opts = st === "asserted" ? imp.assert : imp.suspect;
      // Glaucoma suspected through the C/D ratio alone needs no impression line.
      if (opts.length > 0 && (st === "asserted" || f !== "glaucoma" || r.chance(0.6))) impression.push(r.pick(opts));
    }
  }
  const discLine = !p.present.glaucoma && !p.present.optic_atrophy && r.chance(0.6);
  if (discLine)
    findings.unshift(`${r.pick(["视盘界清色可", "视盘边界清，色淡红", "视盘界清"])}，C/D约${p.cdr.toFixed(1)}`);
  // Negations of absent findings, as distractors.
  const absent = (Object.keys(NEGATE) as SynthFinding[]).filter((f) => !p.present[f]);
  const nNeg = Math.min(absent.length, r.int(0, 2));
  for (let k = 0; k < nNeg; k++) {
    const i = r.int(0, absent.length - 1);
    const f = absent.splice(i, 1)[0]!;
    findings.push(r.pick(NEGATE[f]!));
  }
  if (p.dr)
    impression.unshift(
      p.dr === "asserted"
        ? r.pick(["糖尿病视网膜病变（非增殖期）", "非增殖性糖尿病视网膜病变", "糖尿病视网膜病变"])
        : r.pick(["糖尿病视网膜病变待排", "可疑糖尿病视网膜病变"]),
    );
  const normal = present.length === 0 && !p.dr;
  if (normal) {
    const desc = NORMAL_DESCRIPTIONS.filter((d) => !discLine || !d.startsWith("视盘"));
    for (let k = 0, n = r.int(1, 3); k < n && desc.length > 0; k++)
      findings.push(desc.splice(r.int(0, desc.length - 1), 1)[0]!);
    impression.push(r.pick(["眼底未见明显异常", "正常眼底", "眼底检查未见明显异常"]));
  }
  // Shuffle the findings a little: templates vary in order.
  for (let i = findings.length - 1; i > 0; i--) {
    if (r.chance(0.3)) {
      const j = r.int(0, i);
      [findings[i], findings[j]] = [findings[j]!, findings[i]!];
    }
  }
  const eye = EYE_ZH[p.eye];
  const history = r.chance(0.25)
    ? r.pick(["病史：糖尿病史5年。", "主诉：视物模糊1月。", "病史：高血压病史。"]) + "\n"
    : "";
  const style = r.int(0, 2);
  const body = findings.join("，");
  const imp = impression.length > 0 ? impression.join("；") : normal ? "眼底未见明显异常" : "";
  if (style === 0) return `${history}${eye}眼底彩照所见：${body}。${imp ? `\n诊断：${eye}${imp}。` : ""}`;
  if (style === 1) return `${history}所见：${eye}${body}。${imp ? `\n印象：${imp}。` : ""}`;
  return `${history}${eye}：${body}。${imp ? `结论：${imp}。` : ""}`;
}
