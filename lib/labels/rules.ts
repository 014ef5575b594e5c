/**
 * The rules file: expert knowledge as data (lib/labels/rules/zh-fundus.json). A clinician edits
 * synonyms, signs, patterns, implications, cue lists, interchangeable spellings (`equivalents`)
 * and character variants (`chars`) there; this module validates a file and names the path of any
 * bad entry (`labels[4].patterns[0]: invalid regular expression ...`).
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { LABEL_IDS, isLabelId, type LabelId } from "./taxonomy.js";
import { parseJsonText } from "../io/json.js";

export const DEFAULT_RULES_URL = new URL("./rules/zh-fundus.json", import.meta.url);

const text = z.string().min(1, "must be a non-empty string");
const textList = z.array(text);

const labelRule = z.strictObject({
  id: z.string(),
  zh: text,
  en: text,
  synonyms: textList.default([]),
  abbreviations: textList.default([]),
  patterns: textList.default([]),
  implies: z.array(z.string()).default([]),
  exclusions: textList.default([]),
  exclusive: z.boolean().default(false),
  descriptions: textList.default([]),
  /** Described signs that imply the label when the report does not name it (named mentions win). */
  signs: textList.default([]),
  /** Regular expressions for signs (same rules as `patterns`). */
  signPatterns: textList.default([]),
  /** Exclusive label only: generic abnormality words whose negation states a normal fundus (未见 + 异常). */
  absence: textList.default([]),
  /** A treatment (laser): a planning cue before it (建议, 拟行) means it has not been done. */
  treatment: z.boolean().default(false),
  notes: z.string().optional(),
});

const cueSchema = z.strictObject({
  negation: z.strictObject({
    pre: textList,
    post: textList,
    postAtClauseEnd: textList.default([]),
    /** Negating prefixes that act only on the term right after them (非DR; not 非缺血型CRVO). */
    prefix: textList.default([]),
  }),
  uncertainty: z.strictObject({ pre: textList, post: textList, postNearest: textList.default([]) }),
  ruleOut: textList.default([]),
  suggestion: textList.default([]),
  history: z.strictObject({ pre: textList, post: textList, maxGap: z.number().int().min(0).max(20).default(2) }),
  pseudo: textList.default([]),
  terminators: textList.default([]),
  positive: textList.default([]),
  plan: textList.default([]),
});

const numericRule = z.strictObject({
  id: text,
  label: z.string(),
  names: z.array(text).min(1),
  min: z.number().gt(0).lte(1),
  value: z.union([z.literal(1), z.literal(0.5)]),
  notes: z.string().optional(),
});

export const rulesSchema = z.strictObject({
  $comment: z.string().optional(),
  version: z.literal(1),
  language: text,
  labels: z.array(labelRule).min(1),
  cues: cueSchema,
  eyes: z.strictObject({
    right: textList,
    left: textList,
    both: textList,
    /** Written after an eye word: that eye was not examined (未拍, N/A) and does not count. */
    absent: textList.default([]),
  }),
  sections: z.record(z.string(), textList).default({}),
  numeric: z.array(numericRule).default([]),
  /** Groups of interchangeable spellings inside any term ("" = may be left out inside a term). */
  equivalents: z.array(z.array(z.string()).min(2, "an equivalence group needs at least 2 members")).default([]),
  /** One character to one character, applied to reports and terms alike (traditional → simplified). */
  chars: z.record(z.string(), z.string()).default({}),
});

export type LabelRule = z.infer<typeof labelRule> & { id: LabelId };
export type NumericRule = z.infer<typeof numericRule> & { label: LabelId };
export type Rules = Omit<z.infer<typeof rulesSchema>, "labels" | "numeric"> & {
  labels: LabelRule[];
  numeric: NumericRule[];
};

/** A rules file that does not validate; `path` names the bad entry (e.g. `labels[3].patterns[1]`). */
export class RulesError extends Error {
  readonly path: string;
  readonly source: string;
  constructor(source: string, path: string, message: string) {
    super(`rules ${source}: ${path || "(root)"}: ${message}`);
    this.name = "RulesError";
    this.path = path;
    this.source = source;
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) {
    if (typeof p === "number") s += `[${p}]`;
    else s += (s === "" ? "" : ".") + String(p);
  }
  return s;
}

