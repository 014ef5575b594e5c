/**
 * Rules → the tables the engine reads: every term (label synonyms, signs, exclusions, normal
 * statements and descriptions, cues, eye words), normalised and expanded into its spelling
 * variants (lexicon.ts), in one trie keyed by UTF-16 unit; the regular-expression patterns with
 * the literal prefix that must occur for them to match; the numeric rules; the section headings.
 * Each term keeps the name of the rule that produced it, so evidence can say which rule decided.
 */
import type { Eye, LabelId, LabelValue } from "./taxonomy.js";
import type { Rules } from "./rules.js";
import { charTable, normalizeReport, type CharTable } from "./normalize.js";
import { compileEquivalents, expandTerm, type Equivalents } from "./lexicon.js";

// Cue roles of a term (bit flags).
export const R_PRE_NEG = 1 << 0;
export const R_POST_NEG = 1 << 1;
export const R_POST_NEG_END = 1 << 2;
export const R_PRE_UNC = 1 << 3;
export const R_POST_UNC = 1 << 4;
export const R_POST_UNC_NEAR = 1 << 5;
export const R_RULE_OUT = 1 << 6;
export const R_SUGGEST = 1 << 7;
export const R_PRE_HIST = 1 << 8;
export const R_POST_HIST = 1 << 9;
export const R_PSEUDO = 1 << 10;
export const R_TERMINATOR = 1 << 11;
export const R_POSITIVE = 1 << 12;
export const R_NORMAL_DESC = 1 << 13;
export const R_PLAN = 1 << 14;
export const R_ABSENCE = 1 << 15;
export const R_PREFIX_NEG = 1 << 16;

export const PRE_ROLES = R_PRE_NEG | R_PRE_UNC | R_RULE_OUT | R_PRE_HIST;
export const POST_ROLES = R_POST_NEG | R_POST_NEG_END | R_POST_UNC | R_POST_UNC_NEAR | R_POST_HIST | R_POSITIVE;
export const NEG_ROLES = R_PRE_NEG | R_POST_NEG | R_POST_NEG_END | R_PREFIX_NEG;

export interface Entry {
  /** The normalised spelling. */
  text: string;
  roles: number;
  /** Labels this term names, implies as a sign, or excludes; with the rule behind each. */
  findings: number[];
  findingRules: string[];
  signs: number[];
  signRules: string[];
  exclusions: number[];
  exclusionRules: string[];
  /** The rule of a normal statement/description/absence word, or of the cue (first list it is in). */
  rule: string;
  eye: Eye | null;
  /** Latin term: whole-word match only. */
  wordStart: boolean;
  wordEnd: boolean;
}

export interface PatternDef {
  re: RegExp;
  label: number;
  prefix: string;
  rule: string;
  /** A sign pattern (signPatterns) rather than a naming one (patterns). */
  sign: boolean;
}

export interface NumericDef {
  re: RegExp;
  label: number;
  min: number;
  value: LabelValue;
  prefixes: string[];
  rule: string;
}

/** A trie over UTF-16 units; the root level is a flat table for a fast miss on most characters. */
export class Trie {
  private readonly root = new Int32Array(0x10000).fill(-1);
  private readonly next: (Map<number, number> | null)[] = [];
  private readonly entries: (Entry | null)[] = [];

  add(e: Entry): void {
    const s = e.text;
    let node = this.root[s.charCodeAt(0)] as number;
    if (node < 0) this.root[s.charCodeAt(0)] = node = this.newNode();
    for (let i = 1; i < s.length; i++) {
      let m = this.next[node] as Map<number, number> | null;
      if (m === null) this.next[node] = m = new Map();
      const c = s.charCodeAt(i);
      let child = m.get(c);
      if (child === undefined) m.set(c, (child = this.newNode()));
      node = child;
    }
    this.entries[node] = e;
  }

  /** Every term starting at `i` whose word-boundary constraints hold, shortest first, appended to `out`. */
  termsAt(t: string, i: number, out: Entry[]): void {
    let node = this.root[t.charCodeAt(i)] as number;
    if (node < 0) return;
    const n = t.length;
    const startOk = i === 0 || !isAlnum(t.charCodeAt(i - 1));
    let j = i + 1;
    for (;;) {
      const e = this.entries[node] as Entry | null;
      if (e !== null && (startOk || !e.wordStart) && (!e.wordEnd || j >= n || !isWordChar(t.charCodeAt(j))))
        out.push(e);
      if (j >= n) break;
      const m = this.next[node] as Map<number, number> | null;
      const child = m === null ? undefined : m.get(t.charCodeAt(j));
      if (child === undefined) break;
      node = child;
      j++;
    }
  }

