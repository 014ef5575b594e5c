/**
 * The rule engine: Chinese fundus report -> labels, eye, and auditable evidence. `label()` runs
 * five steps over one state object:
 *
 * 1. match (match.ts): normalise (NFKC, lowercase, the rules' character table) and find every
 *    term and pattern; where matches overlap the longest wins.
 * 2. layout (scope.ts): cut the text into clauses, give each its eye and section.
 * 3. mentions (cues.ts): each mention's status from the cues of its clause and the list rules;
 *    per label, asserted (1) > suspected (0.5) > negated (absent) across the whole report.
 * 4. inferences: a described sign counts only for a label the report never names; the numeric
 *    rules (C/D ratio) add suspicions; mentions without an eye in a two-eye report go to the eyes
 *    where the label was seen (else both); implications (pdr -> dr) propagate.
 * 5. result: label maps (the exclusive label, normal, only when nothing else is set and the report
 *    states or describes a normal fundus — per eye likewise), the uncertainty policy (keep 0.5,
 *    treat as 1, treat as 0, drop, as CheXpert's labeler), and the evidence, with the item that
 *    decided each label marked.
 */
import { LABEL_IDS, type Eye, type LabelId, type LabelMap } from "./taxonomy.js";
import { loadRules, type Rules } from "./rules.js";
import { normalizeReport, originalSpan, type NormalizedText } from "./normalize.js";
import { compileRules, R_ABSENCE, R_NORMAL_DESC, type Compiled } from "./compile.js";
import { findMatches, type Match } from "./match.js";
import { eyeAt, layout, type Clause, type Layout } from "./scope.js";
import {
  carryCues,
  decide,
  eyeNegative,
  isMention,
  NORMAL_ROLES,
  postCue,
  preCue,
  type Carried,
  type Decision,
  type FoundCue,
  type Status,
} from "./cues.js";

export type { Status } from "./cues.js";

export type UncertaintyPolicy = "keep" | "positive" | "negative" | "drop";
export const UNCERTAINTY_POLICIES: readonly UncertaintyPolicy[] = ["keep", "positive", "negative", "drop"];

export interface Cue {
  /** What the cue does. */
  type: "negation" | "uncertainty" | "history" | "positive" | "plan";
  /** The cue as written in the report, and its offsets there. */
  text: string;
  start: number;
  end: number;
  /** The cue list entry that matched (`cues.negation.pre[0] 未见`). */
  rule: string;
}

export interface Evidence {
  label: LabelId;
  status: Status;
  /**
   * term: a synonym or abbreviation; pattern: a regular expression; sign: a described sign;
   * numeric: a measured value; implied: another label; normal: a normal statement or description.
   */
  source: "term" | "pattern" | "sign" | "numeric" | "implied" | "normal";
  /** The matched span, as written, and its UTF-16 offsets in the report. */
  text: string;
  start: number;
  end: number;
  /** The rule that matched: `<label>.<list>[i] <term as written in the rules>`, `numeric[0] …`. */
  rule: string;
  /** The eye the span's section or clause refers to (null when the report does not say). */
  eye: Eye | null;
  /** The report section it appears in (findings, impression, history) when headed. */
  section: string | null;
  cue?: Cue;
  /** For implied evidence: the label it follows from. For numeric evidence: the value read. */
  from?: LabelId;
  value?: number;
  /** Set on the one item per label that decided the label's value. */
  decisive?: true;
}

export interface LabelResult {
  labels: LabelMap;
  eye: Eye | null;
  /** The labels per eye (evidence with no eye goes to the eyes where the label was seen, else both). */
  byEye: { left: LabelMap; right: LabelMap };
  evidence: Evidence[];
  /** Labels dropped by the "drop" uncertainty policy (mask them out of a loss). */
  ignored: LabelId[];
  warnings: string[];
}

export interface LabelOptions {
  uncertainty?: UncertaintyPolicy;
  /** Collect evidence (default true). Turning it off is faster for bulk labelling. */
  evidence?: boolean;
}

/** Per-label ranks: 0 none, 1 negated/history/excluded/planned only, 2 suspected, 3 asserted. */
interface Ranks {
  all: Int8Array;
  left: Int8Array;
  right: Int8Array;
  /** Mentions with no eye in a two-eye report, placed in step 4. */
  loose: Int8Array;
  /** The evidence that last raised `all` (when evidence is collected). */
  by: (Evidence | null)[];
}

