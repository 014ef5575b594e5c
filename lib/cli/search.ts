/**
 * `vilref search`: the k items of a gallery (an index written by `vilref embed`) most similar to a
 * report text, an image, or a file of queries — text→image, image→image, image→text (an index of
 * report embeddings) — by cosine, in LibTorch, a piece of the index at a time (lib/search).
 */
import { Option } from "commander";
import type { Command } from "commander";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { resolveImageInputs } from "../data/inputs.js";
import { idsPathFor } from "../embed/index.js";
import { canonical } from "../embed/meta.js";
import { contextLengthFor, encodeImageSet, textEncoder, tokenizerFor } from "../eval/features.js";
import { atomicWriteFile } from "../io/atomic.js";
import { NpyError, readNpy } from "../io/npy.js";
import { readReports } from "../labels/index.js";
import { modelProvenance } from "../model/encoders.js";
import type { GalleryIndex, SearchResult } from "../search/index.js";
import { openIndex, searchIndex } from "../search/index.js";
import {
  UsageError,
  addModelOptions,
  batchSizeOption,
  contextLengthOption,
  examples,
  idFieldOption,
  int,
  loadModel,
  outOption,
  predictionsFile,
  progressOption,
  progressSpec,
  textFieldOption,
  vocabOption,
} from "./options.js";
import type { ModelCliOptions } from "./options.js";

interface SearchCliOptions extends Omit<ModelCliOptions, "model"> {
  model?: string;
  index: string;
  text?: string;
  image?: string;
  queries?: string;
  k: number;
  out?: string;
  features?: "projected" | "pre";
  vocab?: string;
  contextLength?: number;
  batchSize: number;
  textField: string;
  idField: string;
  progress: boolean;
}

interface Queries {
  data: Float32Array;
  n: number;
  d: number;
  ids: string[];
}

/** Feature rows of a .npy of queries (float32/float64 [n, d]); ids from its .ids.txt when there is one. */
async function npyQueries(file: string): Promise<Queries> {
  const a = await readNpy(file);
  if (a.dtype !== "float32" && a.dtype !== "float64")
    throw new NpyError(
      `--queries ${file}: dtype ${a.dtype}; queries are float32 feature rows (as vilref embed writes them)`,
    );
  if (a.shape.length !== 2) throw new NpyError(`--queries ${file}: shape (${a.shape.join(", ")}); expected 2-D rows`);
  const [n, d] = a.shape as [number, number];
  const idsFile = idsPathFor(file);
  const ids = existsSync(idsFile)
    ? readFileSync(idsFile, "utf8").split("\n").slice(0, n)
    : Array.from({ length: n }, (_, i) => `q${i}`);
  const data = a.data instanceof Float32Array ? a.data : Float32Array.from(a.data as Float64Array);
  return { data, n, d, ids };
}

/** The query features the options ask for (texts and images through the model). */
async function encodeQueries(o: SearchCliOptions, index: GalleryIndex): Promise<Queries> {
  if (o.queries?.toLowerCase().endsWith(".npy")) return npyQueries(o.queries);
  if (!o.model) throw new UsageError(`${o.image ? "--image" : "--text or a text --queries file"} needs --model`);
  const { model, origin } = await loadModel({ ...o, model: o.model });
  const mine = await modelProvenance(origin);
  const theirs = (index.meta?.key.encoder as { model?: unknown } | undefined)?.model;
  if (theirs !== undefined && canonical(theirs) !== canonical(mine))
    process.stderr.write(
      `vilref search: warning: ${index.file} was embedded with another model (${canonical(theirs)}); ` +
        `the queries use ${canonical(mine)}\n`,
    );
  if (o.image) {
    const samples = resolveImageInputs(o.image);
    const indexFeatures = (index.meta?.key.encoder as { features?: "projected" | "pre" } | undefined)?.features;
    const f = await encodeImageSet(model, samples, {
      features: o.features ?? indexFeatures ?? "projected",
      batchSize: o.batchSize,
      progress: progressSpec(o, { label: "encoding queries" }),
    });
    for (const s of f.skipped) process.stderr.write(`vilref search: skipped query ${s.id}: ${s.reason}\n`);
    if (f.n === 0) throw new Error(`--image ${o.image}: no image could be decoded`);
    return { data: f.data, n: f.n, d: f.d, ids: f.used.map((i) => samples[i]!.id) };
  }
  const records = o.text
    ? [{ id: "text", text: o.text }]
    : readReports(o.queries!, { textField: o.textField, idField: o.idField }).map((r) => {
        if (typeof r.text !== "string") throw new Error(`${o.queries}:${r.line}: no text in field ${o.textField}`);
        return { id: r.id ?? String(r.line), text: r.text };
      });
  const { tokenizer } = tokenizerFor(o.model, model, o.vocab);
  const encode = textEncoder(model, tokenizer, contextLengthFor(model, o.contextLength));
  const d = model.config.embed_dim;
  return { data: await encode(records.map((r) => r.text)), n: records.length, d, ids: records.map((r) => r.id) };
}

