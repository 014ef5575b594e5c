/**
 * Step 1 of labelling: every term and pattern of the rules found in the normalised text. At each
 * position the trie gives every term whose word-boundary constraints hold; patterns add their
 * matches; where matches overlap, the longest wins (NPDR over PDR, 非增殖期 over 增殖期,
 * 不除外 over 除外, 白内障术后 over 白内障), literal terms before patterns on ties, then leftmost.
 */
import type { Compiled, Entry, PatternDef } from "./compile.js";

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

function candidates(c: Compiled, t: string): Match[] {
  const raw: Match[] = [];
  const n = t.length;
  const found: Entry[] = [];
  for (let i = 0; i < n; i++) {
    c.trie.termsAt(t, i, found);
    // All terms at a position compete: a shorter one fills in where the longest loses an overlap
    // (视网膜无明显病变: 明显病变 takes 明显, 无 is still the cue).
    for (const e of found) raw.push({ s: i, e: i + e.text.length, entry: e, pattern: false });
    found.length = 0;
  }
  for (const p of c.patterns) {
    if (p.prefix !== "" && !t.includes(p.prefix)) continue;
    p.re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = p.re.exec(t)) !== null) {
      if (m[0].length === 0) {
        p.re.lastIndex++;
        continue;
      }
      raw.push({ s: m.index, e: m.index + m[0].length, entry: patternEntry(m[0], p), pattern: true });
    }
  }
  return raw;
}

/** Non-overlapping matches in text order. */
export function findMatches(c: Compiled, t: string): Match[] {
  const raw = candidates(c, t);
  if (raw.length === 0) return raw;
  raw.sort((a, b) => b.e - b.s - (a.e - a.s) || Number(a.pattern) - Number(b.pattern) || a.s - b.s);
  const taken = new Uint8Array(t.length);
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
  return items;
}
