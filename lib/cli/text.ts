/**
 * `vilref tokenize`: texts -> token ids exactly as the released tokenizer; `vilref vocab build`:
 * a WordPiece vocabulary from a report corpus for training from scratch.
 */
import type { Command } from "commander";
import { readReports } from "../labels/io.js";
import { BertTokenizer, DEFAULT_CONTEXT_LENGTH, VocabBuilder, preprocessText } from "../text/index.js";
import {
  contextLengthOption,
  examples,
  idFieldOption,
  int,
  outOption,
  textFieldOption,
  vocabOption,
} from "./options.js";
import { atomicWriteFileSync } from "../io/atomic.js";

export function register(program: Command): void {
  const tokenize = program
    .command("tokenize")
    .description("token ids as the released Chinese-CLIP/ViLReF tokenizer: [CLS] ids[:L-2] [SEP], padded with 0")
    .addOption(vocabOption({ required: true, description: "vocab.txt of the checkpoint" }))
    .requiredOption(
      "--in <file>",
      "texts: .jsonl (objects with a text field, or strings), .csv/.tsv with a header, or .txt one per line",
    )
    .addOption(outOption('output JSONL: {"id", "ids": [...]} per text', { required: true }))
    .addOption(contextLengthOption(DEFAULT_CONTEXT_LENGTH, "context length L"))
    .option("--preprocess", "apply the training dataset's preprocessing first (lowercase, curly double quotes to \")")
    .addOption(textFieldOption())
    .addOption(idFieldOption());
  examples(tokenize, [
    ["vilref tokenize --vocab vocab.txt --in reports.csv --out ids.jsonl", "ids at the released context length 52"],
  ]).action(
    (opts: {
      vocab: string;
      in: string;
      out: string;
      contextLength: number;
      preprocess?: boolean;
      textField: string;
      idField: string;
    }) => {
      const tok = BertTokenizer.fromFile(opts.vocab);
      const recs = readReports(opts.in, { textField: opts.textField, idField: opts.idField });
      const L = opts.contextLength;
      const row = new Int32Array(L);
      const lines: string[] = [];
      let truncated = 0;
      let bad = 0;
      for (const r of recs) {
        let text = r.text;
        if (typeof text !== "string") {
          process.stderr.write(`vilref tokenize: ${opts.in}:${r.line}: text is not a string; encoded as empty\n`);
          text = "";
          bad++;
        }
        const s = opts.preprocess ? preprocessText(text as string) : (text as string);
        tok.encodeForModel(s, L, row, 0);
        if (row[L - 1] !== 0) truncated++;
        lines.push(JSON.stringify({ id: r.id ?? r.line, ids: Array.from(row) }));
      }
      atomicWriteFileSync(opts.out, lines.join("\n") + (lines.length ? "\n" : ""));
      process.stdout.write(
        `tokenized ${recs.length} texts (context length ${L}, vocabulary ${tok.vocab.size}); ` +
          `${truncated} reached the context length; ${bad} not text; wrote ${opts.out}\n`,
      );
    },
  );

  const vocab = program.command("vocab").description("vocabularies");
  vocab
    .command("build")
    .description(
      "build a WordPiece vocab.txt from a report corpus (Chinese BERT layout: [PAD]=0, [UNK]=100, [CLS]=101, " +
        "[SEP]=102, [MASK]=103)",
    )
    .requiredOption("--in <file>", "corpus: .jsonl, .csv, .tsv or .txt")
    .addOption(outOption("vocab.txt to write", { required: true }))
    .option("--size <n>", "vocabulary size, specials included", int({ min: 105 }), 8000)
    .option("--min-count <n>", "leave out characters and merges seen fewer times", int({ min: 1 }), 2)
    .option("--no-preprocess", "do not apply the training dataset's preprocessing")
    .addOption(textFieldOption())
    .action(
      (opts: { in: string; out: string; size: number; minCount: number; preprocess: boolean; textField: string }) => {
        const recs = readReports(opts.in, { textField: opts.textField });
        const b = new VocabBuilder();
        for (const r of recs) if (typeof r.text === "string") b.add(opts.preprocess ? preprocessText(r.text) : r.text);
        const v = b.build({ size: opts.size, minCount: opts.minCount });
        atomicWriteFileSync(opts.out, v.toText());
        process.stdout.write(`built a vocabulary of ${v.size} tokens from ${b.textCount} texts; wrote ${opts.out}\n`);
      },
    );
}