interface LabelState {
  report: string;
  nt: NormalizedText;
  t: string;
  want: boolean;
  items: Match[];
  lay: Layout;
  named: Ranks;
  signs: Ranks;
  explicitNeg: Uint8Array;
  evidence: Evidence[];
  normal: { first: Evidence | null; left: boolean; right: boolean };
}

function ranks(n: number): Ranks {
  return {
    all: new Int8Array(n),
    left: new Int8Array(n),
    right: new Int8Array(n),
    loose: new Int8Array(n),
    by: new Array<Evidence | null>(n).fill(null),
  };
}

function clearRanks(r: Ranks, want: boolean): void {
  r.all.fill(0);
  r.left.fill(0);
  r.right.fill(0);
  r.loose.fill(0);
  if (want) r.by.fill(null);
}

const NOT_BLANK = /\S/;

/** Evidence in text order; implied evidence (no span) last. */
function byPosition(a: Evidence, b: Evidence): number {
  return a.start < 0 ? 1 : b.start < 0 ? -1 : a.start - b.start;
}

function anyIncluded(t: string, words: readonly string[]): boolean {
  for (const w of words) if (t.includes(w)) return true;
  return false;
}

function rankOf(status: Status): number {
  return status === "asserted" ? 3 : status === "suspected" ? 2 : 1;
}

function emptyResult(warning: string): LabelResult {
  return { labels: {}, eye: null, byEye: { left: {}, right: {} }, evidence: [], ignored: [], warnings: [warning] };
}

/** A compiled rules file; reuse one instance for many reports. */
export class Labeler {
  readonly rules: Rules;
  private readonly c: Compiled;
  /** Rank tables reused by every report (labelling is synchronous, one report at a time). */
  private readonly named: Ranks;
  private readonly signs: Ranks;
  private readonly explicitNeg: Uint8Array;

  constructor(rules: Rules = loadRules()) {
    this.rules = rules;
    this.c = compileRules(rules);
    const L = this.c.labelIds.length;
    this.named = ranks(L);
    this.signs = ranks(L);
    this.explicitNeg = new Uint8Array(L);
  }

  /** The label ids this labeler knows, in rules order. */
  get labels(): readonly LabelId[] {
    return this.c.labelIds;
  }

  /** Text normalised the way the rules match it (NFKC, lowercase, the rules' character table). */
  normalize(text: string): NormalizedText {
    return normalizeReport(text, this.c.chars);
  }

  /** A label's rule terms as written in the rules (synonyms, abbreviations, signs), normalised. */
  terms(label: LabelId): readonly string[] {
    const l = this.rules.labels.find((x) => x.id === label);
    if (!l) return [];
    return [...l.synonyms, ...l.abbreviations, ...l.signs].map((x) => this.normalize(x).text);
  }

  /** Label one report. Never throws on bad input: empty or non-text reports give an empty map and a warning. */
  label(report: unknown, options: LabelOptions = {}): LabelResult {
    if (typeof report !== "string")
      return emptyResult(`report is not text (got ${report === null ? "null" : typeof report})`);
    if (!NOT_BLANK.test(report)) return emptyResult("report is empty");
    const st = this.match(report, options.evidence ?? true);
    this.mentions(st);
    this.infer(st);
    return this.result(st, options.uncertainty ?? "keep");
  }

  /** Label many reports (same options for all). */
  labelAll(reports: readonly unknown[], options: LabelOptions = {}): LabelResult[] {
    return reports.map((r) => this.label(r, options));
  }

  // ---- steps 1-2: match, layout -----------------------------------------------------------

  private match(report: string, want: boolean): LabelState {
    const nt = normalizeReport(report, this.c.chars);
    const t = nt.text;
    const { items, headings } = findMatches(this.c, t);
    clearRanks(this.named, want);
    clearRanks(this.signs, want);
    this.explicitNeg.fill(0);
    return {
      report,
      nt,
      t,
      want,
      items,
      lay: layout(this.c, t, items, headings),
      named: this.named,
      signs: this.signs,
      explicitNeg: this.explicitNeg,
      evidence: [],
      normal: { first: null, left: false, right: false },
    };
  }

  // ---- step 3: mentions -------------------------------------------------------------------

