/** `vilref tokenize` and `vilref vocab build`, and the vocabulary builder. */
import test from "ava";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { register } from "../lib/cli/text.js";
import { BertTokenizer, Vocab, buildVocab } from "../lib/text/index.js";
import { sharedPath } from "./helpers/shared.js";

async function run(args: string[]): Promise<string> {
  const program = new Command("vilref").exitOverride();
  register(program);
  let stdout = "";
  const ow = process.stdout.write.bind(process.stdout);
  (process.stdout as any).write = (s: string) => ((stdout += s), true);
  try {
    await program.parseAsync(args, { from: "user" });
  } finally {
    (process.stdout as any).write = ow;
  }
  return stdout;
}

const vocabPath = sharedPath("vocab", "chinese-bert-vocab.txt");

test.serial("`vilref tokenize` matches the released ids of the fixture at L=52 and L=100", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-tok-"));
  const cases = readFileSync(sharedPath("fixtures", "tokenizer-cases.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const inp = path.join(dir, "texts.jsonl");
  writeFileSync(inp, cases.map((c, i) => JSON.stringify({ id: `c${i}`, text: c.text })).join("\n") + "\n");
  for (const L of [52, 100]) {
    const out = path.join(dir, `ids${L}.jsonl`);
    const msg = await run(["tokenize", "--vocab", vocabPath, "--context-length", String(L), "--in", inp, "--out", out]);
    t.regex(msg, new RegExp(`tokenized ${cases.length} texts`));
    const rows = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    t.is(rows.length, cases.length);
    rows.forEach((r, i) => {
      t.is(r.id, `c${i}`);
      t.deepEqual(r.ids, L === 52 ? cases[i].ids52 : cases[i].ids100);
    });
  }
});

test.serial("`vilref tokenize --preprocess` maps curly quotes; bad context length is refused", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-tok-"));
  const inp = path.join(dir, "t.txt");
  writeFileSync(inp, "“DR”\n");
  const out = path.join(dir, "o.jsonl");
  await run(["tokenize", "--vocab", vocabPath, "--in", inp, "--out", out, "--context-length", "8", "--preprocess"]);
  const row = JSON.parse(readFileSync(out, "utf8"));
  const tok = BertTokenizer.fromFile(vocabPath);
  t.deepEqual(row.ids, Array.from(tok.encodeForModel('"dr"', 8)));
  t.is(row.ids[1], 107);
  await t.throwsAsync(run(["tokenize", "--vocab", vocabPath, "--in", inp, "--out", out, "--context-length", "1"]));
});

test("vocabulary builder: Chinese BERT special layout, every corpus text encodes without [UNK]", (t) => {
  const corpus = [
    "右眼视网膜出血，C/D 0.3",
    "左眼黄斑前膜，OD正常",
    "NVE (+)，PDR",
    "双眼豹纹状眼底",
    "OD OS OU nve pdr",
  ];
  const v = buildVocab([...corpus, ...corpus], { size: 400, minCount: 1 });
  t.is(v.padId, 0);
  t.is(v.unkId, 100);
  t.is(v.clsId, 101);
  t.is(v.sepId, 102);
  t.is(v.maskId, 103);
  t.true(v.size <= 400);
  const tok = new BertTokenizer(v);
  for (const text of corpus) t.false(tok.encode(text).includes(v.unkId), text);
  t.true(v.has("od"), "frequent Latin words become whole tokens");
  // Deterministic and round-trips through vocab.txt.
  const again = buildVocab([...corpus, ...corpus], { size: 400, minCount: 1 });
  t.is(again.toText(), v.toText());
  t.is(Vocab.fromText(v.toText()).size, v.size);
});

test.serial("`vilref vocab build` writes a vocab.txt the tokenizer loads", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-vocab-"));
  const out = path.join(dir, "vocab.txt");
  const msg = await run([
    "vocab",
    "build",
    "--in",
    sharedPath("labels", "dev-reports.jsonl"),
    "--out",
    out,
    "--size",
    "3000",
  ]);
  t.regex(msg, /built a vocabulary of \d+ tokens from 300 texts/);
  const tok = BertTokenizer.fromFile(out);
  t.is(tok.vocab.clsId, 101);
  const ids = tok.encode("右眼视网膜出血");
  t.false(ids.includes(100));
});
