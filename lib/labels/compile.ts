/**
 * Rules → the tables the engine reads: every term (label synonyms, signs, exclusions, normal
 * statements and descriptions, cues, eye words), normalised and expanded into its spelling
 * variants (lexicon.ts), in one trie keyed by UTF-16 unit; the regular-expression patterns with
 * the literals they need (found by the same trie walk, so a pattern runs only where it can match);
 * the numeric rules; the section heading words (also in the trie).
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
  /** Literals the pattern needs: one of each set must occur in the text for it to run (trigger indexes). */
  required: number[][];
}

export interface NumericDef {
  re: RegExp;
  label: number;
  min: number;
  value: LabelValue;
  prefixes: string[];
  rule: string;
}

/** What a trie walk saw besides terms: section headings (start, end, section index) and trigger literals. */
export interface TrieHits {
  headings: number[];
  /** Per trigger literal: the stamp of the last report it occurred in. */
  triggers: Int32Array;
  stamp: number;
}

/** A heading word ends at j when ":", "】" or "]" follows (spaces allowed). */
function isHeadingEnd(t: string, j: number): boolean {
  while (j < t.length && t.charCodeAt(j) === 32) j++;
  const c = j < t.length ? t.charCodeAt(j) : 0;
  return c === 58 || c === 0x3011 || c === 93;
}

function grow(a: Int32Array, fill: number) {
  const b = new Int32Array(a.length * 2).fill(fill);
  b.set(a);
  return b;
}

/**
 * A trie over UTF-16 units. The root level is a flat table (a fast miss on most characters); a node
 * with one child keeps it in two typed arrays, a node with more children in a Map.
 */
export class Trie {
  /** First node of each UTF-16 unit (-1: no term starts with it). */
  readonly root = new Int32Array(0x10000).fill(-1);
  private oneChar = new Int32Array(64).fill(-1);
  private oneNode = new Int32Array(64);
  private readonly many: (Map<number, number> | null)[] = [];
  /** Entry ending at each node (index into `entries`, -1 none). */
  private terminal = new Int32Array(64).fill(-1);
  /** A section heading (index into `sections`) or a pattern trigger literal (index) ending at each node. */
  private section = new Int32Array(64).fill(-1);
  private trigger = new Int32Array(64).fill(-1);
  /** Per node: 1 a term ends here, 2 a trigger literal, 4 a section heading word. */
  private flags = new Uint8Array(64);
  readonly entries: Entry[] = [];
  /** Length of each entry's text, by entry index. */
  entryLength = new Int32Array(64);
  private nodes = 0;

  // (path() may grow the arrays: take the node before indexing them.)
  add(e: Entry): void {
    const k = this.entries.length;
    this.entries.push(e);
    if (k >= this.entryLength.length) this.entryLength = grow(this.entryLength, 0);
    this.entryLength[k] = e.text.length;
    const node = this.path(e.text);
    this.terminal[node] = k;
    this.flags[node] = (this.flags[node] as number) | 1;
  }

  /** A section heading word (found where followed by ":", "】" or "]"). */
  addSection(text: string, section: number): void {
    const node = this.path(text);
    this.section[node] = section;
    this.flags[node] = (this.flags[node] as number) | 4;
  }

  /** A literal some pattern requires (found anywhere, word boundaries aside). */
  addTrigger(text: string, index: number): void {
    const node = this.path(text);
    this.trigger[node] = index;
    this.flags[node] = (this.flags[node] as number) | 2;
  }

  private path(s: string): number {
    let node = this.root[s.charCodeAt(0)] as number;
    if (node < 0) this.root[s.charCodeAt(0)] = node = this.newNode();
    for (let i = 1; i < s.length; i++) node = this.child(node, s.charCodeAt(i)) ?? this.addChild(node, s.charCodeAt(i));
    return node;
  }

  /**
   * Every term starting at `i` whose word-boundary constraints hold, shortest first: their entry
   * indexes are written to `out` from `at`; returns the new end.
   */
  termsAt(t: string, i: number, out: Int32Array, at: number, hits: TrieHits): number {
    let node = this.root[t.charCodeAt(i)] as number;
    if (node < 0) return at;
    const n = t.length;
    const startOk = i === 0 || !isAlnum(t.charCodeAt(i - 1));
    for (let j = i + 1; ; j++) {
      const f = this.flags[node] as number;
      if (f !== 0) {
        if (f & 1) {
          const k = this.terminal[node] as number;
          const e = this.entries[k] as Entry;
          if ((startOk || !e.wordStart) && (!e.wordEnd || j >= n || !isWordChar(t.charCodeAt(j)))) out[at++] = k;
        }
        if (f & 2) hits.triggers[this.trigger[node] as number] = hits.stamp;
        if (f & 4 && isHeadingEnd(t, j)) hits.headings.push(i, j, this.section[node] as number);
      }
      if (j >= n) return at;
      const c = t.charCodeAt(j);
      if (this.oneChar[node] === c) node = this.oneNode[node] as number;
      else {
        const next = this.many[node]?.get(c);
        if (next === undefined) return at;
        node = next;
      }
    }
  }

  private child(node: number, c: number): number | undefined {
    if (this.oneChar[node] === c) return this.oneNode[node] as number;
    return this.many[node]?.get(c);
  }

  private addChild(node: number, c: number): number {
    const k = this.newNode();
    if (this.oneChar[node] === -1 && !this.many[node]) {
      this.oneChar[node] = c;
      this.oneNode[node] = k;
    } else {
      let m = this.many[node];
      if (!m) this.many[node] = m = new Map();
      m.set(c, k);
    }
    return k;
  }

