/**
 * Datasets as lists of samples: manifests (CSV, TSV or JSON Lines with a column mapping), an
 * image-folder layout (one folder per class), and labeled files written by `vilref labels --out`
 * joined onto a manifest by id. Image paths are resolved relative to the manifest's folder.
 * Files are read by lib/io/table.ts (strict UTF-8 and CSV/TSV); a row that cannot be parsed is an
 * error naming the file and line.
 */
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import { TableError, parseTable, readText, textLines } from "../io/table.js";
import { isLabelId, type Eye, type LabelId, type LabelMap } from "../labels/index.js";
import { parseJsonText } from "../io/json.js";

/** Where a sample's image lies inside a WebDataset shard (lib/data/shards.ts). */
export interface ShardMember {
  /** The shard file (absolute). */
  shard: string;
  /** The member's name in the tar. */
  name: string;
  /** Byte offset and length of its data. */
  offset: number;
  size: number;
}

export interface Sample {
  /** Unique within a dataset: the id column, else the image path relative to the manifest. */
  id: string;
  /** Absolute image path (for a shard sample: `<shard>#<member>`, for messages). */
  image: string;
  /** Set when the image is a member of a shard: it is read from there. */
  member?: ShardMember;
  text: string | null;
  labels: LabelMap | null;
  split: string | null;
  patientId: string | null;
  eye: Eye | null;
  /** Class index (image-folder layout, or a target column). */
  target: number | null;
  /** Where the sample came from, for messages. */
  source: { file: string; line: number };
}

