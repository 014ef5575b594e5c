import test from "ava";
import { readFileSync } from "node:fs";
import { BertTokenizer, Vocab, preprocessText, pyStrip } from "../lib/text/index.js";
import { sharedPath } from "./helpers/shared.js";

interface Case {
  text: string;
  ids52: number[];
  ids100: number[];
}

const vocabPath = sharedPath("vocab", "chinese-bert-vocab.txt");
const cases: Case[] = readFileSync(sharedPath("fixtures", "tokenizer-cases.jsonl"), "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "")
  .map((l) => JSON.parse(l) as Case);
const tok = BertTokenizer.fromFile(vocabPath);

test("vocabulary: 21128 entries, special ids as released", (t) => {
  const v = tok.vocab;
  t.is(v.size, 21128);
  t.is(v.padId, 0);
  t.is(v.unkId, 100);
  t.is(v.clsId, 101);
  t.is(v.sepId, 102);
  t.is(v.maskId, 103);
});

test("fixture has cases", (t) => {
  t.true(cases.length >= 100);
});

for (const L of [52, 100] as const) {
  test(`released tokenizer parity at context length ${L}, every fixture line`, (t) => {
    const bad: string[] = [];
    for (const c of cases) {
      const want = L === 52 ? c.ids52 : c.ids100;
      const got = Array.from(tok.encodeForModel(c.text, L));
      if (JSON.stringify(got) !== JSON.stringify(want))
        bad.push(`${JSON.stringify(c.text.slice(0, 40))}: got ${got.join(",")} want ${want.join(",")}`);
    }
    t.deepEqual(bad, []);
  });
}

test("batch encoding equals per-text encoding, row-major [n, L]", (t) => {
  const texts = cases.map((c) => c.text);
  const b = tok.encodeBatch(texts, 52);
  t.deepEqual(b.shape, [texts.length, 52]);
  for (let i = 0; i < texts.length; i++) {
    t.deepEqual(Array.from(b.data.subarray(i * 52, (i + 1) * 52)), (cases[i] as Case).ids52);
  }
});

test("basic tokenization: CJK split, lowercase, accents, punctuation", (t) => {
  t.deepEqual(tok.basicTokenize("视盘C/D 0.6"), ["视", "盘", "c", "/", "d", "0", ".", "6"]);
  t.deepEqual(tok.basicTokenize("Café naïve"), ["cafe", "naive"]);
  t.deepEqual(tok.basicTokenize("a\u0000b\u200bc"), ["abc"]);
  t.deepEqual(tok.basicTokenize("x\u3000y\u2028z"), ["x", "y", "z"]);
  t.deepEqual(tok.basicTokenize("[CLS]"), ["[", "cls", "]"]);
  t.deepEqual(tok.basicTokenize(""), []);
});

test("wordpiece: greedy longest match with ##, [UNK] when uncovered or over 200 chars", (t) => {
  t.deepEqual(tok.wordpiece("unaffable"), tok.tokenize("unaffable"));
  t.true(
    tok
      .tokenize("unaffable")
      .slice(1)
      .every((p) => p.startsWith("##")),
  );
  t.deepEqual(tok.tokenize("a".repeat(201)), ["[UNK]"]);
  t.not(tok.tokenize("a".repeat(200))[0], "[UNK]");
  t.deepEqual(tok.tokenize("😀"), ["[UNK]"]);
});

test("truncation keeps [SEP] last and pads with 0", (t) => {
  const row = tok.encodeForModel("视网膜".repeat(40), 10);
  t.is(row.length, 10);
  t.is(row[0], 101);
  t.is(row[9], 102);
  const short = tok.encodeForModel("", 5);
  t.deepEqual(Array.from(short), [101, 102, 0, 0, 0]);
  t.throws(() => tok.encodeForModel("x", 1), { instanceOf: RangeError });
});

test("preprocessText: lowercase and curly double quotes, as the training dataset", (t) => {
  t.is(preprocessText("“DR”‘x’"), '"dr"‘x’');
  // Without it a curly quote is [UNK]; with it, the ASCII quote's id.
  t.is(tok.encodeForModel("“", 5)[1], 100);
  t.is(tok.encodeForModel(preprocessText("“"), 5)[1], tok.vocab.id('"'));
});

test("vocab loading: Python strip, universal newlines, last duplicate wins", (t) => {
  const v = Vocab.fromText("[PAD]\r\n[UNK]\r[CLS]\n [SEP] \nfoo\nfoo\n");
  t.is(v.size, 6);
  t.is(v.id("[SEP]"), 3);
  t.is(v.id("foo"), 5);
  t.is(v.id("nope"), 1);
  t.is(pyStrip("\u3000a\u2028"), "a");
  t.throws(() => Vocab.fromText("a\nb\n"), { message: /\[UNK\]/ });
  t.throws(() => Vocab.fromFile("/nonexistent/vocab.txt"), { message: /cannot read vocabulary/ });
});

test("decode joins pieces", (t) => {
  t.is(tok.decode(tok.encodeForModel("unaffable 视网膜", 20)), "unaffable 视 网 膜");
});
