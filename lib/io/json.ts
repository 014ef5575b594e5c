/**
 * JSON from files a user hands vilref (checkpoint headers and metadata, configs, manifests, state
 * files), with a nesting limit. V8's JSON.parse reads any depth, but what walks the value next —
 * zod, JSON.stringify, vilref's own code — recurses and fails with "Maximum call stack size
 * exceeded", naming nothing. Every vilref format nests a few levels; the default limit of 100 is
 * far above that. Errors name the source (a file, `file:line`, or a field).
 */
import { readFileSync } from "node:fs";

export const DEFAULT_MAX_JSON_DEPTH = 100;

export class JsonInputError extends Error {
  override name = "JsonInputError";
  constructor(
    message: string,
    readonly source: string,
  ) {
    super(message);
  }
}

/**
 * The index at which `text` nests deeper than `maxDepth` arrays and objects, or -1. A linear scan
 * that skips strings (with their escapes); it does not validate the JSON.
 */
export function jsonDepthViolation(text: string, maxDepth = DEFAULT_MAX_JSON_DEPTH): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/**
 * JSON.parse with a nesting limit, for callers that add the file and line themselves: throws
 * "JSON nested deeper than N levels (at character i)", or JSON.parse's own SyntaxError.
 */
export function parseJsonText(text: string, maxDepth = DEFAULT_MAX_JSON_DEPTH): unknown {
  const at = jsonDepthViolation(text, maxDepth);
  if (at >= 0) throw new SyntaxError(`JSON nested deeper than ${maxDepth} levels (at character ${at})`);
  return JSON.parse(text) as unknown;
}

/** JSON.parse with a nesting limit; errors name `source` and where the problem is. */
export function parseJson(text: string, source: string, options: { maxDepth?: number } = {}): unknown {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const at = jsonDepthViolation(text, maxDepth);
  if (at >= 0)
    throw new JsonInputError(`${source}: JSON nested deeper than ${maxDepth} levels (at character ${at})`, source);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new JsonInputError(`${source}: not valid JSON (${(e as Error).message})`, source);
  }
}

/** A JSON file read and parsed with parseJson; a file that cannot be read is an Error naming it. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  return parseJson(text, file);
}
