/**
 * The rule engine: Chinese fundus report -> labels, eye, and auditable evidence.
 *
 * 1. Normalise (NFKC, lowercase) with offsets back to the original text.
 * 2. Find every term of the rules (label synonyms, abbreviations as whole words, patterns,
 *    exclusions, cues, eye words) in one pass over the text; where matches overlap the longest
 *    wins (NPDR over PDR, 非增殖期 over 增殖期, 不除外 over 除外, 白内障术后 over 白内障).
 * 3. Cut the text into clauses (。，；：! line breaks and list numbers). A cue acts only inside its
 *    clause: the nearest cue before a finding (stopped by terminators such as 可见) and the nearest
 *    cue after it decide whether the finding is asserted, negated, suspected or history.
 * 4. Per label: asserted (1) > suspected (0.5) > negated (absent), across the whole report;
 *    numeric rules (C/D ratio) add suspicions; implications (pdr -> dr) propagate; the exclusive
 *    label (normal) is set only when nothing else is and the report states or describes a normal
 *    fundus.
 * 5. Apply the uncertainty policy (keep 0.5, treat as 1, treat as 0, drop), as CheXpert's labeler.
 */
import { LABEL_IDS, type Eye, type LabelId, type LabelMap, type LabelValue } from "./taxonomy.js";
import { loadRules, type Rules } from "./rules.js";
import { normalizeReport, originalSpan, type NormalizedText } from "./normalize.js";

export type Status = "asserted" | "negated" | "suspected" | "history" | "excluded";

export type UncertaintyPolicy = "keep" | "positive" | "negative" | "drop";
export const UNCERTAINTY_POLICIES: readonly UncertaintyPolicy[] = ["keep", "positive", "negative", "drop"];

export interface Cue {
  /** What the cue does. */
  type: "negation" | "uncertainty" | "history" | "positive";
  /** The cue as written in the report, and its offsets there. */
  text: string;
  start: number;
  end: number;
}

export interface Evidence {
  label: LabelId;
  status: Status;
  /** term: a synonym, abbreviation or pattern; numeric: a measured value; implied: another label; normal: a normal statement or description. */
  source: "term" | "pattern" | "numeric" | "implied" | "normal";
  /** The matched span, as written, and its UTF-16 offsets in the report. */
  text: string;
  start: number;
  end: number;
  /** The eye the span's section or clause refers to (null when the report does not say). */
  eye: Eye | null;
  /** The report section it appears in (findings, impression, history) when headed. */
  section: string | null;
  cue?: Cue;
  /** For implied evidence: the label it follows from. For numeric evidence: the value read. */
  from?: LabelId;
  value?: number;
}

export interface LabelResult {
  labels: LabelMap;
  eye: Eye | null;
  /** The labels per eye (evidence with no eye goes to the report's eye, or to both). */
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

// ---- compiled term table -------------------------------------------------------------------

const R_PRE_NEG = 1 << 0;
const R_POST_NEG = 1 << 1;
const R_POST_NEG_END = 1 << 2;
const R_PRE_UNC = 1 << 3;
const R_POST_UNC = 1 << 4;
const R_POST_UNC_NEAR = 1 << 5;
const R_RULE_OUT = 1 << 6;
const R_SUGGEST = 1 << 7;
const R_PRE_HIST = 1 << 8;
const R_POST_HIST = 1 << 9;
const R_PSEUDO = 1 << 10;
const R_TERMINATOR = 1 << 11;
const R_POSITIVE = 1 << 12;
const R_NORMAL_DESC = 1 << 13;

const PRE_ROLES = R_PRE_NEG | R_PRE_UNC | R_RULE_OUT | R_PRE_HIST;
const POST_ROLES = R_POST_NEG | R_POST_NEG_END | R_POST_UNC | R_POST_UNC_NEAR | R_POST_HIST | R_POSITIVE;

interface Entry {
  text: string;
  roles: number;
  /** Label indexes this term asserts (finding) or excludes. */
  findings: number[];
  exclusions: number[];
  eye: Eye | null;
  /** Latin term: whole-word match only. */
  wordStart: boolean;
  wordEnd: boolean;
}

interface PatternDef {
  re: RegExp;
  label: number;
  prefix: string;
}

interface Match {
  s: number;
  e: number;
  entry: Entry;
  pattern: boolean;
}

const NO_ENTRY_LABELS: number[] = [];

function isWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
}
function isAlnum(c: number): boolean {
  return isWordChar(c) || (c >= 48 && c <= 57);
}

