/**
 * Reading report files: JSON Lines (objects with a text field, or bare strings), CSV with a header
 * row (RFC 4180 quoting, newlines inside quotes), or plain text with one report a line.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";

export interface ReportRecord {
  /** Line (JSONL/text) or row (CSV) number, 1-based. */
  line: number;
  id: string | null;
  /** The report text as found (may be missing or not a string: the labeler warns). */
  text: unknown;
  /** The whole record, for fields such as gold labels. */
  record: Record<string, unknown>;
}

export interface ReadOptions {
  textField?: string;
  idField?: string;
  /** Force a format instead of guessing from the extension. */
  format?: "jsonl" | "csv" | "txt";
}

/** Parse CSV text into rows of fields (RFC 4180). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let i = 0;
  const n = text.length;
  let quoted = false;
  let any = false;
  while (i < n) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      field += ch;
      i++;
      continue;
    }
    if (ch === '"' && field === "") {
      quoted = true;
      any = true;
      i++;
    } else if (ch === ",") {
      row.push(field);
      field = "";
      any = true;
      i++;
    } else if (ch === "\n" || ch === "\r") {
      row.push(field);
      if (any || row.length > 1 || field !== "") rows.push(row);
      row = [];
      field = "";
      any = false;
      i += ch === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      field += ch;
      any = true;
      i++;
    }
  }
  if (any || field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/** Read report records from a file. Malformed JSON lines throw with their line number. */
export function readReports(path: string, options: ReadOptions = {}): ReportRecord[] {
  const textField = options.textField ?? "text";
  const idField = options.idField ?? "id";
  const ext = extname(path).toLowerCase();
  const format = options.format ?? (ext === ".csv" ? "csv" : ext === ".txt" ? "txt" : "jsonl");
  let raw: string;
  try {
    raw = stripBom(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out: ReportRecord[] = [];
  if (format === "csv") {
    const rows = parseCsv(raw);
    const header = rows[0];
    if (!header) return out;
    const ti = header.indexOf(textField);
    if (ti < 0) throw new Error(`${path}: no "${textField}" column (columns: ${header.join(", ")})`);
    const ii = header.indexOf(idField);
    rows.slice(1).forEach((r, k) => {
      const record: Record<string, unknown> = {};
      header.forEach((h, j) => (record[h] = r[j] ?? ""));
      out.push({ line: k + 2, id: ii >= 0 ? (r[ii] ?? null) : null, text: r[ti] ?? "", record });
    });
    return out;
  }
  const lines = raw.split(/\r?\n/);
  lines.forEach((l, k) => {
    if (format === "txt") {
      if (l.trim() !== "") out.push({ line: k + 1, id: null, text: l, record: { text: l } });
      return;
    }
    if (l.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw new Error(`${path}:${k + 1}: not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof v === "string") out.push({ line: k + 1, id: null, text: v, record: { text: v } });
    else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const rec = v as Record<string, unknown>;
      const id = rec[idField];
      out.push({
        line: k + 1,
        id: id === undefined || id === null ? null : String(id),
        text: rec[textField],
        record: rec,
      });
    } else out.push({ line: k + 1, id: null, text: v, record: {} });
  });
  return out;
}
