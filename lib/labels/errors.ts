/**
 * Error analysis for `vilref labels eval --errors`: every disagreement with the gold labels,
 * grouped by label and by the cue or term nearest to it, so that someone adapting the rules to a
 * hospital's phrasing sees what to add — a synonym for text no rule matched, a cue for a finding
 * asserted where the gold negates or doubts it.
 *
 * - missed (gold has the label, the labeler does not): the labeler's own evidence for the label
 *   when it has any (negated by 未见, history by 既往, excluded, planned); otherwise the rule term
 *   sharing the longest run of characters with the report, and the report text around that run.
 * - wrong value (1 vs 0.5) and false positive: the rule and cue that decided the label; each case
 *   shows the text around the term, where a missing negation or uncertainty cue would be.
 */
import type { Evidence, LabelResult } from "./engine.js";
import type { LabelId, LabelMap } from "./taxonomy.js";
import type { NormalizedText } from "./normalize.js";

export type ErrorKind = "missed" | "wrong value" | "false positive";

export interface ErrorCase {
  id: string;
  gold: 1 | 0.5 | undefined;
  pred: 1 | 0.5 | 0 | undefined;
  /** The report text around the span the group is about. */
  context: string;
}

export interface ErrorGroup {
  label: LabelId;
  kind: ErrorKind;
  /**
   * What the group has in common: `negated by cue 未见 (cues.negation.pre[0] 未见)`,
   * `no rule matched; nearest rule term 黄斑前膜`.
   */
  key: string;
  cases: ErrorCase[];
}

export interface ErrorInput {
  id: string;
  text: string;
  gold: LabelMap;
  result: LabelResult;
}

/** What the analysis needs from a labeler: normalisation and the rule terms of each label. */
export interface ErrorVocabulary {
  normalize(text: string): NormalizedText;
  /** Normalised rule terms (synonyms, abbreviations, signs) of a label, as written in the rules. */
  terms(label: LabelId): readonly string[];
}

const CONTEXT = 8;

function around(text: string, start: number, end: number): string {
  const a = Math.max(0, start - CONTEXT);
  const b = Math.min(text.length, end + CONTEXT);
  return (a > 0 ? "…" : "") + text.slice(a, b).replace(/\s+/g, " ") + (b < text.length ? "…" : "");
}

/** Longest common substring of a and b: [length, start in b]. */
function longestCommon(a: string, b: string): [number, number] {
  let best = 0;
  let at = -1;
  let prev = new Uint16Array(b.length + 1);
  let cur = new Uint16Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    const ca = a.charCodeAt(i - 1);
    for (let j = 1; j <= b.length; j++) {
      const v = ca === b.charCodeAt(j - 1) ? (prev[j - 1] as number) + 1 : 0;
      cur[j] = v;
      if (v > best) {
        best = v;
        at = j - v;
      }
    }
    [prev, cur] = [cur, prev];
  }
  return [best, at];
}

/** The rule term of `label` closest to some span of the report, and that span. */
function nearestTerm(
  vocab: ErrorVocabulary,
  label: LabelId,
  text: string,
): { term: string; start: number; end: number } | null {
  const nt = vocab.normalize(text);
  let best: { term: string; len: number; at: number } | null = null;
  for (const term of vocab.terms(label)) {
    const [len, at] = longestCommon(term, nt.text);
    // A shared run of 2+ characters (or the whole of a short term) is worth showing.
    if (len < Math.min(2, term.length) || (best !== null && len <= best.len)) continue;
    best = { term, len, at };
  }
  if (best === null) return null;
  const s = nt.start ? (nt.start[best.at] as number) : best.at;
  const e = nt.end ? (nt.end[best.at + best.len - 1] as number) : best.at + best.len;
  return { term: best.term, start: s, end: e };
}

function cueKey(ev: Evidence): string {
  const how = ev.status === "asserted" ? "asserted" : ev.status;
  if (ev.cue) return `${how} by cue ${ev.cue.text} (${ev.cue.rule})`;
  return `${how} by ${ev.source} ${ev.text} (${ev.rule})`;
}

function decisiveFor(r: LabelResult, label: LabelId): Evidence | undefined {
  return r.evidence.find((e) => e.label === label && e.decisive) ?? r.evidence.find((e) => e.label === label);
}