  private newNode(): number {
    const k = this.nodes++;
    if (k >= this.terminal.length) {
      this.oneChar = grow(this.oneChar, -1);
      this.oneNode = grow(this.oneNode, 0);
      this.terminal = grow(this.terminal, -1);
      this.section = grow(this.section, -1);
      this.trigger = grow(this.trigger, -1);
      const f = new Uint8Array(this.flags.length * 2);
      f.set(this.flags);
      this.flags = f;
    }
    this.many.push(null);
    return k;
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
  /** Section names, indexed as the trie reports headings. */
  sections: string[];
  /** How many trigger literals the trie knows. */
  triggers: number;
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

const SPECIAL = "\\^$.|?*+()[]{}";

/** The literal prefix of each alternative of a group body ("a|bc|d(?!x)" → a, bc, d); null when one has none. */
function alternatives(body: string): string[] | null {
  const out: string[] = [];
  for (const alt of body.split("|")) {
    let lit = literalPrefix(alt);
    if (lit === "" || /[\\[(]/.test(alt.slice(0, lit.length))) return null;
    out.push(lit);
  }
  return out;
}

/** The end of the group or class opened at `i` (index of its closing bracket). */
function closing(src: string, i: number): number {
  const open = src[i] as string;
  const close = open === "[" ? "]" : ")";
  let depth = 0;
  for (let k = i; k < src.length; k++) {
    const ch = src[k] as string;
    if (ch === "\\") k++;
    else if (ch === "[" && open === "(") k = closing(src, k);
    else if (ch === open) depth++;
    else if (ch === close && --depth === 0) return k;
  }
  return src.length - 1;
}

/**
 * Literals a pattern cannot match without, from its top-level sequence: runs of plain characters
 * and mandatory (?:a|b) groups of literal alternatives. Each set lists alternatives (one must occur).
 * An empty result means "always run it".
 */
export function patternRequirements(src: string): string[][] {
  const sets: string[][] = [];
  let run = "";
  const flush = (): void => {
    if (run !== "") sets.push([run]);
    run = "";
  };
  for (let i = 0; i < src.length; i++) {
    const ch = src[i] as string;
    const q = src[i + 1] ?? "";
    const optional = q === "?" || q === "*" || q === "{";
    if (ch === "|") return [];
    if (ch === "(" || ch === "[") {
      const end = closing(src, i);
      const after = src[end + 1] ?? "";
      flush();
      if (ch === "(" && src.startsWith("(?:", i) && !"?*{".includes(after || "x")) {
        const alts = alternatives(src.slice(i + 3, end));
        if (alts) sets.push(alts);
      }
      i = end;
    } else if (ch === "{") {
      flush();
      i = Math.max(i, src.indexOf("}", i));
    } else if (ch === "\\" || SPECIAL.includes(ch)) {
      flush();
      if (ch === "\\") i++;
    } else if (optional) flush();
    else run += ch;
  }
  flush();
  return sets;
}

function addLabels(tt: TermTable, rules: Rules, patterns: { src: string; def: PatternDef }[]): void {
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
        const def = { re: new RegExp(p, "gu"), label: li, prefix: literalPrefix(p), rule, sign, required: [] };
        patterns.push({ src: p, def });
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

function compileSections(rules: Rules, norm: (s: string) => string, trie: Trie): string[] {
  const names: string[] = [];
  for (const [section, words] of Object.entries(rules.sections)) {
    names.push(section);
    for (const w of words) {
      const t = norm(w);
      if (t.length > 0) trie.addSection(t, names.length - 1);
    }
  }
  return names;
}

/** Give every literal the patterns require a trigger index in the trie. */
function compileTriggers(patterns: readonly { src: string; def: PatternDef }[], trie: Trie): number {
  const index = new Map<string, number>();
  for (const { src, def } of patterns) {
    const sets = patternRequirements(src).sort(
      (a, b) => Math.min(...b.map((x) => x.length)) - Math.min(...a.map((x) => x.length)),
    );
    def.required = sets.map((set) =>
      set.map((lit) => {
        let k = index.get(lit);
        if (k === undefined) {
          index.set(lit, (k = index.size));
          trie.addTrigger(lit, k);
        }
        return k;
      }),
    );
  }
  return index.size;
}

/** Compile validated rules into the engine's tables. */
export function compileRules(rules: Rules): Compiled {
  const labelIds = rules.labels.map((l) => l.id);
  const labelIndex = new Map<LabelId, number>(labelIds.map((id, i) => [id, i]));
  const chars = Object.keys(rules.chars).length > 0 ? charTable(rules.chars) : null;
  const norm = (s: string): string => normalizeReport(s, chars).text;
  const eq = compileEquivalents(rules.equivalents.map((g) => g.map((m) => (m === "" ? "" : norm(m)))));
  const tt = new TermTable(chars, eq);
  const patterns: { src: string; def: PatternDef }[] = [];
  addLabels(tt, rules, patterns);
  addCues(tt, rules);
  const trie = new Trie();
  for (const e of tt.entries.values()) if (e.text.length > 0) trie.add(e);
  return {
    labelIds,
    labelIndex,
    trie,
    entries: tt.entries,
    patterns: patterns.map((p) => p.def),
    numeric: compileNumeric(rules, labelIndex, norm),
    sections: compileSections(rules, norm, trie),
    triggers: compileTriggers(patterns, trie),
    exclusiveLabel: rules.labels.findIndex((l) => l.exclusive),
    implies: rules.labels.map((l) => l.implies.map((t) => labelIndex.get(t as LabelId) ?? -1).filter((k) => k >= 0)),
    treatment: rules.labels.map((l) => l.treatment),
    historyMaxGap: rules.cues.history.maxGap,
    chars,
    eyeAbsent: rules.eyes.absent.map(norm).filter((x) => x.length > 0),
  };
}
