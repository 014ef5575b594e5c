/**
 * Per-image predictions as a file a spreadsheet or pandas opens: CSV (`.csv`; `.tsv` tab-separated)
 * or JSON Lines (`.jsonl`), chosen by the extension. One row per image: its id (and image path, gold
 * label(s) where known), the predicted label(s), the score of the top prediction, and every class's
 * score. `vilref classify` writes them, and `eval zeroshot|probe|finetune --predictions`.
 *
 * CSV columns: id, [image], [gold], predicted, score, then one column per class (named by the class).
 * Several labels (multi-label) are joined with ";". JSONL: {id, image?, gold?, predicted, score,
 * scores: {class: score}}; multi-label rows give `predicted` and `gold` as lists. Numbers are written
 * in full (the shortest text that reads back as the same float64).
 */
import path from "node:path";
import { atomicWriteFile } from "../io/atomic.js";

export type PredictionsFormat = "csv" | "tsv" | "jsonl";

export interface PredictionRow {
  id: string;
  image?: string;
  /** The gold label (single-label), labels (multi-label), or null when unknown. */
  gold?: string | string[] | null;
  /** The predicted label (single-label) or labels (multi-label, possibly none). */
  predicted: string | string[];
  /** The score of the top predicted class (the highest score when none is predicted). */
  score: number;
  /** One score per class, in the order of the classes. */
  scores: ArrayLike<number>;
}

const EXT: Record<string, PredictionsFormat> = { ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl" };

/** The format of a predictions file by its extension; anything else is an error naming the file. */
export function predictionsFormat(file: string): PredictionsFormat {
  const f = EXT[path.extname(file).toLowerCase()];
  if (!f) throw new RangeError(`${file}: a predictions file is .csv, .tsv or .jsonl`);
  return f;
}

function field(v: string, sep: string): string {
  return v.includes(sep) || /["\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

const num = (x: number): string => (Number.isNaN(x) ? "" : String(x));
const joined = (v: string | string[] | null | undefined): string =>
  v === null || v === undefined ? "" : Array.isArray(v) ? v.join(";") : v;

/** The text of a predictions file. */
export function formatPredictions(
  format: PredictionsFormat,
  classes: readonly string[],
  rows: readonly PredictionRow[],
): string {
  const image = rows.some((r) => r.image !== undefined);
  const gold = rows.some((r) => r.gold !== undefined);
  if (format === "jsonl")
    return rows
      .map((r) => {
        const scores: Record<string, number | null> = {};
        classes.forEach((c, i) => (scores[c] = Number.isFinite(r.scores[i]!) ? r.scores[i]! : null));
        return (
          JSON.stringify({
            id: r.id,
            ...(image ? { image: r.image ?? null } : {}),
            ...(gold ? { gold: r.gold ?? null } : {}),
            predicted: r.predicted,
            score: Number.isFinite(r.score) ? r.score : null,
            scores,
          }) + "\n"
        );
      })
      .join("");
  const sep = format === "csv" ? "," : "\t";
  const fixed = ["id", ...(image ? ["image"] : []), ...(gold ? ["gold"] : []), "predicted", "score"];
  const clash = classes.find((c) => fixed.includes(c));
  if (clash !== undefined)
    throw new RangeError(`class ${JSON.stringify(clash)}: its score column would have the name of a fixed column`);
  const lines = [[...fixed, ...classes].map((h) => field(h, sep)).join(sep)];
  for (const r of rows) {
    const cells = [r.id, ...(image ? [r.image ?? ""] : []), ...(gold ? [joined(r.gold)] : [])];
    cells.push(joined(r.predicted), num(r.score));
    for (let i = 0; i < classes.length; i++) cells.push(num(r.scores[i]!));
    lines.push(cells.map((c) => field(c, sep)).join(sep));
  }
  return lines.join("\n") + "\n";
}

/** Writes predictions (atomically) in the format of the file's extension. */
export async function writePredictions(
  file: string,
  classes: readonly string[],
  rows: readonly PredictionRow[],
): Promise<void> {
  const text = formatPredictions(predictionsFormat(file), classes, rows);
  await atomicWriteFile(file, new TextEncoder().encode(text));
}

/**
 * Rows from a score matrix [n, C]: single-label tasks predict the top class; multi-label tasks
 * every class whose score is at least `threshold`.
 */
export function predictionRows(args: {
  ids: readonly string[];
  classes: readonly string[];
  scores: ArrayLike<number>;
  multiLabel: boolean;
  threshold?: number;
  images?: readonly string[];
  gold?: readonly (string | string[] | null)[];
}): PredictionRow[] {
  const C = args.classes.length;
  const t = args.threshold ?? 0.5;
  return args.ids.map((id, i) => {
    const s = Array.from({ length: C }, (_, c) => args.scores[i * C + c]!);
    let top = 0;
    for (let c = 1; c < C; c++) if (s[c]! > s[top]! || Number.isNaN(s[top]!)) top = c;
    const predicted = args.multiLabel ? args.classes.filter((_, c) => s[c]! >= t) : args.classes[top]!;
    return {
      id,
      ...(args.images ? { image: args.images[i]! } : {}),
      ...(args.gold ? { gold: args.gold[i] ?? null } : {}),
      predicted,
      score: s[top]!,
      scores: s,
    };
  });
}

/**
 * The per-image scores behind an evaluation (`predictions` of zeroShot, linearProbe; fine-tuning's
 * split predictions): what `--predictions` writes.
 */
export interface ScoreTable {
  ids: string[];
  images?: string[];
  classes: string[];
  /** [ids.length, classes.length], row-major. */
  scores: ArrayLike<number>;
  multiLabel: boolean;
  /** Multi-label: the score at which a class counts as predicted. */
  threshold: number;
  gold: (string | string[] | null)[];
}

/**
 * Gold labels of rows: class names of single-label targets, or the positive classes of multi-label
 * rows (1 → the class; an unknown label, NaN or 0.5, → the class followed by "?").
 */
export function goldLabels(
  classes: readonly string[],
  n: number,
  t: { targets: ArrayLike<number> } | { y: ArrayLike<number> },
): (string | string[])[] {
  const C = classes.length;
  if ("targets" in t) return Array.from({ length: n }, (_, i) => classes[t.targets[i]!] ?? "");
  return Array.from({ length: n }, (_, i) => {
    const out: string[] = [];
    for (let c = 0; c < C; c++) {
      const v = t.y[i * C + c]!;
      if (v === 1) out.push(classes[c]!);
      else if (Number.isNaN(v) || v === 0.5) out.push(`${classes[c]}?`);
    }
    return out;
  });
}

/** The rows of a score table. */
export function tableRows(t: ScoreTable): PredictionRow[] {
  return predictionRows({
    ids: t.ids,
    classes: t.classes,
    scores: t.scores,
    multiLabel: t.multiLabel,
    threshold: t.threshold,
    gold: t.gold,
    ...(t.images ? { images: t.images } : {}),
  });
}

/** Writes a score table as a predictions file. */
export function writeScoreTable(file: string, t: ScoreTable): Promise<void> {
  return writePredictions(file, t.classes, tableRows(t));
}
