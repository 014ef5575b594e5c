/**
 * Reading report files: JSON Lines (objects with a text field, or bare strings), CSV or TSV with a
 * header row (RFC 4180 quoting, newlines inside quotes; read strictly by lib/io/table.ts), or plain
 * text with one report a line.
 */
import { extname } from "node:path";
import { parseRows, parseTable, readText, recordOf, textLines } from "../io/table.js";
import { parseJsonText } from "../io/json.js";

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
  format?: "jsonl" | "csv" | "tsv" | "txt";
}

/** CSV text as rows of fields (RFC 4180, strict: see lib/io/table.ts); errors name `file` and the line. */
export function parseCsv(text: string, file = "<text>"): string[][] {
  return parseRows(text, { delimiter: ",", file }).map((r) => r.fields);
}

/**
 * Read report records from a file (strict UTF-8). A malformed JSON line, a CSV quoting error or a
 * CSV row with more or fewer fields than the header throws an error naming the file and line.
 */
export function readReports(path: string, options: ReadOptions = {}): ReportRecord[] {
  const textField = options.textField ?? "text";
  const idField = options.idField ?? "id";
  const ext = extname(path).toLowerCase();
  const format =
    options.format ??
    (ext === ".csv" ? "csv" : ext === ".tsv" || ext === ".tab" ? "tsv" : ext === ".txt" ? "txt" : "jsonl");
  const raw = readText(path);
  const out: ReportRecord[] = [];
  if (format === "csv" || format === "tsv") {
    const table = parseTable(raw, { delimiter: format === "tsv" ? "\t" : ",", file: path });
    if (table.header.length === 0) return out;
    const ti = table.header.indexOf(textField);
    if (ti < 0) throw new Error(`${path}: no "${textField}" column (columns: ${table.header.join(", ")})`);
    const ii = table.header.indexOf(idField);
    for (const r of table.rows)
      out.push({ line: r.line, id: ii >= 0 ? r.fields[ii]! : null, text: r.fields[ti]!, record: recordOf(table, r) });
    return out;
  }
  for (const { text: l, line } of textLines(raw)) {
    if (format === "txt") {
      out.push({ line, id: null, text: l, record: { text: l } });
      continue;
    }
    let v: unknown;
    try {
      v = parseJsonText(l);
    } catch (e) {
      throw new Error(`${path}:${line}: not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof v === "string") out.push({ line, id: null, text: v, record: { text: v } });
    else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const rec = v as Record<string, unknown>;
      const id = rec[idField];
      out.push({ line, id: id === undefined || id === null ? null : String(id), text: rec[textField], record: rec });
    } else out.push({ line, id: null, text: v, record: {} });
  }
  return out;
}