export const IMAGE_EXTENSIONS: readonly string[] = [".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".webp"];

export const columnsSchema = z
  .object({
    image: z.string().min(1).default("image"),
    text: z.string().min(1).default("text"),
    labels: z.string().min(1).default("labels"),
    split: z.string().min(1).default("split"),
    patientId: z.string().min(1).default("patient_id"),
    id: z.string().min(1).default("id"),
    eye: z.string().min(1).default("eye"),
    target: z.string().min(1).default("target"),
  })
  .strict();
export type ColumnMapping = z.input<typeof columnsSchema>;

export const manifestOptionsSchema = z
  .object({
    columns: columnsSchema.default(columnsSchema.parse({})),
    /** Default: from the extension (.csv, .tsv, .jsonl/.json/.ndjson). */
    format: z.enum(["csv", "tsv", "jsonl"]).optional(),
    /** Folder image paths are relative to (default: the manifest's folder). */
    baseDir: z.string().optional(),
    /** Keep only rows of this split. */
    split: z.string().optional(),
    /** Rows need a report text. */
    requireText: z.boolean().default(false),
    /** Labels from a `vilref labels --out` file, joined by id (they replace a labels column). */
    labelsFile: z.string().optional(),
  })
  .strict();
export type ManifestOptions = z.input<typeof manifestOptionsSchema>;
/** The options after their defaults are applied. */
type ParsedManifestOptions = z.output<typeof manifestOptionsSchema>;

/** An error in a manifest or labeled file, naming the file and line (a TableError). */
export class ManifestError extends TableError {
  constructor(file: string, line: number, message: string) {
    super(file, line, message);
    this.name = "ManifestError";
  }
}

/** A labels cell: a JSON object {"dr": 1, "erm": 0.5}, a JSON list of ids, or "dr;erm:0.5". */
export function parseLabelsCell(v: unknown): LabelMap {
  if (v === undefined || v === null || v === "") return {};
  if (typeof v === "string") {
    const s = v.trim();
    if (s === "") return {};
    if (s.startsWith("{") || s.startsWith("[")) {
      let parsed: unknown;
      try {
        parsed = parseJsonText(s);
      } catch (e) {
        throw new Error(`labels: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
      }
      return parseLabelsCell(parsed);
    }
    const m: LabelMap = {};
    for (const part of s.split(/[;|]/)) {
      if (part.trim() === "") continue;
      const [k, x, ...rest] = part.split(":").map((t) => t.trim());
      if (!isLabelId(k)) throw new Error(`labels: unknown label id ${JSON.stringify(k)}`);
      if (rest.length > 0 || (x !== undefined && x !== "1" && x !== "0.5" && x !== "0"))
        throw new Error(`labels: bad value in ${JSON.stringify(part)} (use id, id:1, id:0.5 or id:0)`);
      m[k] = x === "0.5" ? 0.5 : x === "0" ? 0 : 1;
    }
    return m;
  }
  if (Array.isArray(v)) {
    const m: LabelMap = {};
    for (const k of v) {
      if (!isLabelId(k)) throw new Error(`labels: unknown label id ${JSON.stringify(k)}`);
      m[k] = 1;
    }
    return m;
  }
  if (typeof v === "object") {
    const m: LabelMap = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (!isLabelId(k)) throw new Error(`labels: unknown label id ${JSON.stringify(k)}`);
      if (x !== 1 && x !== 0.5 && x !== 0)
        throw new Error(`labels.${k}: expected 1, 0.5 or 0, got ${JSON.stringify(x)}`);
      m[k] = x;
    }
    return m;
  }
  throw new Error(`labels: expected an object, a list or a string, got ${typeof v}`);
}

function formatOf(file: string, format?: "csv" | "tsv" | "jsonl"): "csv" | "tsv" | "jsonl" {
  if (format) return format;
  const ext = path.extname(file).toLowerCase();
  if (ext === ".csv") return "csv";
  if (ext === ".tsv" || ext === ".tab") return "tsv";
  if (ext === ".jsonl" || ext === ".json" || ext === ".ndjson") return "jsonl";
  throw new ManifestError(
    file,
    0,
    `cannot tell the manifest format from the extension ${JSON.stringify(ext)} (use .csv, .tsv or .jsonl, ` +
      "or give format)",
  );
}

function cellString(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v === "" ? null : v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new Error(`expected a string, got ${Array.isArray(v) ? "a list" : typeof v}`);
}

/** An eye cell: left/right/both, OD/OS/OU, L/R, 左眼/右眼/双眼 (null stays null). */
export function parseEye(v: string | null): Eye | null {
  if (v === null) return null;
  const s = v.trim().toLowerCase();
  if (s === "left" || s === "os" || s === "l" || s === "左眼") return "left";
  if (s === "right" || s === "od" || s === "r" || s === "右眼") return "right";
  if (s === "both" || s === "ou" || s === "双眼") return "both";
  throw new Error(`eye: expected left, right or both, got ${JSON.stringify(v)}`);
}

/** One row of a manifest, as field → cell, and the line it stands on. */
interface ManifestRecord {
  rec: Record<string, unknown>;
  line: number;
}

/** Step 1 (JSON Lines): each line a JSON object. */
function jsonlRecords(file: string, raw: string): ManifestRecord[] {
  const records: ManifestRecord[] = [];
  for (const { text, line } of textLines(raw)) {
    let v: unknown;
    try {
      v = parseJsonText(text);
    } catch (e) {
      throw new ManifestError(file, line, `not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v))
      throw new ManifestError(file, line, "expected a JSON object");
    records.push({ rec: v as Record<string, unknown>, line });
  }
  return records;
}

/** Step 1 (CSV/TSV): each row keyed by the header; null for a file without a header (no samples). */
function tableRecords(file: string, raw: string, format: "csv" | "tsv", imageColumn: string): ManifestRecord[] | null {
  const table = asManifestError(() => parseTable(raw, { delimiter: format === "tsv" ? "\t" : ",", file }));
  if (table.header.length === 0) return null;
  if (!table.header.includes(imageColumn))
    throw new ManifestError(
      file,
      table.headerLine,
      `no ${JSON.stringify(imageColumn)} column (columns: ${table.header.join(", ")}); map it with columns.image`,
    );
  return table.rows.map((r) => {
    const rec: Record<string, unknown> = {};
    table.header.forEach((h, j) => (rec[h] = r.fields[j]));
    return { rec, line: r.line };
  });
}

/** What turning records into samples needs: the parsed options, the base folder, the ids seen so far. */
interface SampleContext {
  file: string;
  o: ParsedManifestOptions;
  base: string;
  /** id → the line it first stood on. */
  seen: Map<string, number>;
}

/** Step 2: one record as a sample (null when --split leaves it out); throws a plain Error on a bad cell. */
function recordSample({ rec, line }: ManifestRecord, { file, o, base, seen }: SampleContext): Sample | null {
  const cols = o.columns;
  const image = cellString(rec[cols.image]);
  if (image === null) throw new Error(`no image path (column ${JSON.stringify(cols.image)})`);
  const split = cellString(rec[cols.split]);
  if (o.split !== undefined && split !== o.split) return null;
  const text = cellString(rec[cols.text]);
  if (o.requireText && text === null) throw new Error(`no report text (column ${JSON.stringify(cols.text)})`);
  const labelsCell = rec[cols.labels];
  const labels =
    labelsCell === undefined || labelsCell === "" || labelsCell === null ? null : parseLabelsCell(labelsCell);
  const targetCell = cellString(rec[cols.target]);
  let target: number | null = null;
  if (targetCell !== null) {
    target = Number(targetCell);
    if (!Number.isInteger(target) || target < 0)
      throw new Error(`target: expected a class index, got ${JSON.stringify(targetCell)}`);
  }
  const abs = path.resolve(base, image);
  const id = cellString(rec[cols.id]) ?? path.relative(base, abs).split(path.sep).join("/");
  const dup = seen.get(id);
  if (dup !== undefined) throw new Error(`duplicate id ${JSON.stringify(id)} (first on line ${dup})`);
  seen.set(id, line);
  return {
    id,
    image: abs,
    text,
    labels,
    split,
    patientId: cellString(rec[cols.patientId]),
    eye: parseEye(cellString(rec[cols.eye])),
    target,
    source: { file, line },
  };
}

/** Reads a manifest into samples. Throws ManifestError naming file and line on a bad row. */
export function readManifest(file: string, options: ManifestOptions = {}): Sample[] {
  const parsed = manifestOptionsSchema.safeParse(options);
  if (!parsed.success) throw new TypeError(`manifest options: ${formatIssues(parsed.error)}`);
  const o = parsed.data;
  const format = formatOf(file, o.format);
  const raw = readManifestText(file);
  const base = path.resolve(o.baseDir ?? path.dirname(file));
  const records = format === "jsonl" ? jsonlRecords(file, raw) : tableRecords(file, raw, format, o.columns.image);
  if (records === null) return [];

  const samples: Sample[] = [];
  const context: SampleContext = { file, o, base, seen: new Map() };
  for (const record of records) {
    try {
      const sample = recordSample(record, context);
      if (sample !== null) samples.push(sample);
    } catch (e) {
      if (e instanceof ManifestError) throw e;
      throw new ManifestError(file, record.line, e instanceof Error ? e.message : String(e));
    }
  }
  if (o.labelsFile) attachLabels(samples, readLabeledFile(o.labelsFile));
  return samples;
}

export interface LabeledEntry {
  labels: LabelMap;
  eye: Eye | null;
  /** Labels the "drop" uncertainty policy masked out. */
  ignored: LabelId[];
  line: number;
}

/**
 * Reads what `vilref labels --out` writes: JSON Lines `{"id", "labels", "eye", "ignored"?}`
 * (id is the report's id, or its line number when the reports had none).
 */
export function readLabeledFile(file: string): Map<string, LabeledEntry> {
  const raw = readManifestText(file);
  const out = new Map<string, LabeledEntry>();
  for (const { text, line } of textLines(raw)) {
    try {
      const v = parseJsonText(text) as unknown;
      if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("expected a JSON object");
      const rec = v as Record<string, unknown>;
      if (typeof rec.id !== "string" && typeof rec.id !== "number") throw new Error("no id");
      const id = String(rec.id);
      if (out.has(id)) throw new Error(`duplicate id ${JSON.stringify(id)}`);
      const ignored = Array.isArray(rec.ignored) ? rec.ignored : [];
      for (const x of ignored) if (!isLabelId(x)) throw new Error(`ignored: unknown label id ${JSON.stringify(x)}`);
      const eye = rec.eye === undefined || rec.eye === null ? null : parseEye(String(rec.eye));
      out.set(id, { labels: parseLabelsCell(rec.labels ?? {}), eye, ignored: ignored as LabelId[], line });
    } catch (e) {
      throw new ManifestError(file, line, e instanceof Error ? e.message : String(e));
    }
  }
  return out;
}

/** Runs a reader, turning its TableError into a ManifestError (same file, line and reason). */
function asManifestError<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof TableError && !(e instanceof ManifestError)) throw new ManifestError(e.file, e.line, e.reason);
    throw e;
  }
}