function missedKey(input: ErrorInput, label: LabelId, vocab: ErrorVocabulary): [string, string] {
  const evs = input.result.evidence.filter((e) => e.label === label && e.start >= 0);
  const ev = evs.find((e) => e.cue) ?? evs[0];
  if (ev) return [cueKey(ev), around(input.text, ev.cue ? Math.min(ev.cue.start, ev.start) : ev.start, ev.end)];
  if (label !== "normal" || Object.keys(input.result.labels).length === 0) {
    const near = nearestTerm(vocab, label, input.text);
    if (near) return [`no rule matched; nearest rule term ${near.term}`, around(input.text, near.start, near.end)];
    return ["no rule matched; no rule term shares 2 characters with the report", around(input.text, 0, 0)];
  }
  const others = Object.keys(input.result.labels).join(", ");
  return [`other labels predicted (${others})`, around(input.text, 0, 0)];
}

function assertedKey(input: ErrorInput, label: LabelId): [string, string] {
  const ev = decisiveFor(input.result, label);
  if (!ev || ev.start < 0) return [ev ? `${ev.source} from ${ev.from ?? ev.rule}` : "no evidence", ""];
  if (ev.cue) return [cueKey(ev), around(input.text, Math.min(ev.cue.start, ev.start), Math.max(ev.cue.end, ev.end))];
  // No cue qualified it: the context shows where a missing negation or doubt would be.
  return [`${ev.status}, no cue: ${ev.source} ${ev.text} (${ev.rule})`, around(input.text, ev.start, ev.end)];
}

/** Group every disagreement between predictions and gold labels. */
export function errorGroups(inputs: readonly ErrorInput[], vocab: ErrorVocabulary): ErrorGroup[] {
  const groups = new Map<string, ErrorGroup>();
  for (const input of inputs) {
    const pred = input.result.labels;
    const ids = new Set([...Object.keys(input.gold), ...Object.keys(pred)] as LabelId[]);
    for (const label of ids) {
      const g = input.gold[label] as 1 | 0.5 | undefined;
      const p = pred[label] as 1 | 0.5 | 0 | undefined;
      const gv = g === 1 || g === 0.5 ? g : undefined;
      const pv = p === 1 || p === 0.5 ? p : undefined;
      if (gv === pv) continue;
      const kind: ErrorKind = pv === undefined ? "missed" : gv === undefined ? "false positive" : "wrong value";
      const [key, context] = kind === "missed" ? missedKey(input, label, vocab) : assertedKey(input, label);
      const k = `${label}\u0000${kind}\u0000${key}`;
      let grp = groups.get(k);
      if (!grp) groups.set(k, (grp = { label, kind, key, cases: [] }));
      grp.cases.push({ id: input.id, gold: gv, pred: p, context });
    }
  }
  return [...groups.values()].sort(
    (a, b) => a.label.localeCompare(b.label) || b.cases.length - a.cases.length || a.key.localeCompare(b.key),
  );
}

/** The grouped errors as text: one block per label, one line per group, with up to `examples` cases. */
export function formatErrors(groups: readonly ErrorGroup[], examples = 3): string {
  if (groups.length === 0) return "no errors";
  const out: string[] = [];
  const byLabel = new Map<LabelId, ErrorGroup[]>();
  for (const g of groups) byLabel.set(g.label, [...(byLabel.get(g.label) ?? []), g]);
  for (const [label, gs] of byLabel) {
    const count = (kind: ErrorKind): number =>
      gs.filter((g) => g.kind === kind).reduce((s, g) => s + g.cases.length, 0);
    const counts = `missed ${count("missed")}, wrong value ${count("wrong value")}`;
    out.push(`${label}: ${counts}, false positive ${count("false positive")}`);
    for (const g of gs) {
      out.push(`  ${g.kind} ×${g.cases.length}  ${g.key}`);
      for (const c of g.cases.slice(0, examples)) {
        out.push(`      ${c.id} (gold ${c.gold ?? "-"}, predicted ${c.pred ?? "-"}): ${c.context}`);
      }
      if (g.cases.length > examples) out.push(`      … and ${g.cases.length - examples} more`);
    }
  }
  return out.join("\n");
}
