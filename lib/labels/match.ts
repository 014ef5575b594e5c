/**
 * Step 1 of labelling: every term and pattern of the rules found in the normalised text. At each
 * position the trie gives every term whose word-boundary constraints hold; patterns add their
 * matches (a pattern runs only when the literals it requires occur in the text); where matches
 * overlap, the longest wins (NPDR over PDR, 非增殖期 over 增殖期, 不除外 over 除外, 白内障术后 over
 * 白内障), literal terms before patterns on ties, then leftmost. Every term at a position competes,
 * so a shorter one fills in where the longest loses an overlap (视网膜无明显病变: 明显病变 takes 明显,
 * 无 is still the cue).
 *
 * Candidates live in reused typed arrays and are taken longest first by bucketing on length, so a
 * report allocates only the matches it keeps.
 */
import type { Compiled, Entry, PatternDef, TrieHits } from "./compile.js";

export interface Match {
  s: number;
  e: number;
  entry: Entry;
  /** True when a regular-expression pattern (not a literal term) matched. */
  pattern: boolean;
}

const NONE: number[] = [];
const NO_RULES: string[] = [];

function patternEntry(text: string, p: PatternDef): Entry {
  return {
    text,
    roles: 0,
    findings: p.sign ? NONE : [p.label],
    findingRules: p.sign ? NO_RULES : [p.rule],
    signs: p.sign ? [p.label] : NONE,
    signRules: p.sign ? [p.rule] : NO_RULES,
    exclusions: NONE,
    exclusionRules: NO_RULES,
    rule: "",
    eye: null,
    wordStart: false,
    wordEnd: false,
  };
}

/** Scratch space shared by all reports (labelling is synchronous). */
class Candidates {
  start = new Int32Array(256);
  entry = new Int32Array(256);
  n = 0;
  /** Pattern matches, after the literal ones: [start, end, entry]. */
  patterns: Match[] = [];
  taken = new Uint8Array(1024);
  /** Length buckets: first candidate of each length, and the next of the same length. */
  head = new Int32Array(32);
  next = new Int32Array(256);

  reserve(extra: number): void {
    if (this.n + extra <= this.start.length) return;
    const size = Math.max(this.start.length * 2, this.n + extra);
    const s = new Int32Array(size);
    s.set(this.start);
    const e = new Int32Array(size);
    e.set(this.entry);
    this.start = s;
    this.entry = e;
  }
}

const cand = new Candidates();
const hits: TrieHits = { headings: [], triggers: new Int32Array(64), stamp: 0 };

function required(p: PatternDef): boolean {
  for (const anyOf of p.required) {
    let ok = false;
    for (const k of anyOf) {
      if (hits.triggers[k] === hits.stamp) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

function collect(c: Compiled, t: string): number {
  const n = t.length;
  cand.n = 0;
  cand.patterns.length = 0;
  hits.headings.length = 0;
  if (hits.triggers.length < c.triggers) hits.triggers = new Int32Array(c.triggers * 2);
  // A new stamp marks this report's trigger literals (no clearing).
  if (++hits.stamp >= 0x7fffffff) {
    hits.triggers.fill(0);
    hits.stamp = 1;
  }
  let maxLen = 0;
  const trie = c.trie;
  const root = trie.root;
  const lengths = trie.entryLength;
  for (let i = 0; i < n; i++) {
    if ((root[t.charCodeAt(i)] as number) < 0) continue;
    if (cand.n + 32 > cand.start.length) cand.reserve(32);
    const from = cand.n;
    const to = trie.termsAt(t, i, cand.entry, from, hits);
    for (let k = from; k < to; k++) {
      cand.start[k] = i;
      const len = lengths[cand.entry[k] as number] as number;
      if (len > maxLen) maxLen = len;
    }
    cand.n = to;
  }
  for (const p of c.patterns) {
    if (!required(p)) continue;
    p.re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = p.re.exec(t)) !== null) {
      if (m[0].length === 0) {
        p.re.lastIndex++;
        continue;
      }
      cand.patterns.push({ s: m.index, e: m.index + m[0].length, entry: patternEntry(m[0], p), pattern: true });
      if (m[0].length > maxLen) maxLen = m[0].length;
    }
  }
  return maxLen;
}

function take(s: number, e: number): boolean {
  const taken = cand.taken;
  for (let k = s; k < e; k++) if (taken[k]) return false;
  taken.fill(1, s, e);
  return true;
}

/**
 * Non-overlapping matches in text order, and the section headings seen (triples of start, end and
 * section index into `c.sections`).
 */
export function findMatches(c: Compiled, t: string): { items: Match[]; headings: number[] } {
  const maxLen = collect(c, t);
  const items: Match[] = [];
  const headings = hits.headings;
  if (maxLen === 0) return { items, headings };
  if (cand.taken.length < t.length) cand.taken = new Uint8Array(Math.max(t.length, cand.taken.length * 2));
  cand.taken.fill(0, 0, t.length);
  const entries = c.trie.entries;
  // Bucket the literal candidates by length (each bucket in text order), then take the longest first.
  if (cand.head.length <= maxLen) cand.head = new Int32Array(maxLen + 1);
  if (cand.next.length < cand.n) cand.next = new Int32Array(cand.start.length);
  const head = cand.head;
  const next = cand.next;
  head.fill(-1, 0, maxLen + 1);
  const lengths = c.trie.entryLength;
  for (let k = cand.n - 1; k >= 0; k--) {
    const len = lengths[cand.entry[k] as number] as number;
    next[k] = head[len] as number;
    head[len] = k;
  }
  for (let len = maxLen; len > 0; len--) {
    for (let k = head[len] as number; k >= 0; k = next[k] as number) {
      const s = cand.start[k] as number;
      if (take(s, s + len))
        items.push({ s, e: s + len, entry: entries[cand.entry[k] as number] as Entry, pattern: false });
    }
    for (const m of cand.patterns) if (m.e - m.s === len && take(m.s, m.e)) items.push(m);
  }
  items.sort(byStart);
  return { items, headings };
}

function byStart(a: Match, b: Match): number {
  return a.s - b.s;
}