  private newNode(): number {
    this.next.push(null);
    this.entries.push(null);
    return this.entries.length - 1;
  }
}

export function isWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
}
export function isAlnum(c: number): boolean {
  return isWordChar(c) || (c >= 48 && c <= 57);
}

export interface Compiled {
  labelIds: LabelId[];
  labelIndex: Map<LabelId, number>;
  trie: Trie;
  /** Every entry by spelling (for tests and tools). */
  entries: Map<string, Entry>;
  patterns: PatternDef[];
  numeric: NumericDef[];
  sectionRe: RegExp | null;
  sectionOf: Map<string, string>;
  exclusiveLabel: number;
  implies: number[][];
  treatment: boolean[];
  historyMaxGap: number;
  chars: CharTable | null;
  /** Normalised markers of an eye that was not examined (eyes.absent). */
  eyeAbsent: string[];
}

const NONE: number[] = [];
const NO_RULES: string[] = [];

/** Builds the entry table; one instance per compile. */
class TermTable {
  readonly entries = new Map<string, Entry>();
  constructor(
    private readonly chars: CharTable | null,
    private readonly eq: Equivalents,
  ) {}

  norm(raw: string): string {
    return normalizeReport(raw, this.chars).text;
  }

  entry(text: string): Entry {
    let e = this.entries.get(text);
    if (!e) {
      e = {
        text,
        roles: 0,
        findings: NONE,
        findingRules: NO_RULES,
        signs: NONE,
        signRules: NO_RULES,
        exclusions: NONE,
        exclusionRules: NO_RULES,
        rule: "",
        eye: null,
        wordStart: isAlnum(text.charCodeAt(0)),
        wordEnd: isWordChar(text.charCodeAt(text.length - 1)),
      };
      this.entries.set(text, e);
    }
    return e;
  }

  /** Every spelling of a raw term: normalised, then its equivalents (Latin abbreviations: as written). */
  spellings(raw: string, expand: boolean): string[] {
    const t = this.norm(raw);
    return t.length === 0 ? [] : expand ? expandTerm(t, this.eq) : [t];
  }

  addLabel(list: readonly string[], li: number, field: string, kind: "findings" | "signs" | "exclusions"): void {
    const expand = !field.endsWith(".abbreviations");
    list.forEach((raw, k) => {
      for (const s of this.spellings(raw, expand)) {
        const e = this.entry(s);
        const rules = kind === "findings" ? "findingRules" : kind === "signs" ? "signRules" : "exclusionRules";
        if (e[kind].includes(li)) continue;
        e[kind] = [...e[kind], li];
        e[rules] = [...e[rules], `${field}[${k}] ${raw}`];
      }
    });
  }

