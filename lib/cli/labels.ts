/**
 * `vilref labels`: expert-knowledge labels for a file of reports; `vilref labels eval`: scores
 * against gold labels (per-label precision/recall/F1, micro and macro).
 */
import { Option } from "commander";
import type { Command } from "commander";
import {
  LABEL_IDS,
  Labeler,
  UNCERTAINTY_POLICIES,
  errorGroups,
  evaluate,
  formatErrors,
  formatEval,
  isLabelId,
  loadRules,
  readReports,
  type ErrorInput,
  type EvalPair,
  type LabelMap,
  type UncertaintyPolicy,
} from "../labels/index.js";
import { UsageError, examplesText, idFieldOption, textFieldOption, unit } from "./options.js";
import { parseJsonText } from "../io/json.js";
import { atomicWriteFileSync } from "../io/atomic.js";

interface CommonOpts {
  rules?: string;
  uncertain: UncertaintyPolicy;
  textField: string;
  idField: string;
}

function labelerFor(opts: CommonOpts): Labeler {
  return new Labeler(opts.rules ? loadRules(opts.rules) : loadRules());
}

function policyOption(): Option {
  return new Option("--uncertain <policy>", "uncertain (0.5) labels: keep, positive (as 1), negative (as 0), drop")
    .choices(UNCERTAINTY_POLICIES as string[])
    .default("keep");
}

function out(s: string): void {
  process.stdout.write(s.endsWith("\n") ? s : s + "\n");
}

/** The table `vilref labels` prints: counts per label. */
export function formatCounts(results: { labels: LabelMap; eye: string | null; warnings: string[] }[]): string {
  const rows: string[][] = [["label", "asserted", "suspected", "total"]];
  for (const id of LABEL_IDS) {
    let a = 0;
    let s = 0;
    for (const r of results) {
      const v = r.labels[id];
      if (v === 1) a++;
      else if (v === 0.5) s++;
    }
    rows.push([id, String(a), String(s), String(a + s)]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  lines.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
  const eyes = { left: 0, right: 0, both: 0, none: 0 };
  let warned = 0;
  for (const r of results) {
    eyes[(r.eye ?? "none") as keyof typeof eyes]++;
    if (r.warnings.length > 0) warned++;
  }
  lines.push("");
  lines.push(
    `reports: ${results.length}  eye: left ${eyes.left}, right ${eyes.right}, both ${eyes.both}, ` +
      `not stated ${eyes.none}  with warnings: ${warned}`,
  );
  return lines.join("\n");
}

function goldMap(v: unknown): LabelMap {
  const m: LabelMap = {};
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>))
      if (isLabelId(k) && (x === 1 || x === 0.5)) m[k] = x;
  } else if (typeof v === "string" && v.trim() !== "") {
    // CSV: JSON object, or "dr;erm:0.5" lists.
    try {
      return goldMap(parseJsonText(v));
    } catch {
      for (const part of v.split(/[;|]/)) {
        const [k, x] = part.split(":").map((s) => s.trim());
        if (k && isLabelId(k)) m[k] = x === "0.5" ? 0.5 : 1;
      }
    }
  }
  return m;
}

const LABELS_EXAMPLES = examplesText([
  ["vilref labels --in reports.csv --out labeled.jsonl", "labels per report, and the count table"],
  ["vilref labels eval --gold gold.jsonl --min-micro 0.9", "scores against gold labels; exit 1 below the bar"],
]);

/** A gold file labels every report ({} when it has no finding): scores against nothing would print zeros. */
function checkGold(
  file: string,
  labelsField: string,
  recs: ReadonlyArray<{ line: number; record: Record<string, unknown> }>,
): void {
  const field = JSON.stringify(labelsField);
  const unlabeled = recs.filter((r) => r.record[labelsField] === undefined);
  if (recs.length === 0) throw new Error(`--gold ${file}: no reports`);
  if (unlabeled.length === recs.length)
    throw new Error(
      `--gold ${file}: none of its ${recs.length} reports has gold labels in the field ${field} (another ` +
        "field: --labels-field)",
    );
  if (unlabeled.length > 0)
    throw new Error(
      `--gold ${file}:${unlabeled[0]!.line}: no gold labels in the field ` +
        `${field}${unlabeled.length > 1 ? ` (nor in ${unlabeled.length - 1} more reports)` : ""}; ` +
        "a gold file labels every report ({} for no findings)",
    );
}

type LabelsOpts = CommonOpts & { in?: string; out?: string; explain?: boolean };

/** `vilref labels`: one JSON line of labels per report, and the counts table. */
function runLabels(opts: LabelsOpts): void {
  if (!opts.in)
    throw new UsageError("required option '--in <file>' not specified (or use `vilref labels eval --gold <file>`)");
  const lab = labelerFor(opts);
  const recs = readReports(opts.in, { textField: opts.textField, idField: opts.idField });
  const results = [];
  const lines: string[] = [];
  for (const r of recs) {
    const res = lab.label(r.text, { uncertainty: opts.uncertain, evidence: !!opts.explain });
    results.push(res);
    const o: Record<string, unknown> = { id: r.id ?? r.line, labels: res.labels, eye: res.eye };
    if (res.ignored.length > 0) o.ignored = res.ignored;
    if (res.warnings.length > 0) o.warnings = res.warnings;
    if (opts.explain) {
      o.byEye = res.byEye;
      o.evidence = res.evidence;
    }
    lines.push(JSON.stringify(o));
    for (const w of res.warnings) process.stderr.write(`vilref labels: ${opts.in}:${r.line}: ${w}\n`);
  }
  const table = formatCounts(results);
  if (opts.out) {
    atomicWriteFileSync(opts.out, lines.join("\n") + (lines.length ? "\n" : ""));
    out(table);
    out(`wrote ${opts.out}`);
  } else {
    out(lines.join("\n"));
    process.stderr.write(table + "\n");
  }
}

