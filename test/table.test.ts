// The strict reader of tabular and text inputs (lib/io/table.ts): RFC 4180 through csv-parse, the
// line each row starts on, errors naming file and line, strict UTF-8.
import test from "ava";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TableError, decodeUtf8, parseRows, parseTable, readTable, readText } from "../lib/io/table.js";
import { parseCsv, readReports } from "../lib/labels/io.js";

const dir = mkdtempSync(path.join(tmpdir(), "vilref-table-"));

test("rows, quoting and the line each row starts on (blank lines, quoted newlines, mixed line ends)", (t) => {
  t.deepEqual(parseRows('a,b\n"x,1","y""z"\r\n3,\n\r\n"4\r\n5",6\r7,8\n'), [
    { fields: ["a", "b"], line: 1 },
    { fields: ["x,1", 'y"z'], line: 2 },
    { fields: ["3", ""], line: 3 },
    { fields: ["4\r\n5", "6"], line: 5 },
    { fields: ["7", "8"], line: 7 },
  ]);
  t.deepEqual(parseRows('\ufeffid\ttext\n1\t"a\tb"\n', { delimiter: "\t" }), [
    { fields: ["id", "text"], line: 1 },
    { fields: ["1", "a\tb"], line: 2 },
  ]);
  const table = parseTable(' image , text \na.png,"视盘""正常"",黄斑"\n', { file: "m.csv" });
  t.deepEqual(table.header, ["image", "text"]);
  t.deepEqual(table.rows, [{ fields: ["a.png", '视盘"正常",黄斑'], line: 2 }]);
  t.deepEqual(parseTable("", { file: "e.csv" }), { file: "e.csv", header: [], headerLine: 0, rows: [] });
});

test("errors name the file and line: unterminated quote, text after a closing quote, stray quote, \
short and long rows", (t) => {
  const cases: [string, string][] = [
    ['a,b\n1,2\n\n"x,3\n4,5\n', "f.csv:4: unterminated quoted field (its opening quote is on this line)"],
    ['"a,b\n1,2\n', "f.csv:1: unterminated quoted field"],
    ['a,b\n1,2\n"a"b,3\n', "f.csv:3: text after a closing quote"],
    ['a,b\r\n"1\r\n2",3\r\n"7"x,8\r\n', "f.csv:4: text after a closing quote"],
    ['a,b\n1,x"y\n', "f.csv:2: a quote inside an unquoted field"],
    ["a,b\n1,2\n3\n", "f.csv:3: 1 field, the header has 2"],
    ["a,b\n1,2\n\n3,4,5\n", "f.csv:4: 3 fields, the header has 2"],
  ];
  for (const [text, message] of cases) {
    const e = t.throws(() => parseTable(text, { file: "f.csv" }), { instanceOf: TableError });
    t.true(e!.message.startsWith(message), `${JSON.stringify(text)}: ${e!.message}`);
  }
  // the old labels reader swallowed the rest of the file, made "a"b into ab and padded short rows
  t.throws(() => parseCsv('text\n"never closed\nmore\n', "r.csv"), { message: /^r\.csv:2: unterminated/ });
  t.throws(() => parseCsv('text\n"a"b\n', "r.csv"), { message: /^r\.csv:2: text after a closing quote/ });
  const short = path.join(dir, "short.csv");
  writeFileSync(short, "id,text\n1\n");
  t.throws(() => readReports(short), { message: `${short}:2: 1 field, the header has 2` });
});

test("UTF-8: a byte order mark is dropped; invalid bytes are an error naming the line; \
unreadable files name the file", (t) => {
  t.is(decodeUtf8(Buffer.from("\ufeff未见异常\n", "utf8")), "未见异常\n");
  const bad = Buffer.concat([Buffer.from("id,text\n1,好\n2,"), Buffer.from([0xc3, 0x28]), Buffer.from("\n3,x\n")]);
  t.throws(() => decodeUtf8(bad, "r.csv"), { message: "r.csv:3: not valid UTF-8 text (save the file as UTF-8)" });
  const f = path.join(dir, "latin1.tsv");
  writeFileSync(f, Buffer.from("id\ttext\n1\tcaf\xe9\n", "latin1"));
  t.throws(() => readTable(f), { message: `${f}:2: not valid UTF-8 text (save the file as UTF-8)` });
  t.throws(() => readReports(f), { message: /latin1\.tsv:2: not valid UTF-8/ });
  t.throws(() => readText(path.join(dir, "nope.csv")), { message: /nope\.csv: cannot read: ENOENT/ });
});

test("readReports: CSV and TSV rows keep the file's line numbers; JSONL and TXT skip blank lines", (t) => {
  const csv = path.join(dir, "r.csv");
  writeFileSync(csv, 'id,text\n\nr1,"第一行\n第二行"\nr2,未见异常\n');
  t.deepEqual(
    readReports(csv).map((r) => [r.line, r.id, r.text]),
    [
      [3, "r1", "第一行\n第二行"],
      [5, "r2", "未见异常"],
    ],
  );
  const tsv = path.join(dir, "r.tsv");
  writeFileSync(tsv, "id\ttext\nr1\t视盘正常\n");
  t.deepEqual(
    readReports(tsv).map((r) => [r.line, r.id, r.text]),
    [[2, "r1", "视盘正常"]],
  );
  const txt = path.join(dir, "r.txt");
  writeFileSync(txt, "a\r\n\r\nb\n");
  t.deepEqual(
    readReports(txt).map((r) => [r.line, r.text]),
    [
      [1, "a"],
      [3, "b"],
    ],
  );
});