  private mentions(st: LabelState): void {
    const clauses = st.lay.clauses;
    const carried = carryCues(st.items, clauses, st.t, this.c.historyMaxGap);
    for (let ci = 0; ci < clauses.length; ci++) {
      const c = clauses[ci] as Clause;
      for (let q = c.first; q < c.last; q++) this.mention(st, c, q, ci, carried);
      const neg = eyeNegative(st.items, c, st.t);
      if (neg) this.noteNormal(st, neg.m, c, neg.m.entry.rule, neg);
    }
  }

  private mention(st: LabelState, c: Clause, q: number, ci: number, carried: Carried): void {
    const it = st.items[q] as Match;
    const en = it.entry;
    const named = isMention(en);
    const excl = en.exclusions.length > 0;
    if (!named && !excl && (en.roles & NORMAL_ROLES) === 0) return;
    let d: Decision = { status: named || !excl ? "asserted" : "excluded", cue: null };
    if (named || en.roles & R_ABSENCE) {
      let treatment = false;
      for (const li of en.findings) if (this.c.treatment[li]) treatment = true;
      const pre = preCue(st.items, c, q, treatment, carried.pre[ci] ?? null);
      d = decide(pre, postCue(st.items, c, q, st.t, this.c.historyMaxGap, carried.post[ci] ?? null));
      // A treatment done in the past (曾行激光光凝, PRP 术后) left its scars: a current finding.
      if (treatment && d.status === "history") d = { status: "asserted", cue: d.cue };
    }
    if (!named && !excl) {
      // A normal description, or a negated absence word (未见 + 异常).
      if (en.roles & R_NORMAL_DESC || d.status === "negated") this.noteNormal(st, it, c, en.rule, d.cue);
      return;
    }
    if (!named) {
      for (let k = 0; k < en.exclusions.length; k++)
        this.record(st, st.named, en.exclusions[k] as number, d, it, c, en.exclusionRules[k] as string, "term");
      return;
    }
    for (let k = 0; k < en.findings.length; k++) {
      const li = en.findings[k] as number;
      const rule = en.findingRules[k] as string;
      if (li !== this.c.exclusiveLabel) this.record(st, st.named, li, d, it, c, rule, it.pattern ? "pattern" : "term");
      else if (d.status === "asserted" || d.status === "suspected") this.noteNormal(st, it, c, rule, d.cue);
    }
    for (let k = 0; k < en.signs.length; k++)
      this.record(st, st.signs, en.signs[k] as number, d, it, c, en.signRules[k] as string, "sign");
    // "无DR", "未见出血、渗出": a fundus examined and found without them is a normal statement.
    if (d.status === "negated" && !en.findings.includes(this.c.exclusiveLabel))
      this.noteNormal(st, it, c, `negated ${en.findingRules[0] ?? en.signRules[0] ?? ""}`, d.cue);
  }

  private record(
    st: LabelState,
    r: Ranks,
    li: number,
    d: Decision,
    it: Match,
    c: Clause,
    rule: string,
    source: Evidence["source"],
  ): void {
    const rank = rankOf(d.status);
    const raised = rank > (r.all[li] as number);
    if (raised) r.all[li] = rank;
    if (d.status === "negated" && r === st.named) st.explicitNeg[li] = 1;
    if (rank >= 2) this.rankEyes(st, r, li, rank, c.eye);
    if (!st.want) return;
    const ev = this.evidenceAt(st, it.s, it.e, this.c.labelIds[li] as LabelId, d.status, source, rule, c);
    if (d.cue) ev.cue = this.cueOf(st, d.cue);
    st.evidence.push(ev);
    if (raised) r.by[li] = ev;
  }

  private noteNormal(st: LabelState, it: Match, c: Clause, rule: string, cue: FoundCue | null): void {
    if (st.normal.first === null && st.want) {
      const id = this.c.labelIds[this.c.exclusiveLabel] as LabelId;
      st.normal.first = this.evidenceAt(st, it.s, it.e, id, "asserted", "normal", rule, c);
      if (cue) st.normal.first.cue = this.cueOf(st, cue);
    }
    const e = c.eye ?? st.lay.reportEye ?? "both";
    if (e === "left" || e === "both") st.normal.left = true;
    if (e === "right" || e === "both") st.normal.right = true;
  }

  private evidenceAt(
    st: LabelState,
    s: number,
    e: number,
    label: LabelId,
    status: Status,
    source: Evidence["source"],
    rule: string,
    c: Clause | null,
  ): Evidence {
    const [os, oe] = originalSpan(st.nt, s, e);
    const eye = c ? c.eye : eyeAt(st.items, s, st.lay);
    const section = c ? c.section : null;
    return { label, status, source, text: st.report.slice(os, oe), start: os, end: oe, rule, eye, section };
  }