function normTerm(t: string): string {
  return normalizeReport(t).text;
}

function literalPrefix(src: string): string {
  let out = "";
  for (let i = 0; i < src.length; i++) {
    const ch = src[i] as string;
    if ("\\^$.|?*+()[]{}".includes(ch)) {
      if ("?*{".includes(ch) && out.length > 0) out = out.slice(0, -1);
      break;
    }
    out += ch;
  }
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** Clause boundaries (after normalisation): 。 , ; ! : line breaks 【 】, and "." outside numbers. */

/** A compiled rules file; reuse one instance for many reports. */
export class Labeler {
  readonly rules: Rules;
  private readonly labelIds: LabelId[];
  private readonly index = new Map<number, Entry[]>();
  private readonly patterns: PatternDef[] = [];
  private readonly exclusiveLabel: number;
  private readonly implies: number[][];
  private readonly numeric: { re: RegExp; label: number; min: number; value: LabelValue; prefixes: string[] }[] = [];
  private readonly sectionRe: RegExp | null;
  private readonly sectionOf = new Map<string, string>();
  private readonly historyMaxGap: number;
  private readonly labelIndex = new Map<LabelId, number>();

  constructor(rules: Rules = loadRules()) {
    this.rules = rules;
    this.labelIds = rules.labels.map((l) => l.id);
    this.labelIds.forEach((id, i) => this.labelIndex.set(id, i));
    this.exclusiveLabel = rules.labels.findIndex((l) => l.exclusive);
    this.implies = rules.labels.map((l) =>
      l.implies.map((t) => this.labelIndex.get(t as LabelId) ?? -1).filter((k) => k >= 0),
    );
    this.historyMaxGap = rules.cues.history.maxGap;

    const entries = new Map<string, Entry>();
    const entry = (raw: string): Entry => {
      const text = normTerm(raw);
      let e = entries.get(text);
      if (!e) {
        e = {
          text,
          roles: 0,
          findings: NO_ENTRY_LABELS,
          exclusions: NO_ENTRY_LABELS,
          eye: null,
          wordStart: isAlnum(text.charCodeAt(0)),
          wordEnd: isWordChar(text.charCodeAt(text.length - 1)),
        };
        entries.set(text, e);
      }
      return e;
    };
    const addRole = (list: readonly string[], role: number): void => {
      for (const t of list) entry(t).roles |= role;
    };
    rules.labels.forEach((l, li) => {
      for (const t of [...l.synonyms, ...l.abbreviations]) {
        const e = entry(t);
        if (!e.findings.includes(li)) e.findings = [...e.findings, li];
      }
      for (const t of l.exclusions) {
        const e = entry(t);
        if (!e.exclusions.includes(li)) e.exclusions = [...e.exclusions, li];
      }
      addRole(l.descriptions, R_NORMAL_DESC);
      for (const p of l.patterns) {
        this.patterns.push({ re: new RegExp(p, "gu"), label: li, prefix: literalPrefix(p) });
      }
    });
    const c = rules.cues;
    addRole(c.negation.pre, R_PRE_NEG);
    addRole(c.negation.post, R_POST_NEG);
    addRole(c.negation.postAtClauseEnd, R_POST_NEG_END);
    addRole(c.uncertainty.pre, R_PRE_UNC);
    addRole(c.uncertainty.post, R_POST_UNC);
    addRole(c.uncertainty.postNearest, R_POST_UNC_NEAR);
    addRole(c.ruleOut, R_RULE_OUT);
    addRole(c.suggestion, R_SUGGEST);
    addRole(c.history.pre, R_PRE_HIST);
    addRole(c.history.post, R_POST_HIST);
    addRole(c.pseudo, R_PSEUDO);
    addRole(c.terminators, R_TERMINATOR);
    addRole(c.positive, R_POSITIVE);
    for (const [eye, words] of [
      ["right", rules.eyes.right],
      ["left", rules.eyes.left],
      ["both", rules.eyes.both],
    ] as const) {
      for (const w of words) entry(w).eye = eye;
    }
    // A post-negation that must end its clause is not a plain post-negation.
    for (const e of entries.values()) if (e.roles & R_POST_NEG_END) e.roles &= ~R_POST_NEG;
    for (const e of entries.values()) if (e.roles & R_POST_UNC_NEAR) e.roles &= ~R_POST_UNC;

    for (const e of entries.values()) {
      if (e.text.length === 0) continue;
      const k = e.text.charCodeAt(0);
      let list = this.index.get(k);
      if (!list) this.index.set(k, (list = []));
      list.push(e);
    }
    for (const list of this.index.values()) list.sort((a, b) => b.text.length - a.text.length);

    for (const n of rules.numeric) {
      const names = n.names.map((x) => escapeRe(normTerm(x))).sort((a, b) => b.length - a.length);
      const re = new RegExp(
        `(?:${names.join("|")})(?:比值|比|值)?[^0-9,;。\\n]{0,6}?(\\d+(?:\\.\\d+)?(?:\\s*/\\s*\\d+)?|\\.\\d+)(?:\\s*[-~至到]\\s*(\\d*\\.\\d+))?`,
        "g",
      );
      this.numeric.push({
        re,
        label: this.labelIndex.get(n.label) ?? -1,
        min: n.min,
        value: n.value,
        prefixes: n.names.map(normTerm),
      });
    }

    const heads: string[] = [];
    for (const [section, words] of Object.entries(rules.sections)) {
      for (const w of words) {
        const t = normTerm(w);
        heads.push(t);
        this.sectionOf.set(t, section);
      }
    }
    heads.sort((a, b) => b.length - a.length);
    this.sectionRe = heads.length > 0 ? new RegExp(`(${heads.map(escapeRe).join("|")})\\s*(?::|】|\\])`, "g") : null;
  }

  /** The label ids this labeler knows, in rules order. */
  get labels(): readonly LabelId[] {
    return this.labelIds;
  }

  /** Label one report. Never throws on bad input: empty or non-text reports give an empty map and a warning. */
  label(report: unknown, options: LabelOptions = {}): LabelResult {
    const policy = options.uncertainty ?? "keep";
    const wantEvidence = options.evidence ?? true;
    const empty = (warning: string): LabelResult => ({
      labels: {},
      eye: null,
      byEye: { left: {}, right: {} },
      evidence: [],
      ignored: [],
      warnings: [warning],
    });
    if (typeof report !== "string")
      return empty(`report is not text (got ${report === null ? "null" : typeof report})`);
    if (report.trim() === "") return empty("report is empty");

    const nt = normalizeReport(report);
    const t = nt.text;
    const n = t.length;

    // ---- 2. matches ------------------------------------------------------------------------
    const raw: Match[] = [];
    for (let i = 0; i < n; i++) {
      const list = this.index.get(t.charCodeAt(i));
      if (list === undefined) continue;
      for (const e of list) {
        const len = e.text.length;
        if (i + len > n || !t.startsWith(e.text, i)) continue;
        if (e.wordStart && i > 0 && isAlnum(t.charCodeAt(i - 1))) continue;
        if (e.wordEnd && i + len < n && isWordChar(t.charCodeAt(i + len))) continue;
        raw.push({ s: i, e: i + len, entry: e, pattern: false });
        break;
      }
    }
    for (const p of this.patterns) {
      if (p.prefix !== "" && !t.includes(p.prefix)) continue;
      p.re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = p.re.exec(t)) !== null) {
        if (m[0].length === 0) {
          p.re.lastIndex++;
          continue;
        }
        const e: Entry = {
          text: m[0],
          roles: 0,
          findings: [p.label],
          exclusions: NO_ENTRY_LABELS,
          eye: null,
          wordStart: false,
          wordEnd: false,
        };
        raw.push({ s: m.index, e: m.index + m[0].length, entry: e, pattern: true });
      }
    }
    // Longest wins; ties: literal terms before patterns, then leftmost.
    raw.sort((a, b) => b.e - b.s - (a.e - a.s) || Number(a.pattern) - Number(b.pattern) || a.s - b.s);
    const taken = new Uint8Array(n);
    const items: Match[] = [];
    for (const m of raw) {
      let free = true;
      for (let k = m.s; k < m.e; k++) {
        if (taken[k]) {
          free = false;
          break;
        }
      }
      if (!free) continue;
      taken.fill(1, m.s, m.e);
      items.push(m);
    }
    items.sort((a, b) => a.s - b.s);

    // ---- 3. clauses, eyes, sections -------------------------------------------------------
    const clauseEnds = this.clauseEnds(t);
    const headings = this.headings(t);

    // Report eye: every eye word.
    let hasL = false;
    let hasR = false;
    for (const it of items) {
      const eye = it.entry.eye;
      if (eye === "both") hasL = hasR = true;
      else if (eye === "left") hasL = true;
      else if (eye === "right") hasR = true;
    }
    const reportEye: Eye | null = hasL && hasR ? "both" : hasL ? "left" : hasR ? "right" : null;

    const L = this.labelIds.length;
    const best = new Int8Array(L); // 0 none, 1 negated/history/excluded only, 2 suspected, 3 asserted
    const bestEye: [Int8Array, Int8Array] = [new Int8Array(L), new Int8Array(L)]; // left, right
    let explicitNeg = new Uint8Array(L);
    const evidence: Evidence[] = [];
    let normalSeen: Match | null = null;
    let normalEye: Eye | null = null;
    let normalSection: string | null = null;
    const normalEyes = [false, false];

    let clause = 0;
    let clauseStartItem = 0;
    let carriedEye: Eye | null = null;
    let headingPtr = 0;
    let section: string | null = null;
    let k = 0;
    while (k < items.length) {
      // Items of this clause: [k, j)
      while (clause < clauseEnds.length && (clauseEnds[clause] as number) <= (items[k] as Match).s) clause++;
      const cEnd = clause < clauseEnds.length ? (clauseEnds[clause] as number) : n;
      let j = k;
      while (j < items.length && (items[j] as Match).s < cEnd) j++;
      clauseStartItem = k;

      // Heading / section and eye bookkeeping.
      while (headingPtr < headings.length && (headings[headingPtr] as [number, string])[0] <= (items[k] as Match).s) {
        section = (headings[headingPtr] as [number, string])[1];
        carriedEye = null;
        headingPtr++;
      }
      let clauseEye: Eye | null = null;
      let lastEye: Eye | null = null;
      for (let q = k; q < j; q++) {
        const eye = (items[q] as Match).entry.eye;
        if (eye) {
          if (!clauseEye) clauseEye = eye;
          lastEye = eye;
        }
      }
      const eyeHere = clauseEye ?? carriedEye ?? (reportEye === "both" ? null : reportEye);
      if (lastEye) carriedEye = lastEye;

      for (let q = k; q < j; q++) {
        const it = items[q] as Match;
        const en = it.entry;
        const isFinding = en.findings.length > 0;
        const isExcl = en.exclusions.length > 0;
        const isNormalDesc = (en.roles & R_NORMAL_DESC) !== 0;
        if (!isFinding && !isExcl && !isNormalDesc) continue;

        let status: Status;
        let cue: Match | null = null;
        let cueType: Cue["type"] | null = null;
        if (isFinding) {
          // Nearest pre-cue.
          let pre: Match | null = null;
          for (let p = q - 1; p >= clauseStartItem; p--) {
            const r = (items[p] as Match).entry.roles;
            if (r & R_TERMINATOR) break;
            if (r & PRE_ROLES) {
              pre = items[p] as Match;
              break;
            }
          }
          // Nearest post-cue.
          let post: Match | null = null;
          let between = 0;
          for (let p = q + 1; p < j; p++) {
            const m = items[p] as Match;
            const r = m.entry.roles;
            if (r & R_TERMINATOR) break;
            if (r & POST_ROLES) {
              const gap = m.s - it.e;
              if (r & R_POST_HIST && gap <= this.historyMaxGap && between === 0) {
                post = m;
                break;
              }
              if (r & R_POST_UNC_NEAR) {
                if (gap <= 2 && between === 0) {
                  post = m;
                  break;
                }
                continue;
              }
              if (r & R_POST_NEG_END) {
                if (/^[\s)）\]]*$/.test(t.slice(m.e, cEnd))) {
                  post = m;
                  break;
                }
                continue;
              }
              if (r & (R_POST_NEG | R_POST_UNC | R_POSITIVE)) {
                post = m;
                break;
              }
            }
            if (m.entry.findings.length > 0) between++;
          }
          let neg = false;
          let unc = false;
          let hist = false;
          let pos = false;
          let preType: Cue["type"] | null = null;
          if (pre) {
            const r = pre.entry.roles;
            if (r & R_PRE_HIST) ((hist = true), (preType = "history"));
            else if (r & R_PRE_UNC) ((unc = true), (preType = "uncertainty"));
            else if (r & R_RULE_OUT) {
              let suggested = false;
              for (let p = clauseStartItem; p < q; p++) {
                const m = items[p] as Match;
                if (m.s >= pre.s) break;
                if (m.entry.roles & R_SUGGEST) suggested = true;
              }
              if (suggested) ((unc = true), (preType = "uncertainty"));
              else ((neg = true), (preType = "negation"));
            } else if (r & R_PRE_NEG) ((neg = true), (preType = "negation"));
          }
          let postType: Cue["type"] | null = null;
          if (post) {
            const r = post.entry.roles;
            if (r & R_POST_HIST && post.s - it.e <= this.historyMaxGap) ((hist = true), (postType = "history"));
            else if (r & R_POSITIVE) ((pos = true), (postType = "positive"));
            else if (r & (R_POST_UNC | R_POST_UNC_NEAR)) ((unc = true), (postType = "uncertainty"));
            else if (r & (R_POST_NEG | R_POST_NEG_END)) ((neg = true), (postType = "negation"));
          }
          if (hist) {
            status = "history";
            cue = postType === "history" ? post : pre;
            cueType = "history";
          } else if (pos) {
            status = "asserted";
            cue = post;
            cueType = "positive";
          } else if (unc) {
            status = "suspected";
            cue = postType === "uncertainty" ? post : pre;
            cueType = "uncertainty";
          } else if (neg) {
            status = "negated";
            cue = postType === "negation" ? post : pre;
            cueType = "negation";
          } else {
            status = "asserted";
          }
        } else if (isExcl) {
          status = "excluded";
        } else {
          status = "asserted";
        }

        // Normal statements/descriptions are collected separately.
        if (!isFinding && !isExcl) {
          if (!normalSeen) {
            normalSeen = it;
            normalEye = eyeHere;
            normalSection = section;
          }
          this.markEyes(normalEyes, eyeHere, reportEye);
          continue;
        }
        const labelsHere = isFinding ? en.findings : en.exclusions;
        for (const li of labelsHere) {
          if (li === this.exclusiveLabel) {
            if (status === "asserted" || status === "suspected") {
              if (!normalSeen) {
                normalSeen = it;
                normalEye = eyeHere;
                normalSection = section;
              }
              this.markEyes(normalEyes, eyeHere, reportEye);
            }
            continue;
          }
          const rank = status === "asserted" ? 3 : status === "suspected" ? 2 : 1;
          if (rank > (best[li] as number)) best[li] = rank;
          if (status === "negated") explicitNeg[li] = 1;
          if (rank >= 2) this.rankEyes(bestEye, li, rank, eyeHere, reportEye);
          if (wantEvidence) {
            const [os, oe] = originalSpan(nt, it.s, it.e);
            const ev: Evidence = {
              label: this.labelIds[li] as LabelId,
              status,
              source: it.pattern ? "pattern" : "term",
              text: report.slice(os, oe),
              start: os,
              end: oe,
              eye: eyeHere,
              section,
            };
            if (cue && cueType) {
              const [cs, ce] = originalSpan(nt, cue.s, cue.e);
              ev.cue = { type: cueType, text: report.slice(cs, ce), start: cs, end: ce };
            }
            evidence.push(ev);
          }
        }
      }
      k = j;
    }

    // ---- 4. numeric rules ----------------------------------------------------------------
    for (const rule of this.numeric) {
      if (rule.label < 0) continue;
      if (!rule.prefixes.some((p) => t.includes(p))) continue;
      rule.re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = rule.re.exec(t)) !== null) {
        const v = parseRatio(m[1] ?? "", m[2]);
        if (v === null || v < rule.min) continue;
        const li = rule.label;
        const cur = best[li] as number;
        // A diagnosis (asserted) or an explicit exclusion outranks the measurement.
        if (cur === 3 || (explicitNeg[li] && cur < 2)) continue;
        const rank = rule.value === 1 ? 3 : 2;
        const eye = this.eyeAt(items, m.index, clauseEnds, reportEye, headings);
        if (rank > cur) best[li] = rank;
        this.rankEyes(bestEye, li, rank, eye, reportEye);
        if (wantEvidence) {
          const [os, oe] = originalSpan(nt, m.index, m.index + m[0].length);
          evidence.push({
            label: this.labelIds[li] as LabelId,
            status: rank === 3 ? "asserted" : "suspected",
            source: "numeric",
            text: report.slice(os, oe),
            start: os,
            end: oe,
            eye,
            section: null,
            value: v,
          });
        }
      }
    }

    // ---- implications ---------------------------------------------------------------------
    let changed = true;
    for (let round = 0; changed && round < L; round++) {
      changed = false;
      for (let li = 0; li < L; li++) {
        const r = best[li] as number;
        if (r < 2) continue;
        for (const ti of this.implies[li] as number[]) {
          if ((best[ti] as number) < r) {
            best[ti] = r;
            changed = true;
            if (wantEvidence) {
              evidence.push({
                label: this.labelIds[ti] as LabelId,
                status: r === 3 ? "asserted" : "suspected",
                source: "implied",
                text: "",
                start: -1,
                end: -1,
                eye: null,
                section: null,
                from: this.labelIds[li] as LabelId,
              });
            }
          }
          for (let side = 0; side < 2; side++) {
            const be = bestEye[side] as Int8Array;
            if ((be[li] as number) > (be[ti] as number)) be[ti] = be[li] as number;
          }
        }
      }
    }

    // ---- build maps -----------------------------------------------------------------------
    const labels: LabelMap = {};
    const left: LabelMap = {};
    const right: LabelMap = {};
    let any = false;
    for (let li = 0; li < L; li++) {
      const r = best[li] as number;
      if (r >= 2 && li !== this.exclusiveLabel) {
        labels[this.labelIds[li] as LabelId] = r === 3 ? 1 : 0.5;
        any = true;
      }
      const rl = (bestEye[0] as Int8Array)[li] as number;
      const rr = (bestEye[1] as Int8Array)[li] as number;
      if (rl >= 2) left[this.labelIds[li] as LabelId] = rl === 3 ? 1 : 0.5;
      if (rr >= 2) right[this.labelIds[li] as LabelId] = rr === 3 ? 1 : 0.5;
    }
    const warnings: string[] = [];
    if (this.exclusiveLabel >= 0) {
      const id = this.labelIds[this.exclusiveLabel] as LabelId;
      if (!any && normalSeen) {
        labels[id] = 1;
        if (wantEvidence) {
          const [os, oe] = originalSpan(nt, normalSeen.s, normalSeen.e);
          evidence.push({
            label: id,
            status: "asserted",
            source: "normal",
            text: report.slice(os, oe),
            start: os,
            end: oe,
            eye: normalEye,
            section: normalSection,
          });
        }
      }
      if (normalEyes[0] && Object.keys(left).length === 0) left[id] = 1;
      if (normalEyes[1] && Object.keys(right).length === 0) right[id] = 1;
      if (!any && !normalSeen) warnings.push("no finding and no normal statement recognised");
    }
    explicitNeg = new Uint8Array(0);

    const ignored: LabelId[] = [];
    applyPolicy(labels, policy, ignored);
    applyPolicy(left, policy, null);
    applyPolicy(right, policy, null);
    evidence.sort((a, b) => (a.start < 0 ? 1 : b.start < 0 ? -1 : a.start - b.start));
    return { labels, eye: reportEye, byEye: { left, right }, evidence, ignored, warnings };
  }

  /** Label many reports (same options for all). */
  labelAll(reports: readonly unknown[], options: LabelOptions = {}): LabelResult[] {
    return reports.map((r) => this.label(r, options));
  }

  // ---------------------------------------------------------------------------------------

  private markEyes(flags: boolean[], eye: Eye | null, reportEye: Eye | null): void {
    const e = eye ?? reportEye ?? "both";
    if (e === "left" || e === "both") flags[0] = true;
    if (e === "right" || e === "both") flags[1] = true;
  }

  private rankEyes(
    bestEye: [Int8Array, Int8Array],
    li: number,
    rank: number,
    eye: Eye | null,
    reportEye: Eye | null,
  ): void {
    const e = eye ?? reportEye ?? "both";
    if ((e === "left" || e === "both") && rank > (bestEye[0][li] as number)) bestEye[0][li] = rank;
    if ((e === "right" || e === "both") && rank > (bestEye[1][li] as number)) bestEye[1][li] = rank;
  }

  /** Eye in force at a position (for numeric evidence): the last eye word before it in the same section. */
  private eyeAt(
    items: Match[],
    pos: number,
    _clauseEnds: number[],
    reportEye: Eye | null,
    headings: [number, string][],
  ): Eye | null {
    let lastHeading = -1;
    for (const [p] of headings) if (p <= pos) lastHeading = p;
    let eye: Eye | null = null;
    for (const it of items) {
      if (it.s > pos) break;
      if (it.s < lastHeading) continue;
      if (it.entry.eye) eye = it.entry.eye;
    }
    return eye ?? (reportEye === "both" ? null : reportEye);
  }

  /** Sorted clause end offsets (exclusive) in the normalised text. */
  private clauseEnds(t: string): number[] {
    const ends: number[] = [];
    const n = t.length;
    for (let i = 0; i < n; i++) {
      const c = t.charCodeAt(i);
      if (
        c === 0x3002 ||
        c === 44 ||
        c === 59 ||
        c === 33 ||
        c === 58 ||
        c === 10 ||
        c === 13 ||
        c === 0x3010 ||
        c === 0x3011
      ) {
        ends.push(i);
      } else if (c === 46) {
        const p = i > 0 ? t.charCodeAt(i - 1) : 0;
        const q = i + 1 < n ? t.charCodeAt(i + 1) : 0;
        if (!(p >= 48 && p <= 57 && q >= 48 && q <= 57)) ends.push(i);
      }
    }
    // List numbers: "1、" "2." "(3)" "4)" at the start of an item.
    const re = /(^|[\s,;:。、|])(?:\d{1,2}(?:、|\.(?!\d)|\)))|\(\d{1,2}\)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(t)) !== null) ends.push(m.index + (m[1] ?? "").length);
    ends.sort((a, b) => a - b);
    // Each boundary closes the clause before it; the boundary char itself belongs to the next clause.
    return ends;
  }

  private headings(t: string): [number, string][] {
    const out: [number, string][] = [];
    if (!this.sectionRe) return out;
    this.sectionRe.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = this.sectionRe.exec(t)) !== null) {
      const sec = this.sectionOf.get(m[1] ?? "");
      if (sec) out.push([m.index, sec]);
    }
    return out;
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
