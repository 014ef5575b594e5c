/**
 * The one reader of tabular and text inputs: manifests, report files, label tables, dataset
 * adapters' CSVs. Text must be UTF-8 (a byte order mark is dropped); invalid UTF-8 is an error
 * naming the file and line. CSV/TSV follow RFC 4180, parsed by csv-parse, strictly: an unterminated
 * quoted field, text after a closing quote, a quote inside an unquoted field, and a row with more or
 * fewer fields than the header are errors naming the file and the line the row starts on.
 */
import { isUtf8 } from "node:buffer";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse } from "csv-parse/sync";

/** An error in an input file, at a line (0: the file as a whole). */
export class TableError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(line > 0 ? `${file}:${line}: ${reason}` : `${file}: ${reason}`);
    this.name = "TableError";
  }
}

export type Delimiter = "," | "\t";

/** A row of fields and the line (1-based) it starts on. */
export interface TableRow {
  fields: string[];
  line: number;
}

/** A table with a header row; every row has as many fields as the header. */
export interface Table {
  file: string;
  /** Column names, trimmed; empty for an empty file. */
  header: string[];
  headerLine: number;
  rows: TableRow[];
}

/** "," for .csv, a tab for .tsv and .tab, undefined for anything else. */
export function delimiterOf(file: string): Delimiter | undefined {
  const ext = extname(file).toLowerCase();
  return ext === ".csv" ? "," : ext === ".tsv" || ext === ".tab" ? "\t" : undefined;
}

/** Bytes as UTF-8 text, without a byte order mark; invalid UTF-8 is a TableError naming the line. */
export function decodeUtf8(bytes: Uint8Array, file = "<text>"): string {
  if (!isUtf8(bytes)) {
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i < bytes.length && bytes[i] !== 0x0a) continue;
      if (!isUtf8(bytes.subarray(start, i))) break;
      line++;
      start = i + 1;
    }
    throw new TableError(file, line, "not valid UTF-8 text (save the file as UTF-8)");
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** A file's text (strict UTF-8, see decodeUtf8); an unreadable file is a TableError naming it. */
export function readText(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new TableError(file, 0, `cannot read: ${e instanceof Error ? e.message : String(e)}`);
  }
  return decodeUtf8(bytes, file);
}

const REASONS: Record<string, string> = {
  CSV_QUOTE_NOT_CLOSED: "unterminated quoted field (its opening quote is on this line)",
  CSV_INVALID_CLOSING_QUOTE:
    "text after a closing quote (a quoted field ends at the delimiter or the line's end; " +
    'write "" for a quote inside it)',
  INVALID_OPENING_QUOTE: "a quote inside an unquoted field (quote the whole field and double the quotes inside it)",
};

/** Line numbers of byte offsets (line breaks: \r\n, \n or \r; csv-parse's own count drifts on mixed ones). */
class LineIndex {
  readonly #starts: number[] = [0];
  constructor(readonly bytes: Buffer) {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x0a || (b === 0x0d && bytes[i + 1] !== 0x0a)) this.#starts.push(i + 1);
    }
  }
  /** The 1-based line of a byte offset. */
  lineOf(offset: number): number {
    let lo = 0;
    let hi = this.#starts.length;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.#starts[mid]! <= offset) lo = mid;
      else hi = mid;
    }
    return lo + 1;
  }
  /** The line of the first byte at or after `offset` that is not a line break (where a record starts). */
  lineAfterBreaks(offset: number): number {
    let i = offset;
    while (i < this.bytes.length && (this.bytes[i] === 0x0a || this.bytes[i] === 0x0d)) i++;
    return this.lineOf(i);
  }
}

/** Every row of a CSV/TSV text (the header too), blank lines skipped; quoting errors name the line. */
export function parseRows(text: string, options: { delimiter?: Delimiter; file?: string } = {}): TableRow[] {
  const file = options.file ?? "<text>";
  const lines = new LineIndex(Buffer.from(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, "utf8"));
  let end = 0; // byte offset after the last record
  const rows: TableRow[] = [];
  try {
    parse(lines.bytes, {
      delimiter: options.delimiter ?? ",",
      quote: '"',
      escape: '"',
      record_delimiter: ["\r\n", "\n", "\r"],
      relax_column_count: true,
      relax_quotes: false,
      skip_empty_lines: true,
      on_record: (record, ctx) => {
        rows.push({ fields: record, line: lines.lineAfterBreaks(end) });
        end = ctx.bytes;
        return null;
      },
    });
  } catch (e) {
    const err = e as Error & { code?: string; bytes?: number };
    const code = err.code ?? "";
    if (!code.startsWith("CSV_") && code !== "INVALID_OPENING_QUOTE") throw e;
    // an unterminated quote is reported at the end of the text: name the line its record starts on
    const line = code === "CSV_QUOTE_NOT_CLOSED" ? lines.lineAfterBreaks(end) : lines.lineOf(err.bytes ?? end);
    throw new TableError(file, line, REASONS[code] ?? err.message);
  }
  return rows;
}

/** A CSV/TSV text with a header row; a row whose field count differs from the header's is an error. */
export function parseTable(text: string, options: { delimiter?: Delimiter; file?: string } = {}): Table {
  const file = options.file ?? "<text>";
  const all = parseRows(text, options);
  const head = all[0];
  if (!head) return { file, header: [], headerLine: 0, rows: [] };
  const header = head.fields.map((h) => h.trim());
  const rows = all.slice(1);
  for (const r of rows)
    if (r.fields.length !== header.length)
      throw new TableError(
        file,
        r.line,
        `${r.fields.length} field${r.fields.length === 1 ? "" : "s"}, the header has ${header.length}`,
      );
  return { file, header, headerLine: head.line, rows };
}

/** Reads a CSV/TSV file (delimiter from the extension unless given; default ","). */
export function readTable(file: string, options: { delimiter?: Delimiter } = {}): Table {
  return parseTable(readText(file), { delimiter: options.delimiter ?? delimiterOf(file) ?? ",", file });
}

/** A row as an object keyed by the header's names. */
export function recordOf(table: Table, row: TableRow): Record<string, string> {
  const rec: Record<string, string> = {};
  table.header.forEach((h, j) => (rec[h] = row.fields[j]!));
  return rec;
}

/** Non-blank lines of a text with their line numbers (JSON Lines and one-per-line text files). */
export function textLines(text: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  text.split(/\r?\n/).forEach((l, k) => {
    if (l.trim() !== "") out.push({ text: l, line: k + 1 });
  });
  return out;
}
