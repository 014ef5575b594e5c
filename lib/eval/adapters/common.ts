/** Helpers the dataset adapters share: CSV tables with named columns, finding images by name. */
import { readdirSync } from "node:fs";
import path from "node:path";
import { IMAGE_EXTENSIONS, imageSample } from "../../data/manifest.js";
import { TableError, readTable as readStrictTable } from "../../io/table.js";
import type { EvalSample } from "../dataset.js";
import { DatasetError } from "../dataset.js";

export interface Table {
  file: string;
  header: string[];
  rows: { cells: Record<string, string>; line: number }[];
}

/** Column names compared loosely: case, spaces, underscores and hyphens ignored. */
export const loose = (s: string): string => s.toLowerCase().replace(/[\s_\-]+/g, "");

/**
 * Reads a CSV (or TSV by extension) with a header row through the strict reader (lib/io/table.ts):
 * quoting errors and a row with the wrong field count are errors naming the line.
 */
export function readTable(file: string): Table {
  let t: ReturnType<typeof readStrictTable>;
  try {
    t = readStrictTable(file);
  } catch (e) {
    if (e instanceof TableError) throw new DatasetError(e.message);
    throw e;
  }
  if (t.header.length === 0) throw new DatasetError(`${file}: empty table`);
  return {
    file,
    header: t.header,
    rows: t.rows.map((r) => ({
      cells: Object.fromEntries(t.header.map((h, i) => [h, r.fields[i]!.trim()])),
      line: r.line,
    })),
  };
}

/** The header name of the first candidate column present (loosely); undefined when none. */
export function findColumn(t: Table, candidates: readonly string[]): string | undefined {
  for (const c of candidates) {
    const hit = t.header.find((h) => loose(h) === loose(c));
    if (hit !== undefined) return hit;
  }
  return undefined;
}

export function requireColumn(t: Table, candidates: readonly string[], what: string): string {
  const c = findColumn(t, candidates);
  if (c === undefined)
    throw new DatasetError(
      `${t.file}: no ${what} column (looked for ${candidates.map((x) => JSON.stringify(x)).join(", ")}; ` +
        `columns: ${t.header.join(", ")})`,
    );
  return c;
}

/** A 0/1 cell; anything else is an error naming the file, line and column. */
export function binaryCell(t: Table, row: { cells: Record<string, string>; line: number }, column: string): 0 | 1 {
  const v = row.cells[column]!;
  if (v === "0" || v === "0.0") return 0;
  if (v === "1" || v === "1.0") return 1;
  throw new DatasetError(`${t.file}:${row.line}: column ${column}: expected 0 or 1, got ${JSON.stringify(v)}`);
}

/** Files under dir (recursively, sorted), skipping folders whose name matches `skipDirs`. */
export function walk(dir: string, accept: (file: string) => boolean, skipDirs?: RegExp, depth = 8): string[] {
  const out: string[] = [];
  const go = (d: string, k: number) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (k < depth && !(skipDirs && skipDirs.test(e.name))) go(p, k + 1);
      } else if (accept(p)) out.push(p);
    }
  };
  go(path.resolve(dir), 0);
  return out;
}

export const isImage = (f: string): boolean =>
  IMAGE_EXTENSIONS.includes(path.extname(f).toLowerCase()) || [".bmp"].includes(path.extname(f).toLowerCase());

/** Image files under dir keyed by file name and by stem (name without extension); a clash keeps the first. */
export function imageIndex(dir: string, skipDirs?: RegExp): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of walk(dir, isImage, skipDirs)) {
    const base = path.basename(f);
    const stem = base.slice(0, base.length - path.extname(base).length);
    if (!m.has(base)) m.set(base, f);
    if (!m.has(stem)) m.set(stem, f);
  }
  return m;
}

export function sample(
  id: string,
  image: string,
  file: string,
  line: number,
  extra: Partial<EvalSample> = {},
): EvalSample {
  return { ...imageSample(id, image, file, line), ...extra };
}

/** The split a path's folder names suggest (train / val / test), or null. */
export function splitFromPath(p: string): "train" | "val" | "test" | null {
  const parts = p.split(/[\\/]/).map((s) => s.toLowerCase());
  for (let i = parts.length - 1; i >= 0; i--) {
    const s = parts[i]!;
    if (/^(train|training)|train(ing)?([_\s-]?set|\d+)$/.test(s)) return "train";
    if (/^(val|valid|validation|eval|evaluation)|(valid(ation)?|eval(uation)?)([_\s-]?set|\d+)$/.test(s)) return "val";
    if (/^(test|testing)|test(ing)?([_\s-]?set|\d+)$/.test(s)) return "test";
  }
  return null;
}
