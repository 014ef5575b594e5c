/**
 * Options the sharp way: a zod schema per native class owns every default and every check, and the
 * class hands LibTorch a complete options object, which native/bridge.h's strict readers take as it
 * is (a wrong type there is a TypeError naming the option; C++ keeps only the checks that need
 * tensors, vocabularies or devices).
 *
 * Each schema is built from an exported `...Fields` object whose JSDoc says `Default: <value>`;
 * test/option-defaults.test.ts checks every such line against the schema's default, so the
 * documented default (visible in the `.d.ts`) is the effective one.
 *
 * Errors name the option (`options.queueSize: expected an integer`): a value of the wrong type (or
 * an unknown key) is a TypeError, a value of the right type outside what the option allows is a
 * RangeError, as the native checks were before them.
 */
import { z } from "zod";

type Issue = z.core.$ZodIssue;

/** A seed of a random initialisation: an integer in [0, 2^53 − 1]. */
export const seedSchema = () => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const loadStateFields = {
  /** Fail on missing or unexpected tensors. Default: true. */
  strict: z.boolean().default(true),
};
export const loadStateSchema = z.object(loadStateFields).strict();
/** loadStateDict's options (ViLReF, Segmenter). */
export type LoadStateOptions = z.input<typeof loadStateSchema>;
/** What loadStateDict reports: names the state lacked and names the module does not have. */
export interface KeyReport {
  missing: string[];
  unexpected: string[];
}

const TYPE_NAMES: Record<string, string> = {
  number: "a number",
  int: "an integer",
  boolean: "a boolean",
  string: "a string",
  array: "an array",
  tuple: "an array",
  object: "an object",
  record: "an object",
  bigint: "a bigint",
};

/** The value at `path` inside `root` (undefined where the path leaves it). */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const key of path)
    v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[key] : undefined;
  return v;
}

function pathText(name: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : `${acc}.${String(key)}`),
    name,
  );
}

/** `"a", "b" or "c"`. */
export function quotedList(values: readonly unknown[]): string {
  const q = values.map((v) => JSON.stringify(v));
  return q.length > 1 ? `${q.slice(0, -1).join(", ")} or ${q.at(-1)}` : (q[0] ?? "");
}

/** One issue as [is it a type error, message without the option's name]. */
function describe(issue: Issue, input: unknown): [boolean, string] {
  switch (issue.code) {
    case "invalid_type": {
      // NaN and ±Infinity are numbers of a value no option allows: a RangeError
      const got = valueAt(input, issue.path);
      if (issue.expected === "number" && typeof got === "number")
        return [false, `expected a finite number, got ${got}`];
      return [true, `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`];
    }
    case "invalid_value": {
      const values = issue.values as readonly unknown[];
      const got = valueAt(input, issue.path);
      return [!values.some((v) => typeof v === typeof got), `expected ${quotedList(values)}`];
    }
    case "unrecognized_keys":
      return [true, `unknown option${issue.keys.length > 1 ? "s" : ""} ${quotedList(issue.keys)}`];
    case "invalid_union":
      return [true, issue.message];
    default:
      return [false, issue.message];
  }
}

/** A TypeError or RangeError naming each failing option under `name` (e.g. "options"). */
export function optionsError(error: z.ZodError, input: unknown, name: string): TypeError | RangeError {
  let typeError = false;
  const lines = error.issues.map((issue) => {
    const [isType, message] = describe(issue, input);
    typeError ||= isType;
    return `${pathText(name, issue.path)}: ${message}`;
  });
  return typeError ? new TypeError(lines.join("; ")) : new RangeError(lines.join("; "));
}

/**
 * Parses options with their schema (undefined: all defaults); throws a TypeError/RangeError
 * naming the option. The result is complete: every option with a default holds it.
 */
export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, name = "options"): z.output<S> {
  const input = value === undefined ? {} : value;
  const r = schema.safeParse(input);
  if (!r.success) throw optionsError(r.error, input, name);
  return r.data;
}