function field(v: string, sep: string): string {
  return v.includes(sep) || /["\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** The hits as CSV/TSV (query, rank, id, row, score) or JSONL (one line per query). */
export function formatHits(file: string, queryIds: readonly string[], r: SearchResult): string {
  const ext = path.extname(file).toLowerCase();
  if (ext === ".jsonl") return r.hits.map((h, i) => JSON.stringify({ query: queryIds[i], hits: h }) + "\n").join("");
  const sep = ext === ".csv" ? "," : "\t";
  const lines = [["query", "rank", "id", "row", "score"].join(sep)];
  r.hits.forEach((h, i) =>
    h.forEach((x, j) =>
      lines.push(
        [queryIds[i]!, String(j + 1), x.id, String(x.row), String(x.score)].map((c) => field(c, sep)).join(sep),
      ),
    ),
  );
  return lines.join("\n") + "\n";
}

async function runSearch(o: SearchCliOptions): Promise<void> {
  const given = [o.text, o.image, o.queries].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError("give exactly one of --text <text>, --image <input> or --queries <file>");
  const index = await openIndex(o.index);
  const q = await encodeQueries(o, index);
  const r = await searchIndex(index, { data: q.data, shape: [q.n, q.d] }, { k: o.k });
  if (o.out) {
    await atomicWriteFile(o.out, new TextEncoder().encode(formatHits(o.out, q.ids, r)));
    console.log(`wrote ${o.out}: ${q.n} queries × ${r.k} hits over ${index.rows} items of ${index.file}`);
    return;
  }
  process.stdout.write(formatHits("stdout.tsv", q.ids, r));
}

export function register(program: Command): void {
  const cmd = program
    .command("search")
    .description(
      "the k items of an index (vilref embed's .npy and .ids.txt) most similar to a text, " +
        "an image or a file of queries, by cosine",
    )
    .requiredOption("--index <file.npy>", "the gallery: float32 features from vilref embed (ids from its .ids.txt)")
    .option("--text <text>", "a report text as the query (text→image over image features)")
    .option(
      "--image <input>",
      "query image(s): a file, folder, glob or manifest (image→image; image→text over report features)",
    )
    .option(
      "--queries <file>",
      "many queries: a .npy of features (vilref embed's; ids from its .ids.txt) or reports (.txt, .jsonl, .csv, .tsv)",
    )
    .addOption(
      new Option("-k, --k <n>", "hits per query (more than the index holds: all of it)")
        .argParser(int({ min: 1 }))
        .default(10),
    )
    .addOption(
      outOption("write the hits here: .csv, .tsv (query, rank, id, row, score) or .jsonl").argParser(predictionsFile),
    );
  addModelOptions(cmd, {
    description: "the model that embedded the index (for --text, --image or a text --queries file)",
  })
    .addOption(
      new Option(
        "--features <which>",
        "image queries: projected or pre (default: the index's kind, from its .meta.json)",
      ).choices(["projected", "pre"]),
    )
    .addOption(
      vocabOption({ description: "the model's vocab.txt for text queries (default: the one inside the checkpoint)" }),
    )
    .addOption(contextLengthOption(undefined, "tokens per text query (default: the model's recorded length)"))
    .addOption(batchSizeOption(32, "query images per forward pass"))
    .addOption(textFieldOption("field or column of a --queries reports file holding the text"))
    .addOption(idFieldOption("field or column of a --queries reports file holding the id"))
    .addOption(progressOption());
  examples(cmd, [
    [
      'vilref search --index photos.npy --model vilref-vit-b-16 --text "视盘杯盘比扩大，盘沿变窄" -k 10',
      "the ten photographs closest to a report (text→image)",
    ],
    [
      "vilref search --index photos.npy --queries photos.npy -k 5 --out near.csv",
      "near duplicates: every photograph against all",
    ],
    [
      "vilref search --index reports.npy --model vilref-vit-b-16 --image new.jpg -k 3",
      "the reports closest to a photograph (image→text over vilref embed --texts output)",
    ],
  ]).action((o: SearchCliOptions) => runSearch(o));
}
