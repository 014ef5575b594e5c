/**
 * Evaluation against gold labels: a label counts as correct for a report when the predicted value
 * equals the gold value (1 or 0.5). A wrong value is both a false positive and a false negative.
 */
import { LABEL_IDS, type Eye, type LabelId, type LabelMap } from "./taxonomy.js";

export interface LabelScore {
  label: LabelId;
  tp: number;
  fp: number;
  fn: number;
  support: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface EvalReport {
  reports: number;
  perLabel: LabelScore[];
  micro: { precision: number; recall: number; f1: number; tp: number; fp: number; fn: number };
  /** Mean F1 over labels with gold support or predictions. */
  macro: { precision: number; recall: number; f1: number; labels: number };
  /** Fraction of reports whose whole label map is right. */
  exactMatch: number;
  /** Fraction of reports with a gold eye whose predicted eye matches (null gold counts too). */
  eyeAccuracy: number;
}

export interface EvalPair {
  gold: LabelMap;
  pred: LabelMap;
  goldEye?: Eye | null;
  predEye?: Eye | null;
}

function prf(tp: number, fp: number, fn: number): { precision: number; recall: number; f1: number } {
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1 };
}

export function evaluate(pairs: readonly EvalPair[], labels: readonly LabelId[] = LABEL_IDS): EvalReport {
  const counts = new Map<LabelId, { tp: number; fp: number; fn: number; support: number }>();
  for (const id of labels) counts.set(id, { tp: 0, fp: 0, fn: 0, support: 0 });
  let exact = 0;
  let eyeOk = 0;
  let eyeN = 0;
  for (const p of pairs) {
    let allOk = true;
    for (const id of labels) {
      const c = counts.get(id);
      if (!c) continue;
      const g = p.gold[id];
      const q = p.pred[id];
      const gv = g === 1 || g === 0.5 ? g : undefined;
      const qv = q === 1 || q === 0.5 ? q : undefined;
      if (gv !== undefined) c.support++;
      if (gv !== undefined && qv === gv) c.tp++;
      else {
        if (qv !== undefined) c.fp++;
        if (gv !== undefined) c.fn++;
        if (qv !== undefined || gv !== undefined) allOk = false;
      }
    }
    if (allOk) exact++;
    if (p.goldEye !== undefined) {
      eyeN++;
      if ((p.predEye ?? null) === p.goldEye) eyeOk++;
    }
  }
  const perLabel: LabelScore[] = [];
  let TP = 0;
  let FP = 0;
  let FN = 0;
  let sumP = 0;
  let sumR = 0;
  let sumF = 0;
  let nMacro = 0;
  for (const id of labels) {
    const c = counts.get(id) as { tp: number; fp: number; fn: number; support: number };
    const s = prf(c.tp, c.fp, c.fn);
    perLabel.push({ label: id, ...c, ...s });
    TP += c.tp;
    FP += c.fp;
    FN += c.fn;
    if (c.support > 0 || c.fp > 0) {
      sumP += s.precision;
      sumR += s.recall;
      sumF += s.f1;
      nMacro++;
    }
  }
  return {
    reports: pairs.length,
    perLabel,
    micro: { ...prf(TP, FP, FN), tp: TP, fp: FP, fn: FN },
    macro: {
      precision: nMacro ? sumP / nMacro : 0,
      recall: nMacro ? sumR / nMacro : 0,
      f1: nMacro ? sumF / nMacro : 0,
      labels: nMacro,
    },
    exactMatch: pairs.length ? exact / pairs.length : 0,
    eyeAccuracy: eyeN ? eyeOk / eyeN : 0,
  };
}

/** A fixed-width text table of an evaluation (what `vilref labels eval` prints). */
export function formatEval(r: EvalReport): string {
  const pct = (x: number): string => x.toFixed(3);
  const rows = [["label", "support", "tp", "fp", "fn", "precision", "recall", "f1"]];
  for (const s of r.perLabel)
    rows.push([
      s.label,
      String(s.support),
      String(s.tp),
      String(s.fp),
      String(s.fn),
      pct(s.precision),
      pct(s.recall),
      pct(s.f1),
    ]);
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  const line = (row: string[]): string => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  const out = rows.map(line);
  out.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
  out.push("");
  out.push(`reports: ${r.reports}`);
  out.push(`micro  precision ${pct(r.micro.precision)}  recall ${pct(r.micro.recall)}  F1 ${pct(r.micro.f1)}`);
  const macro = `macro  precision ${pct(r.macro.precision)}  recall ${pct(r.macro.recall)}`;
  out.push(`${macro}  F1 ${pct(r.macro.f1)}  (${r.macro.labels} labels)`);
  out.push(`exact match ${pct(r.exactMatch)}  eye accuracy ${pct(r.eyeAccuracy)}`);
  return out.join("\n");
}