/** Validate a parsed rules object. Throws RulesError naming the first bad entry. */
export function parseRules(input: unknown, source = "<object>"): Rules {
  const r = rulesSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    if (!issue) throw new RulesError(source, "", "invalid rules");
    const p = formatPath(issue.path);
    const keys = "keys" in issue && Array.isArray(issue.keys) ? issue.keys : null;
    const where = keys && keys.length > 0 ? formatPath([...issue.path, String(keys[0])]) : p;
    throw new RulesError(source, where, issue.message);
  }
  const rules = r.data;
  const seen = new Map<string, number>();
  rules.labels.forEach((l, i) => checkLabel(l, i, seen, source));
  rules.labels.forEach((l, i) => {
    l.implies.forEach((t, j) => {
      if (!isLabelId(t))
        throw new RulesError(source, `labels[${i}].implies[${j}]`, `unknown label id ${JSON.stringify(t)}`);
      if (t === l.id) throw new RulesError(source, `labels[${i}].implies[${j}]`, `label ${l.id} implies itself`);
    });
  });
  rules.numeric.forEach((n, i) => {
    if (!isLabelId(n.label))
      throw new RulesError(source, `numeric[${i}].label`, `unknown label id ${JSON.stringify(n.label)}`);
  });
  checkLexicon(rules, source);
  const exclusive = rules.labels.filter((l) => l.exclusive);
  if (exclusive.length > 1)
    throw new RulesError(
      source,
      `labels`,
      `at most one exclusive label (got ${exclusive.map((l) => l.id).join(", ")})`,
    );
  return rules as Rules;
}

type ParsedLabel = z.infer<typeof labelRule>;

function checkLabel(l: ParsedLabel, i: number, seen: Map<string, number>, source: string): void {
  if (!isLabelId(l.id))
    throw new RulesError(
      source,
      `labels[${i}].id`,
      `unknown label id ${JSON.stringify(l.id)} (the taxonomy has: ${LABEL_IDS.join(", ")})`,
    );
  const prev = seen.get(l.id);
  if (prev !== undefined)
    throw new RulesError(
      source,
      `labels[${i}].id`,
      `duplicate label id ${JSON.stringify(l.id)} (first at labels[${prev}])`,
    );
  seen.set(l.id, i);
  if (l.synonyms.length + l.abbreviations.length + l.patterns.length === 0 && !l.exclusive) {
    throw new RulesError(source, `labels[${i}]`, `label ${l.id} has no synonyms, abbreviations or patterns`);
  }
  checkPatterns(l.patterns, `labels[${i}].patterns`, source);
  checkPatterns(l.signPatterns, `labels[${i}].signPatterns`, source);
  l.abbreviations.forEach((a, j) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9\-/]*$/.test(a))
      throw new RulesError(
        source,
        `labels[${i}].abbreviations[${j}]`,
        `abbreviation ${JSON.stringify(a)} must be Latin letters/digits`,
      );
  });
}

function checkPatterns(list: readonly string[], path: string, source: string): void {
  list.forEach((p, j) => {
    try {
      new RegExp(p, "gu");
    } catch (e) {
      throw new RulesError(
        source,
        `${path}[${j}]`,
        `invalid regular expression: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    if (new RegExp(p, "u").test("")) throw new RulesError(source, `${path}[${j}]`, "pattern matches the empty string");
  });
}

function checkLexicon(rules: z.infer<typeof rulesSchema>, source: string): void {
  rules.labels.forEach((l, i) => {
    if (l.absence.length > 0 && !l.exclusive)
      throw new RulesError(source, `labels[${i}].absence`, "absence terms belong to the exclusive (normal) label");
  });
  rules.equivalents.forEach((g, i) => {
    if (g.every((m) => m === ""))
      throw new RulesError(source, `equivalents[${i}]`, "an equivalence group needs a non-empty member");
  });
  for (const [from, to] of Object.entries(rules.chars)) {
    if (from.length !== 1 || to.length !== 1)
      throw new RulesError(
        source,
        `chars.${from}`,
        `must map one character to one character (got ${JSON.stringify(to)})`,
      );
  }
}

/** Read and validate a rules JSON file (the packaged zh-fundus.json by default). */
export function loadRules(path: string | URL = DEFAULT_RULES_URL): Rules {
  const source =
    path instanceof URL ? (path.protocol === "file:" ? decodeURIComponent(path.pathname) : path.href) : path;
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch (e) {
    throw new RulesError(source, "", `cannot read: ${e instanceof Error ? e.message : String(e)}`);
  }
  let obj: unknown;
  try {
    obj = parseJsonText(raw);
  } catch (e) {
    throw new RulesError(source, "", `not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseRules(obj, source);
}
