/**
 * Step 2 of labelling: the report cut into clauses, each with its eye and section.
 *
 * Clauses end at 。 , ; ! : line breaks 【 】, a "." outside a number, list numbers (1、 2. (3) 4)
 * 一、) — and before an eye word that heads what follows (`OD:`, or `OS` after a finding in the
 * same clause: "OD 未见异常 OS 黄斑前膜"). A clause takes the first eye it names, otherwise the
 * last eye named before it in the same section, otherwise the report's eye when that is one eye.
 */
import type { Eye } from "./taxonomy.js";
import { R_ABSENCE, R_NORMAL_DESC, type Compiled } from "./compile.js";
import type { Match } from "./match.js";

export interface Clause {
  /** [start, end) in the normalised text; t[start] is the boundary that opened it (except at 0). */
  start: number;
  end: number;
  /** Its items: [first, last) in the match list. */
  first: number;
  last: number;
  eye: Eye | null;
  section: string | null;
}

export interface Layout {
  clauses: Clause[];
  headings: [number, string][];
  reportEye: Eye | null;
}

const LIST_NUMBER =
  /(^|[\s,;:。、|])(?:\d{1,2}(?:、|\.(?!\d)|\))|[一二三四五六七八九十]{1,2}、)|\(\d{1,2}\)|\([一二三四五六七八九十]{1,2}\)/g;

/** Sorted clause end offsets (exclusive) from punctuation and list numbers. */
export function clauseEnds(t: string): number[] {
  const ends: number[] = [];
  const n = t.length;
  for (let i = 0; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c === 0x3002 || c === 44 || c === 59 || c === 33 || c === 58 || c === 10 || c === 13) ends.push(i);
    else if (c === 0x3010 || c === 0x3011) ends.push(i);
    else if (c === 46) {
      const p = i > 0 ? t.charCodeAt(i - 1) : 0;
      const q = i + 1 < n ? t.charCodeAt(i + 1) : 0;
      if (!(p >= 48 && p <= 57 && q >= 48 && q <= 57)) ends.push(i);
    }
  }
  LIST_NUMBER.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = LIST_NUMBER.exec(t)) !== null) ends.push(m.index + (m[1] ?? "").length);
  ends.sort((a, b) => a - b);
  return ends;
}

function headings(c: Compiled, t: string): [number, string][] {
  const out: [number, string][] = [];
  if (!c.sectionRe) return out;
  c.sectionRe.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = c.sectionRe.exec(t)) !== null) {
    const sec = c.sectionOf.get(m[1] ?? "");
    if (sec) out.push([m.index, sec]);
  }
  return out;
}

function isContent(m: Match): boolean {
  const e = m.entry;
  return e.findings.length + e.signs.length > 0 || (e.roles & (R_NORMAL_DESC | R_ABSENCE)) !== 0;
}

function skipSpaces(t: string, i: number): number {
  while (i < t.length && t.charCodeAt(i) === 32) i++;
  return i;
}

/** Extra boundaries before eye words that head what follows them. */
function eyeBreaks(t: string, items: Match[], ends: number[]): number[] {
  const out: number[] = [];
  let k = 0;
  let content = false;
  for (const it of items) {
    while (k < ends.length && (ends[k] as number) <= it.s) {
      k++;
      content = false;
    }
    if (it.entry.eye !== null) {
      const ni = skipSpaces(t, it.e);
      const after = ni < t.length ? t.charCodeAt(ni) : -1;
      // "OD:" "【OS】" head what follows; "(右眼)" and an eye word ending its clause refer back.
      const header = t.charCodeAt(it.e - 1) === 58 || after === 58 || after === 0x3011 || after === 93;
      const suffix = after === 41 || after === -1 || (k < ends.length && ni >= (ends[k] as number));
      if (header || (content && !suffix)) {
        out.push(it.s);
        content = false;
        continue;
      }
    }
    if (isContent(it)) content = true;
  }
  return out;
}

/** True when the eye word at `it` is followed by a marker of an eye not examined (未拍, N/A). */
function notExamined(c: Compiled, t: string, it: Match): boolean {
  let i = it.e;
  while (i < t.length && (t.charCodeAt(i) === 32 || t.charCodeAt(i) === 58)) i++;
  return c.eyeAbsent.some((m) => t.startsWith(m, i));
}

function reportEyeOf(c: Compiled, t: string, items: Match[]): Eye | null {
  let hasL = false;
  let hasR = false;
  for (const it of items) {
    const eye = it.entry.eye;
    if (eye === null || notExamined(c, t, it)) continue;
    if (eye === "both") hasL = hasR = true;
    else if (eye === "left") hasL = true;
    else hasR = true;
  }
  return hasL && hasR ? "both" : hasL ? "left" : hasR ? "right" : null;
}

/** Clauses holding at least one match, in text order, with eye and section. */
export function layout(c: Compiled, t: string, items: Match[]): Layout {
  const base = clauseEnds(t);
  const extra = eyeBreaks(t, items, base);
  const ends = extra.length > 0 ? [...base, ...extra].sort((a, b) => a - b) : base;
  const heads = headings(c, t);
  const reportEye = reportEyeOf(c, t, items);
  const clauses: Clause[] = [];
  let ci = 0;
  let headingPtr = 0;
  let section: string | null = null;
  let carriedEye: Eye | null = null;
  let k = 0;
  while (k < items.length) {
    const s0 = (items[k] as Match).s;
    while (ci < ends.length && (ends[ci] as number) <= s0) ci++;
    const start = ci > 0 ? (ends[ci - 1] as number) : 0;
    const end = ci < ends.length ? (ends[ci] as number) : t.length;
    let j = k;
    while (j < items.length && (items[j] as Match).s < end) j++;
    while (headingPtr < heads.length && (heads[headingPtr] as [number, string])[0] <= s0) {
      section = (heads[headingPtr] as [number, string])[1];
      carriedEye = null;
      headingPtr++;
    }
    let clauseEye: Eye | null = null;
    let lastEye: Eye | null = null;
    for (let q = k; q < j; q++) {
      const eye = (items[q] as Match).entry.eye;
      if (eye) {
        clauseEye ??= eye;
        lastEye = eye;
      }
    }
    const eye = clauseEye ?? carriedEye ?? (reportEye === "both" ? null : reportEye);
    if (lastEye) carriedEye = lastEye;
    clauses.push({ start, end, first: k, last: j, eye, section });
    k = j;
  }
  return { clauses, headings: heads, reportEye };
}

/** Eye in force at a position (for numeric evidence): the last eye word before it in the same section. */
export function eyeAt(items: Match[], pos: number, lay: Layout): Eye | null {
  let lastHeading = -1;
  for (const [p] of lay.headings) if (p <= pos) lastHeading = p;
  let eye: Eye | null = null;
  for (const it of items) {
    if (it.s > pos) break;
    if (it.s < lastHeading) continue;
    if (it.entry.eye) eye = it.entry.eye;
  }
  return eye ?? (lay.reportEye === "both" ? null : lay.reportEye);
}
