#!/usr/bin/env node
// Function length check (issue 19): no function in lib/, bin/, scripts/ (TypeScript/JavaScript) or
// native/ (C++) may span more than 80 lines, counted from the line of its declaration to the line of
// its closing brace, except the data tables allow-listed below with a reason. Prints
// `file:line name length` for each one over the limit and exits 1 when any is not allow-listed.
// `npm run format:check` runs it (scripts/check-format.mjs), so CI enforces it.
//
// TypeScript/JavaScript: the `typescript` compiler API parses each file and every function-like node
// is measured (declarations, methods, constructors, accessors, arrow functions, function expressions).
// C++: the sources are clang-format'ed (Google style, 120 columns, namespaces not indented), so a
// definition is a line ending in `{` that looks like a signature (a `name(...)` before the brace,
// not a control statement, lambda or initializer), and it ends at the matching `}`. Lambdas count
// as part of the function around them; member functions defined inside a class count on their own.
// No npm tool measures C++ function length without a C++ parser (clang-tidy's readability-function-size
// needs a compile database and LibTorch's headers), hence the brace matcher here.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export const MAX_LINES = 80;

/**
 * Functions allowed over the limit: `file:name` → why. Tables of data only (a function that is one
 * long literal); none is over the limit today. A split that is not done yet may stand here with a
 * reason that starts "TODO issue 19".
 * @type {Map<string, string>}
 */
export const ALLOWED = new Map([]);

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** @param {string} dir @param {(name: string) => boolean} test @returns {string[]} */
function walk(dir, test) {
  /** @type {string[]} */
  let out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out = out.concat(walk(path, test));
    else if (test(name)) out.push(path);
  }
  return out;
}

/**
 * A readable name for a function-like node: its own name, or the variable/property it is assigned to.
 * @param {ts.SignatureDeclaration} node @param {ts.SourceFile} sf @returns {string}
 */
function tsName(node, sf) {
  if (node.name) return node.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (
    parent &&
    (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
  )
    return parent.name.getText(sf);
  if (parent && ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText(sf).slice(0, 40)})`;
  return "(anonymous)";
}

/** @typedef {{ line: number, name: string, length: number }} Measured */

/**
 * Every function-like node of a TypeScript/JavaScript file with its first line and length.
 * @param {string} path @param {string} text @returns {Measured[]}
 */
export function measureTs(path, text) {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  /** @type {Measured[]} */
  const found = [];
  /** @param {ts.Node} node */
  const visit = (node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.body.getEnd()).line;
      found.push({ line: start + 1, name: tsName(node, sf), length: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The text of a C++ line without its string/char literals and `//` comment (braces in them do not count). */
/** @param {string} line @returns {string} */
function codeOf(line) {
  return line
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/'(?:[^'\\]|\\.)*'/g, "''")
    .replace(/\/\*.*?\*\//g, "")
    .replace(/\/\/.*$/, "");
}

const CONTROL = /^\s*(?:}\s*)?(?:if|else|for|while|switch|do|try|catch|return|case|default)\b/;
// a line that cannot be part of a wrapped signature: blank or comment, the end of a statement or block,
// a preprocessor line, an access specifier
const ENDS_STATEMENT = /^\s*$|[;{}]$|^\s*#|[^:]:$/;
const NOT_FUNCTION = /^\s*(?:namespace|class|struct|union|enum|extern)\b|=\s*{$|\]\s*(?:\([^)]*\))?[^)]*{$/;

/**
 * The function definitions of a C++ file: a line ending in `{` whose code (joined with the lines of
 * its signature above it, back to the previous `;`, `{` or `}`) has a `name(` and is no control
 * statement, type, initializer or lambda. Member functions defined inside a class are measured on
 * their own (a class body is no function); lambdas and blocks inside a function are part of it.
 * @param {string} text @returns {Measured[]}
 */
export function measureCc(text) {
  const lines = text.split("\n").map(codeOf);
  /** @type {Measured[]} */
  const found = [];
  let depth = 0;
  /** @type {{ depth: number, line: number, name: string } | null} */
  let current = null; // the function whose body is being read
  for (const [i, code] of lines.entries()) {
    if (current === null && code.trimEnd().endsWith("{")) {
      // the signature may start some lines above (a wrapped parameter list or initializer list)
      let first = i;
      while (first > 0 && !ENDS_STATEMENT.test((lines[first - 1] ?? "").trimEnd())) first--;
      const signature = lines
        .slice(first, i + 1)
        .join(" ")
        .replace(/\s+/g, " ");
      const m = /([~\w:<>]+)\s*\([^]*\)[^()]*{$/.exec(signature);
      if (m && !CONTROL.test(signature) && !NOT_FUNCTION.test(signature) && !/\[[^\]]*\]\s*\(/.test(signature))
        current = { depth, line: first, name: m[1] ?? "" };
    }
    for (const ch of code) {
      if (ch === "{") depth++;
      else if (ch === "}") {
        depth--;
        if (current !== null && depth === current.depth) {
          found.push({ line: current.line + 1, name: current.name, length: i - current.line + 1 });
          current = null;
        }
      }
    }
  }
  return found;
}

function main() {
  const sources = [
    ...["lib", "bin", "scripts"].flatMap((d) => walk(join(root, d), (n) => /\.(ts|js|mjs|cjs)$/.test(n))),
    ...walk(join(root, "native"), (n) => /\.(cc|h)$/.test(n)),
  ];
  let failed = 0;
  const used = new Set();
  for (const path of sources) {
    const file = relative(root, path);
    const text = readFileSync(path, "utf8");
    const all = /\.(cc|h)$/.test(path) ? measureCc(text) : measureTs(path, text);
    for (const f of all.filter((f) => f.length > MAX_LINES)) {
      const key = `${file}:${f.name}`;
      const reason = ALLOWED.get(key);
      if (reason) used.add(key);
      else failed++;
      console.log(`${file}:${f.line} ${f.name} ${f.length}${reason ? ` (allowed: ${reason})` : ""}`);
    }
  }
  for (const key of ALLOWED.keys())
    if (!used.has(key)) console.log(`note: allow-list entry ${key} is no longer over ${MAX_LINES} lines`);
  if (failed > 0) {
    console.error(`${failed} function(s) over ${MAX_LINES} lines: split them into named steps (issue 19)`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