/** A file's text (strict UTF-8), as a ManifestError when it cannot be read or decoded. */
function readManifestText(file: string): string {
  return asManifestError(() => readText(file));
}

/**
 * Puts labels from a labeled file onto samples with the same id (the labels replace the
 * sample's). Returns the ids of samples that had no entry.
 */
export function attachLabels(
  samples: Sample[],
  labeled: Map<string, LabeledEntry>,
): { matched: number; missing: string[] } {
  let matched = 0;
  const missing: string[] = [];
  for (const s of samples) {
    const e = labeled.get(s.id);
    if (!e) {
      missing.push(s.id);
      continue;
    }
    s.labels = e.labels;
    if (s.eye === null) s.eye = e.eye;
    matched++;
  }
  return { matched, missing };
}

/** Image files under a folder, recursively, sorted (by path, code-unit order). */
export function listImages(dir: string, extensions: readonly string[] = IMAGE_EXTENSIONS): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    const entries = readdirSync(d, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if ((e.isFile() || e.isSymbolicLink()) && extensions.includes(path.extname(e.name).toLowerCase()))
        out.push(p);
    }
  };
  walk(path.resolve(dir));
  return out;
}

/** A sample of an image alone: no report, labels, split, patient, eye or target. */
export function imageSample(id: string, image: string, file: string, line: number): Sample {
  return {
    id,
    image,
    text: null,
    labels: null,
    split: null,
    patientId: null,
    eye: null,
    target: null,
    source: { file, line },
  };
}