type LabelsEvalOpts = CommonOpts & {
  gold: string;
  labelsField: string;
  errors?: boolean;
  json?: boolean;
  minMicro?: number;
  minMacro?: number;
};

type ScoredReport = EvalPair & { id: string; input: ErrorInput };

/** `labels eval --errors`: the disagreements grouped by label and cue, then per report. */
function printEvalErrors(pairs: readonly ScoredReport[], lab: Labeler): void {
  out("\nerrors by label and by the nearest cue or term:\n");
  out(
    formatErrors(
      errorGroups(
        pairs.map((p) => p.input),
        lab,
      ),
    ),
  );
  out("\nper report:");
  for (const p of pairs) {
    const keys = new Set([...Object.keys(p.gold), ...Object.keys(p.pred)]) as Set<keyof LabelMap>;
    const diff = [...keys]
      .filter((k) => p.gold[k] !== p.pred[k])
      .map((k) => `${k}: gold ${p.gold[k] ?? "-"} pred ${p.pred[k] ?? "-"}`);
    if (diff.length > 0) out(`${p.id}: ${diff.join("; ")}`);
  }
}

/** `vilref labels eval`: scores the labeler against gold labels; exit status 1 below a threshold. */
function runLabelsEval(opts: LabelsEvalOpts): void {
  const lab = labelerFor(opts);
  const recs = readReports(opts.gold, { textField: opts.textField, idField: opts.idField });
  checkGold(opts.gold, opts.labelsField, recs);
  const pairs: ScoredReport[] = recs.map((r) => {
    const res = lab.label(r.text, { uncertainty: opts.uncertain, evidence: !!opts.errors });
    const id = r.id ?? String(r.line);
    const gold = goldMap(r.record[opts.labelsField]);
    const ge = r.record.eye;
    const goldEye = ge === "left" || ge === "right" || ge === "both" ? ge : ge === null || ge === "" ? null : undefined;
    const input = { id, text: typeof r.text === "string" ? r.text : "", gold, result: res };
    return { id, gold, pred: res.labels, goldEye, predEye: res.eye, input };
  });
  const rep = evaluate(pairs);
  if (opts.json) out(JSON.stringify(rep, null, 2));
  else out(formatEval(rep));
  if (opts.errors) printEvalErrors(pairs, lab);
  if (
    (opts.minMicro !== undefined && rep.micro.f1 < opts.minMicro) ||
    (opts.minMacro !== undefined && rep.macro.f1 < opts.minMacro)
  ) {
    process.stderr.write(
      `vilref labels eval: below threshold (micro ${rep.micro.f1.toFixed(3)}, macro ${rep.macro.f1.toFixed(3)})\n`,
    );
    process.exitCode = 1;
  }
}

export function register(program: Command): void {
  const labels = program
    .command("labels")
    .description("extract expert-knowledge labels from fundus reports (JSONL, CSV or TXT)")
    // labels and labels eval share option names: options after `eval` are eval's
    .enablePositionalOptions()
    // Not requiredOption: commander would then demand it of `labels eval` too.
    .option(
      "--in <file>",
      "reports: .jsonl (objects with a text field, or strings), .csv/.tsv with a header, " +
        "or .txt one per line (required)",
    )
    .option("--out <file>", "labeled JSONL (default: standard output, with the table on standard error)")
    .option("--explain", "add the evidence (matched spans, status, cue, eye) to each output line")
    .option("--rules <file>", "rules JSON (default: the packaged zh-fundus.json)")
    .addOption(policyOption())
    .addOption(textFieldOption("field or column holding the report"))
    .addOption(idFieldOption())
    .addHelpText("after", LABELS_EXAMPLES)
    .action(runLabels);

  labels
    .command("eval")
    .description("score the labeler against gold labels: per-label precision/recall/F1, micro and macro")
    .requiredOption(
      "--gold <file>",
      'reports with gold labels: JSONL {"text", "labels": {"<id>": 1 | 0.5}, "eye"} or CSV with a labels column',
    )
    .option("--rules <file>", "rules JSON (default: the packaged zh-fundus.json)")
    .addOption(policyOption())
    .addOption(textFieldOption("field or column holding the report"))
    .addOption(idFieldOption())
    .option("--labels-field <name>", "field or column holding the gold labels", "labels")
    .option("--errors", "group the disagreements by label and by the nearest cue or term, then list them per report")
    .option("--json", "print the scores as JSON")
    .option("--min-micro <f1>", "exit with status 1 when micro-F1 is below this", unit())
    .option("--min-macro <f1>", "exit with status 1 when macro-F1 is below this", unit())
    .action(runLabelsEval);
}