  private cueOf(st: LabelState, f: FoundCue): Cue {
    const [cs, ce] = originalSpan(st.nt, f.m.s, f.m.e);
    return { type: f.kind, text: st.report.slice(cs, ce), start: cs, end: ce, rule: f.m.entry.rule };
  }

  private rankEyes(st: LabelState, r: Ranks, li: number, rank: number, eye: Eye | null): void {
    if (eye === null && st.lay.reportEye === "both") {
      if (rank > (r.loose[li] as number)) r.loose[li] = rank;
      return;
    }
    const e = eye ?? st.lay.reportEye ?? "both";
    if ((e === "left" || e === "both") && rank > (r.left[li] as number)) r.left[li] = rank;
    if ((e === "right" || e === "both") && rank > (r.right[li] as number)) r.right[li] = rank;
  }

  // ---- step 4: signs, numeric rules, eye placement, implications -------------------------

  private infer(st: LabelState): void {
    this.adoptSigns(st);
    this.numeric(st);
    this.placeLoose(st);
    this.implications(st);
  }

  /** A sign decides a label only when the report never names it (not even to negate it). */
  private adoptSigns(st: LabelState): void {
    const { named, signs } = st;
    for (let li = 0; li < named.all.length; li++) {
      if (named.all[li] !== 0 || signs.all[li] === 0) continue;
      named.all[li] = signs.all[li] as number;
      named.left[li] = signs.left[li] as number;
      named.right[li] = signs.right[li] as number;
      named.loose[li] = signs.loose[li] as number;
      named.by[li] = signs.by[li] ?? null;
    }
  }