/** Samples for plain image files (ids: paths relative to base, default the common folder). */
export function samplesFromFiles(files: string[], base?: string): Sample[] {
  const b = path.resolve(base ?? (files.length > 0 ? commonDir(files) : "."));
  return files.map((f, i) => {
    const abs = path.resolve(f);
    return imageSample(path.relative(b, abs).split(path.sep).join("/"), abs, f, i + 1);
  });
}

function commonDir(files: string[]): string {
  let parts = path.dirname(path.resolve(files[0]!)).split(path.sep);
  for (const f of files) {
    const q = path.dirname(path.resolve(f)).split(path.sep);
    let k = 0;
    while (k < parts.length && k < q.length && parts[k] === q[k]) k++;
    parts = parts.slice(0, k);
  }
  return parts.join(path.sep) || path.sep;
}

/**
 * The image-folder layout: root/<class>/<image>. Classes are the sorted folder names and each
 * sample's target is its class's index.
 */
export function readImageFolder(
  root: string,
  extensions: readonly string[] = IMAGE_EXTENSIONS,
): { samples: Sample[]; classes: string[] } {
  const abs = path.resolve(root);
  const classes = readdirSync(abs)
    .filter((d) => !d.startsWith(".") && statSync(path.join(abs, d)).isDirectory())
    .sort();
  if (classes.length === 0) throw new Error(`${root}: no class folders (expected root/<class>/<image>)`);
  const samples: Sample[] = [];
  classes.forEach((c, target) => {
    for (const f of listImages(path.join(abs, c), extensions)) {
      const id = path.relative(abs, f).split(path.sep).join("/");
      samples.push({
        id,
        image: f,
        text: null,
        labels: null,
        split: null,
        patientId: null,
        eye: null,
        target,
        source: { file: f, line: 0 },
      });
    }
  });
  return { samples, classes };
}