  addRole(list: readonly string[], role: number, field: string, expand = false): void {
    list.forEach((raw, k) => {
      for (const s of this.spellings(raw, expand)) {
        const e = this.entry(s);
        e.roles |= role;
        if (e.rule === "") e.rule = `${field}[${k}] ${raw}`;
      }
    });
  }
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** The literal text a pattern must start with (empty when it starts with a class or group). */
export function literalPrefix(src: string): string {
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

function addLabels(tt: TermTable, rules: Rules, patterns: PatternDef[]): void {
  rules.labels.forEach((l, li) => {
    const id = l.id;
    tt.addLabel(l.synonyms, li, `${id}.synonyms`, "findings");
    tt.addLabel(l.abbreviations, li, `${id}.abbreviations`, "findings");
    tt.addLabel(l.signs, li, `${id}.signs`, "signs");
    tt.addLabel(l.exclusions, li, `${id}.exclusions`, "exclusions");
    tt.addRole(l.descriptions, R_NORMAL_DESC, `${id}.descriptions`, true);
    tt.addRole(l.absence, R_ABSENCE, `${id}.absence`, true);
    for (const [list, sign] of [
      [l.patterns, false],
      [l.signPatterns, true],
    ] as const) {
      const field = sign ? "signPatterns" : "patterns";
      list.forEach((p, k) => {
        const rule = `${id}.${field}[${k}] ${p}`;
        patterns.push({ re: new RegExp(p, "gu"), label: li, prefix: literalPrefix(p), rule, sign });
      });
    }
  });
}

function addCues(tt: TermTable, rules: Rules): void {
  const c = rules.cues;
  const lists: [readonly string[], number, string][] = [
    [c.negation.pre, R_PRE_NEG, "cues.negation.pre"],
    [c.negation.post, R_POST_NEG, "cues.negation.post"],
    [c.negation.postAtClauseEnd, R_POST_NEG_END, "cues.negation.postAtClauseEnd"],
    [c.negation.prefix, R_PREFIX_NEG, "cues.negation.prefix"],
    [c.uncertainty.pre, R_PRE_UNC, "cues.uncertainty.pre"],
    [c.uncertainty.post, R_POST_UNC, "cues.uncertainty.post"],
    [c.uncertainty.postNearest, R_POST_UNC_NEAR, "cues.uncertainty.postNearest"],
    [c.ruleOut, R_RULE_OUT, "cues.ruleOut"],
    [c.suggestion, R_SUGGEST, "cues.suggestion"],
    [c.history.pre, R_PRE_HIST, "cues.history.pre"],
    [c.history.post, R_POST_HIST, "cues.history.post"],
    [c.pseudo, R_PSEUDO, "cues.pseudo"],
    [c.terminators, R_TERMINATOR, "cues.terminators"],
    [c.positive, R_POSITIVE, "cues.positive"],
    [c.plan, R_PLAN, "cues.plan"],
  ];
  for (const [list, role, field] of lists) tt.addRole(list, role, field);
  for (const eye of ["right", "left", "both"] as const) {
    for (const raw of rules.eyes[eye]) for (const s of tt.spellings(raw, false)) tt.entry(s).eye = eye;
  }
  for (const e of tt.entries.values()) {
    // A post-cue that must end its clause (or be nearest) is not a plain post-cue.
    if (e.roles & R_POST_NEG_END) e.roles &= ~R_POST_NEG;
    if (e.roles & R_POST_UNC_NEAR) e.roles &= ~R_POST_UNC;
  }
}

function compileNumeric(rules: Rules, labelIndex: Map<LabelId, number>, norm: (s: string) => string): NumericDef[] {
  return rules.numeric.map((n, k) => {
    const names = n.names.map((x) => escapeRe(norm(x))).sort((a, b) => b.length - a.length);
    const value = String.raw`(\d+(?:\.\d+)?(?:\s*/\s*\d+)?|\.\d+)`;
    const upper = String.raw`(?:\s*[-~至到]\s*(\d*\.\d+))?`;
    const re = new RegExp(`(?:${names.join("|")})(?:比值|比|值)?[^0-9,;。\\n]{0,6}?${value}${upper}`, "g");
    return {
      re,
      label: labelIndex.get(n.label) ?? -1,
      min: n.min,
      value: n.value,
      prefixes: n.names.map(norm),
      rule: `numeric[${k}] ${n.id}`,
    };
  });
}

function compileSections(rules: Rules, norm: (s: string) => string): { re: RegExp | null; of: Map<string, string> } {
  const heads: string[] = [];
  const of = new Map<string, string>();
  for (const [section, words] of Object.entries(rules.sections)) {
    for (const w of words) {
      const t = norm(w);
      heads.push(t);
      of.set(t, section);
    }
  }
  heads.sort((a, b) => b.length - a.length);
  const re = heads.length > 0 ? new RegExp(`(${heads.map(escapeRe).join("|")})\\s*(?::|】|\\])`, "g") : null;
  return { re, of };
}

/** Compile validated rules into the engine's tables. */
export function compileRules(rules: Rules): Compiled {
  const labelIds = rules.labels.map((l) => l.id);
  const labelIndex = new Map<LabelId, number>(labelIds.map((id, i) => [id, i]));
  const chars = Object.keys(rules.chars).length > 0 ? charTable(rules.chars) : null;
  const norm = (s: string): string => normalizeReport(s, chars).text;
  const eq = compileEquivalents(rules.equivalents.map((g) => g.map((m) => (m === "" ? "" : norm(m)))));
  const tt = new TermTable(chars, eq);
  const patterns: PatternDef[] = [];
  addLabels(tt, rules, patterns);
  addCues(tt, rules);
  const trie = new Trie();
  for (const e of tt.entries.values()) if (e.text.length > 0) trie.add(e);
  const sections = compileSections(rules, norm);
  return {
    labelIds,
    labelIndex,
    trie,
    entries: tt.entries,
    patterns,
    numeric: compileNumeric(rules, labelIndex, norm),
    sectionRe: sections.re,
    sectionOf: sections.of,
    exclusiveLabel: rules.labels.findIndex((l) => l.exclusive),
    implies: rules.labels.map((l) => l.implies.map((t) => labelIndex.get(t as LabelId) ?? -1).filter((k) => k >= 0)),
    treatment: rules.labels.map((l) => l.treatment),
    historyMaxGap: rules.cues.history.maxGap,
    chars,
    eyeAbsent: rules.eyes.absent.map(norm).filter((x) => x.length > 0),
  };
}
