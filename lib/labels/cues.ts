/**
 * Step 3 of labelling: what the cues around a mention say about it — asserted, negated,
 * suspected, history, or (for a treatment) only planned.
 *
 * Inside its clause a mention takes the nearest cue before it (a terminator such as 可见, 但 or 确诊
 * stops the search) and the nearest cue after it. Across clauses, two rules extend a cue:
 * - a bare list clause (findings and joiners only) before a clause closed by a collective negative
 *   takes that negative ("出血，渗出，新生血管均未见");
 * - a "finding: result" pair takes the result as its cue ("视网膜脱离：无", "【出血】(-)",
 *   "DR筛查结果：双眼均无", "DR分级：无明显视网膜病变").
 * A negative does not carry forward over a comma ("无DR，豹纹状" asserts the tessellation), except an
 * English one over an English list: "No hemorrhage, exudate or NV seen".
 * Precedence at one mention: history > planned > positive marker > uncertainty > negation.
 */
import {
  NEG_ROLES,
  POST_ROLES,
  PRE_ROLES,
  R_ABSENCE,
  R_NORMAL_DESC,
  R_PLAN,
  R_POSITIVE,
  R_POST_HIST,
  R_POST_NEG,
  R_POST_NEG_END,
  R_POST_UNC,
  R_POST_UNC_NEAR,
  R_PRE_HIST,
  R_PRE_NEG,
  R_PRE_UNC,
  R_PREFIX_NEG,
  R_RULE_OUT,
  R_SUGGEST,
  R_TERMINATOR,
  type Entry,
} from "./compile.js";
import type { Match } from "./match.js";
import type { Clause } from "./scope.js";

export type CueKind = "negation" | "uncertainty" | "history" | "positive" | "plan";
export type Status = "asserted" | "negated" | "suspected" | "history" | "excluded" | "planned";

export interface FoundCue {
  m: Match;
  kind: CueKind;
}

export interface Decision {
  status: Status;
  cue: FoundCue | null;
}

/** Cues carried into a clause from its neighbours (list rules); one per clause, indexed like the clauses. */
export interface Carried {
  pre: (FoundCue | null)[];
  post: (FoundCue | null)[];
}

export function isMention(e: Entry): boolean {
  return e.findings.length + e.signs.length > 0;
}

function preKind(items: Match[], c: Clause, p: number, r: number): CueKind {
  if (r & R_PRE_HIST) return "history";
  if (r & R_PRE_UNC) return "uncertainty";
  if (r & R_RULE_OUT) {
    // 排除 after a suggestion (建议…排除, 需…排除) is "to be ruled out": a suspicion.
    for (let k = c.first; k < p; k++) if ((items[k] as Match).entry.roles & R_SUGGEST) return "uncertainty";
    return "negation";
  }
  return "negation";
}

/** The nearest cue before mention q in its clause, else the one carried from the clause before. */
export function preCue(
  items: Match[],
  c: Clause,
  q: number,
  treatment: boolean,
  carried: FoundCue | null,
): FoundCue | null {
  for (let p = q - 1; p >= c.first; p--) {
    const m = items[p] as Match;
    const r = m.entry.roles;
    if (r & R_TERMINATOR) return null;
    // A prefix (非) negates only the term right after it (one space allowed).
    if (r & R_PREFIX_NEG && p === q - 1 && (items[q] as Match).s - m.e <= 1) return { m, kind: "negation" };
    if (treatment && r & R_PLAN) return { m, kind: "plan" };
    if (r & PRE_ROLES) return { m, kind: preKind(items, c, p, r) };
  }
  return carried;
}

function onlyClosing(t: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const ch = t.charCodeAt(i);
    if (ch !== 32 && ch !== 9 && ch !== 41 && ch !== 0xff09 && ch !== 93) return false;
  }
  return true;
}

function postKind(r: number, gap: number, maxGap: number): CueKind | null {
  if (r & R_POST_HIST && gap <= maxGap) return "history";
  if (r & R_POSITIVE) return "positive";
  if (r & (R_POST_UNC | R_POST_UNC_NEAR)) return "uncertainty";
  if (r & (R_POST_NEG | R_POST_NEG_END)) return "negation";
  return null;
}

