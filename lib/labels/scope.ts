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

// Character classes for the clause scan: 1 clause boundary, 2 digit, 4 Chinese numeral, 8 "(",
// 16 a place a list item may follow (space or , ; : 。 、 |), 32 ".".
const CLASS = new Uint8Array(0x10000);
for (const c of [0x3002, 44, 59, 33, 58, 10, 13, 0x3010, 0x3011]) CLASS[c] = 1;
for (let c = 48; c <= 57; c++) CLASS[c] = 2;
for (const ch of "一二三四五六七八九十") CLASS[ch.charCodeAt(0)] = 4;
CLASS[40] = 8;
CLASS[46] = 32;
for (const c of [32, 9, 10, 13, 44, 59, 58, 0x3002, 0x3001, 124]) CLASS[c] = (CLASS[c] as number) | 16;

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isNumeral(c: number): boolean {
  return ((CLASS[c] as number) & 4) !== 0;
}

/** Where a list item may start: text start, a space or punctuation (, ; : 。 、 |). */
function itemStart(t: string, i: number): boolean {
  return i === 0 || ((CLASS[t.charCodeAt(i - 1)] as number) & 16) !== 0;
}

/** A list number at i ("1、" "2." "4)" "一、" "(3)" "(二)"): its length, else 0. */
function listNumberAt(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 40) {
    let j = i + 1;
    const digits = isDigit(t.charCodeAt(j));
    while (j < t.length && j - i <= 2 && (digits ? isDigit(t.charCodeAt(j)) : isNumeral(t.charCodeAt(j)))) j++;
    return j > i + 1 && t.charCodeAt(j) === 41 ? j + 1 - i : 0;
  }
  const digits = isDigit(c);
  if (!digits && !isNumeral(c)) return 0;
  if (!itemStart(t, i)) return 0;
  let j = i + 1;
  if (j < t.length && (digits ? isDigit(t.charCodeAt(j)) : isNumeral(t.charCodeAt(j)))) j++;
  const d = t.charCodeAt(j);
  if (d === 0x3001) return j + 1 - i;
  if (digits && (d === 41 || (d === 46 && !isDigit(t.charCodeAt(j + 1))))) return j + 1 - i;
  return 0;
}

/** Sorted clause end offsets (exclusive) from punctuation and list numbers. */
export function clauseEnds(t: string): number[] {
  const ends: number[] = [];
  const n = t.length;
  let sorted = true;
  for (let i = 0; i < n; i++) {
    const k = CLASS[t.charCodeAt(i)] as number;
    if (k === 0 || k === 16) continue;
    if (k & 1) ends.push(i);
    else if (k & 32) {
      const p = i > 0 ? t.charCodeAt(i - 1) : 0;
      if (!(isDigit(p) && isDigit(i + 1 < n ? t.charCodeAt(i + 1) : 0))) ends.push(i);
    }
    if (k & 14 && listNumberAt(t, i) > 0) {
      // The number itself starts the next clause; its own "." or ")" was pushed after it.
      if (ends.length > 0 && (ends[ends.length - 1] as number) > i) sorted = false;
      ends.push(i);
    }
  }
  if (!sorted) ends.sort((a, b) => a - b);
  return ends;
}

/**
 * Headings in text order from the trie's (start, end, section) hits: at one start the longest
 * heading word, and none inside the previous heading ("所见" in "检查所见:").
 */
function headingsOf(c: Compiled, hits: readonly number[]): [number, string][] {
  const out: [number, string][] = [];
  let lastEnd = -1;
  for (let k = 0; k < hits.length; k += 3) {
    const start = hits[k] as number;
    const end = hits[k + 1] as number;
    const name = c.sections[hits[k + 2] as number] as string;
    const prev = out[out.length - 1];
    if (prev && prev[0] === start) {
      prev[1] = name;
      lastEnd = end;
    } else if (start >= lastEnd) {
      out.push([start, name]);
      lastEnd = end;
    }
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
  for (const m of c.eyeAbsent) if (t.startsWith(m, i)) return true;
  return false;
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
export function layout(c: Compiled, t: string, items: Match[], headingHits: readonly number[]): Layout {
  const base = clauseEnds(t);
  const extra = eyeBreaks(t, items, base);
  const ends = extra.length > 0 ? [...base, ...extra].sort((a, b) => a - b) : base;
  const heads = headingsOf(c, headingHits);
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
