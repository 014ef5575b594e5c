/**
 * The rules file: expert knowledge as data (lib/labels/rules/zh-fundus.json). A clinician edits
 * synonyms, patterns, implications and cue lists there; this module validates a file and names the
 * path of any bad entry (`labels[4].patterns[0]: invalid regular expression ...`).
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
  notes: z.string().optional(),
});

const cueSchema = z.strictObject({
  negation: z.strictObject({ pre: textList, post: textList, postAtClauseEnd: textList.default([]) }),
  uncertainty: z.strictObject({ pre: textList, post: textList, postNearest: textList.default([]) }),
  ruleOut: textList.default([]),
  suggestion: textList.default([]),
  history: z.strictObject({ pre: textList, post: textList, maxGap: z.number().int().min(0).max(20).default(2) }),
  pseudo: textList.default([]),
  terminators: textList.default([]),
  positive: textList.default([]),
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
  eyes: z.strictObject({ right: textList, left: textList, both: textList }),
  sections: z.record(z.string(), textList).default({}),
  numeric: z.array(numericRule).default([]),
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
  rules.labels.forEach((l, i) => {
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
    l.patterns.forEach((p, j) => {
      try {
        new RegExp(p, "gu");
      } catch (e) {
        throw new RulesError(
          source,
          `labels[${i}].patterns[${j}]`,
          `invalid regular expression: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      if (new RegExp(p, "u").test("")) {
        throw new RulesError(source, `labels[${i}].patterns[${j}]`, "pattern matches the empty string");
      }
    });
    l.abbreviations.forEach((a, j) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9\-/]*$/.test(a))
        throw new RulesError(
          source,
          `labels[${i}].abbreviations[${j}]`,
          `abbreviation ${JSON.stringify(a)} must be Latin letters/digits`,
        );
    });
  });
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
  const exclusive = rules.labels.filter((l) => l.exclusive);
  if (exclusive.length > 1)
    throw new RulesError(
      source,
      `labels`,
      `at most one exclusive label (got ${exclusive.map((l) => l.id).join(", ")})`,
    );
  return rules as Rules;
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