  private numeric(st: LabelState): void {
    for (const rule of this.c.numeric) {
      if (rule.label < 0 || !anyIncluded(st.t, rule.prefixes)) continue;
      rule.re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = rule.re.exec(st.t)) !== null) {
        const v = parseRatio(m[1] ?? "", m[2]);
        const li = rule.label;
        const cur = st.named.all[li] as number;
        // A diagnosis (asserted) or an explicit exclusion outranks the measurement.
        if (v === null || v < rule.min || cur === 3 || (st.explicitNeg[li] && cur < 2)) continue;
        const rank = rule.value === 1 ? 3 : 2;
        const eye = eyeAt(st.items, m.index, st.lay);
        if (rank > cur) st.named.all[li] = rank;
        this.rankEyes(st, st.named, li, rank, eye);
        if (!st.want) continue;
        const status = rank === 3 ? "asserted" : "suspected";
        const id = this.c.labelIds[li] as LabelId;
        const ev = this.evidenceAt(st, m.index, m.index + m[0].length, id, status, "numeric", rule.rule, null);
        ev.value = v;
        st.evidence.push(ev);
        if (rank > cur) st.named.by[li] = ev;
      }
    }
  }

  /** Mentions without an eye in a two-eye report: to the eyes where the label was seen, else both. */
  private placeLoose(st: LabelState): void {
    const { named, signs } = st;
    for (let li = 0; li < named.all.length; li++) {
      const r = named.loose[li] as number;
      if (r < 2) continue;
      const inLeft = (named.left[li] as number) >= 2 || (signs.left[li] as number) >= 2;
      const inRight = (named.right[li] as number) >= 2 || (signs.right[li] as number) >= 2;
      const both = !inLeft && !inRight;
      if ((both || inLeft) && r > (named.left[li] as number)) named.left[li] = r;
      if ((both || inRight) && r > (named.right[li] as number)) named.right[li] = r;
    }
  }

  private implications(st: LabelState): void {
    const { named } = st;
    const L = named.all.length;
    let changed = true;
    for (let round = 0; changed && round < L; round++) {
      changed = false;
      for (let li = 0; li < L; li++) {
        const r = named.all[li] as number;
        if (r < 2) continue;
        for (const ti of this.c.implies[li] as number[]) {
          if ((named.all[ti] as number) < r) {
            named.all[ti] = r;
            changed = true;
            if (st.want) this.implied(st, ti, li, r);
          }
          for (const side of [named.left, named.right])
            if ((side[li] as number) > (side[ti] as number)) side[ti] = side[li] as number;
        }
      }
    }
  }

  private implied(st: LabelState, ti: number, li: number, r: number): void {
    const ev: Evidence = {
      label: this.c.labelIds[ti] as LabelId,
      status: r === 3 ? "asserted" : "suspected",
      source: "implied",
      text: "",
      start: -1,
      end: -1,
      rule: `${this.c.labelIds[li]}.implies`,
      eye: null,
      section: null,
      from: this.c.labelIds[li] as LabelId,
    };
    st.evidence.push(ev);
    st.named.by[ti] = ev;
  }

  // ---- step 5: result ---------------------------------------------------------------------

  private result(st: LabelState, policy: UncertaintyPolicy): LabelResult {
    const { named } = st;
    const ids = this.c.labelIds;
    const labels: LabelMap = {};
    const left: LabelMap = {};
    const right: LabelMap = {};
    let any = false;
    let nLeft = 0;
    let nRight = 0;
    for (let li = 0; li < ids.length; li++) {
      const id = ids[li] as LabelId;
      const r = named.all[li] as number;
      if (r >= 2 && li !== this.c.exclusiveLabel) {
        labels[id] = r === 3 ? 1 : 0.5;
        any = true;
        const by = named.by[li];
        if (by) by.decisive = true;
      }
      const rl = named.left[li] as number;
      const rr = named.right[li] as number;
      if (rl >= 2) ((left[id] = rl === 3 ? 1 : 0.5), nLeft++);
      if (rr >= 2) ((right[id] = rr === 3 ? 1 : 0.5), nRight++);
    }
    const warnings: string[] = [];
    if (this.c.exclusiveLabel >= 0) this.normalResult(st, any, { labels, left, right, nLeft, nRight }, warnings);
    const ignored: LabelId[] = [];
    if (policy !== "keep") {
      applyPolicy(labels, policy, ignored);
      applyPolicy(left, policy, null);
      applyPolicy(right, policy, null);
    }
    const evidence = st.evidence;
    if (evidence.length > 1) evidence.sort(byPosition);
    return { labels, eye: st.lay.reportEye, byEye: { left, right }, evidence, ignored, warnings };
  }

  private normalResult(
    st: LabelState,
    any: boolean,
    maps: { labels: LabelMap; left: LabelMap; right: LabelMap; nLeft: number; nRight: number },
    warnings: string[],
  ): void {
    const { labels, left, right } = maps;
    const id = this.c.labelIds[this.c.exclusiveLabel] as LabelId;
    const stated = st.normal.left || st.normal.right;
    if (!any && stated) {
      labels[id] = 1;
      const ev = st.normal.first;
      if (ev) {
        ev.decisive = true;
        st.evidence.push(ev);
      }
    }
    // Per eye: an eye with a normal statement, or an eye the report describes, with nothing found.
    const rep = st.lay.reportEye;
    if ((st.normal.left || rep === "left" || rep === "both") && maps.nLeft === 0) left[id] = 1;
    if ((st.normal.right || rep === "right" || rep === "both") && maps.nRight === 0) right[id] = 1;
    if (!any && !stated) warnings.push("no finding and no normal statement recognised");
  }
}

function parseRatio(a: string, b: string | undefined): number | null {
  let v: number;
  const slash = a.indexOf("/");
  if (slash >= 0) {
    const num = Number(a.slice(0, slash).trim());
    const den = Number(a.slice(slash + 1).trim());
    if (!(den > 0) || !(num >= 0)) return null;
    v = num / den;
  } else {
    v = Number(a);
  }
  if (b !== undefined) {
    const w = Number(b);
    if (Number.isFinite(w) && w > v && w <= 1) v = w;
  }
  if (!Number.isFinite(v) || v < 0 || v > 1) return null;
  return v;
}

function applyPolicy(labels: LabelMap, policy: UncertaintyPolicy, ignored: LabelId[] | null): void {
  if (policy === "keep") return;
  for (const id of LABEL_IDS) {
    if (labels[id] !== 0.5) continue;
    if (policy === "positive") labels[id] = 1;
    else if (policy === "negative") labels[id] = 0;
    else {
      delete labels[id];
      ignored?.push(id);
    }
  }
}

let defaultLabeler: Labeler | null = null;

/** Label one report with the packaged rules (compiled once). */
export function labelReport(report: unknown, options?: LabelOptions): LabelResult {
  defaultLabeler ??= new Labeler();
  return defaultLabeler.label(report, options);
}

export type { NormalizedText };