/** The nearest cue after mention q in its clause, else the one carried from a later clause. */
export function postCue(
  items: Match[],
  c: Clause,
  q: number,
  t: string,
  maxGap: number,
  carried: FoundCue | null,
): FoundCue | null {
  const it = items[q] as Match;
  let between = 0;
  for (let p = q + 1; p < c.last; p++) {
    const m = items[p] as Match;
    const r = m.entry.roles;
    if (r & R_TERMINATOR) return null;
    if (r & POST_ROLES) {
      const gap = m.s - it.e;
      const near = between === 0;
      if (r & R_POST_HIST && gap <= maxGap && near) return { m, kind: "history" };
      if (r & R_POST_UNC_NEAR) {
        if (gap <= 2 && near) return { m, kind: "uncertainty" };
        continue;
      }
      if (r & R_POST_NEG_END) {
        if (onlyClosing(t, m.e, c.end)) return { m, kind: "negation" };
        continue;
      }
      const kind = postKind(r, gap, maxGap);
      if (kind !== null && kind !== "history") return { m, kind };
    }
    if (isMention(m.entry)) between++;
  }
  return carried;
}

/** The status of mention q from its cues. */
export function decide(pre: FoundCue | null, post: FoundCue | null): Decision {
  const order: CueKind[] = ["history", "plan", "positive", "uncertainty", "negation"];
  for (const kind of order) {
    if (post?.kind === kind) return { status: statusOf(kind), cue: post };
    if (pre?.kind === kind) return { status: statusOf(kind), cue: pre };
  }
  return { status: "asserted", cue: null };
}

function statusOf(kind: CueKind): Status {
  switch (kind) {
    case "history":
      return "history";
    case "plan":
      return "planned";
    case "positive":
      return "asserted";
    case "uncertainty":
      return "suspected";
    default:
      return "negated";
  }
}

// ---- list rules across clauses ----------------------------------------------------------------

/** Between two list clauses: nothing, or short comma-separated items the rules do not know ("出血，渗出，新生血管均未见"). */
const LIST_GAP = /^(?:,[^,;:。!\n\r【】]{0,8})*$/;

/** An English list continues: "…, exudate or NV seen". */
const ENGLISH_LIST = /\b(?:or|nor|and)\b/;

const JOINERS = new Set([..."、及和与或以等/ \t"].map((ch) => ch.charCodeAt(0)));

/** Findings and joiners only: "渗出", "出血、渗出及新生血管". */
function isBare(items: Match[], c: Clause, t: string): boolean {
  let pos = c.start;
  const ch = t.charCodeAt(pos);
  if (ch === 44 || ch === 0x3001) pos++;
  for (let q = c.first; q < c.last; q++) {
    const m = items[q] as Match;
    if (!isMention(m.entry) || m.entry.roles !== 0 || m.entry.eye !== null) return false;
    for (let i = pos; i < m.s; i++) if (!JOINERS.has(t.charCodeAt(i))) return false;
    pos = m.e;
  }
  for (let i = pos; i < c.end; i++) if (!JOINERS.has(t.charCodeAt(i))) return false;
  return c.last > c.first;
}

/**
 * A result after "finding:": its first item (eye words aside) is a cue — 无, 阴性, (-), -, 可疑, ?,
 * (+) — and it names no finding.
 */
function resultCue(items: Match[], c: Clause | undefined, t: string): FoundCue | null {
  if (c === undefined) return null;
  let first: Match | null = null;
  let covered = 0;
  for (let q = c.first; q < c.last; q++) {
    const m = items[q] as Match;
    if (isMention(m.entry)) return null;
    covered += m.e - m.s;
    if (first === null && m.entry.eye === null) first = m;
  }
  if (first === null || c.end - c.start - 1 - covered > 8) return null;
  const r = first.entry.roles;
  if (r & R_POSITIVE) return { m: first, kind: "positive" };
  if (r & (R_PRE_UNC | R_POST_UNC | R_POST_UNC_NEAR)) return { m: first, kind: "uncertainty" };
  if (r & NEG_ROLES) return { m: first, kind: "negation" };
  return null;
}

/** A clause that names no finding and only gives a negative result for an eye: "L: (-)", "左眼：阴性". */
export function eyeNegative(items: Match[], c: Clause, t: string): FoundCue | null {
  if (c.eye === null) return null;
  let cue: Match | null = null;
  for (let q = c.first; q < c.last; q++) {
    const m = items[q] as Match;
    if (isMention(m.entry)) return null;
    if (m.entry.eye === null && cue === null) cue = m;
  }
  if (cue === null || (cue.entry.roles & NEG_ROLES) === 0 || !onlyClosing(t, cue.e, c.end)) return null;
  return { m: cue, kind: "negation" };
}

function lastMention(items: Match[], c: Clause): number {
  for (let q = c.last - 1; q >= c.first; q--) if (isMention((items[q] as Match).entry)) return q;
  return -1;
}

const NO_CUES: (FoundCue | null)[] = [];

/** Clause a and the next are joined by a comma (short unknown items between them allowed). */
function joined(clauses: Clause[], a: number, t: string): boolean {
  const d = clauses[a + 1];
  return d !== undefined && t.charCodeAt(d.start) === 44 && LIST_GAP.test(t.slice((clauses[a] as Clause).end, d.start));
}

/** The English list rule: "No hemorrhage, exudate or NV seen" carries "no" into the next clause. */
function carryEnglish(items: Match[], clauses: Clause[], t: string, carried: Carried): void {
  for (let a = 0; a + 1 < clauses.length; a++) {
    const d = clauses[a + 1] as Clause;
    if (!ENGLISH_LIST.test(t.slice(d.start, d.end)) || !joined(clauses, a, t)) continue;
    const c = clauses[a] as Clause;
    const q = lastMention(items, c);
    const pre = q < 0 ? null : preCue(items, c, q, false, carried.pre[a] ?? null);
    if (pre?.kind === "negation" && pre.m.entry.wordStart && (pre.m.entry.roles & R_PRE_NEG) !== 0) {
      if (carried.pre === NO_CUES) carried.pre = new Array(clauses.length).fill(null);
      carried.pre[a + 1] = pre;
    }
  }
}

/** What clause a gets from the clause after it: a "finding: result" value or a collective negative. */
function carriedPost(items: Match[], clauses: Clause[], a: number, t: string, maxGap: number, after: FoundCue | null) {
  const c = clauses[a] as Clause;
  const d = clauses[a + 1] as Clause;
  const close = t.charCodeAt(c.end);
  if ((close === 58 || close === 0x3011 || close === 93) && d.start === c.end) return resultCue(items, d, t);
  if (!isBare(items, c, t) || !joined(clauses, a, t)) return null;
  if (isBare(items, d, t)) return after;
  if (d.last > d.first && isMention((items[d.first] as Match).entry)) {
    const post = postCue(items, d, d.first, t, maxGap, null);
    if (post?.kind === "negation" && (post.m.entry.roles & R_POST_NEG_END) !== 0) return post;
  }
  return null;
}

/** The cues each clause receives from its neighbours under the list rules. */
export function carryCues(items: Match[], clauses: Clause[], t: string, maxGap: number): Carried {
  const carried: Carried = { pre: NO_CUES, post: NO_CUES };
  if (clauses.length < 2) return carried;
  carryEnglish(items, clauses, t, carried);
  for (let a = clauses.length - 2; a >= 0; a--) {
    const post = carriedPost(items, clauses, a, t, maxGap, carried.post[a + 1] ?? null);
    if (post === null) continue;
    if (carried.post === NO_CUES) carried.post = new Array(clauses.length).fill(null);
    carried.post[a] = post;
  }
  return carried;
}

/** Roles that make an item a normal statement or description. */
export const NORMAL_ROLES = R_NORMAL_DESC | R_ABSENCE;
