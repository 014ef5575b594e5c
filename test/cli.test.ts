// The command-line grammar, run in-process through main(): every command answers a malformed
// number, an unknown choice, a missing required option (or argument) and an unknown option with exit
// status 2 and one line naming the option; a failing run exits 1; every command that reads CSV
// names the file and line of an unterminated quote and of text after a closing quote.
import test from "ava";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { sharedPath } from "./helpers/shared.js";

const dir = mkdtempSync(path.join(tmpdir(), "vilref-cli-"));
const file = (name: string, text: string | Buffer) => {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
};
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");
const missing = path.join(dir, "does-not-exist");

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(["node", "vilref", ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** One usage case: arguments, and the option the error line must name. */
type Case = [args: string[], names: string];

interface Row {
  command: string;
  number?: Case;
  choice?: Case;
  required?: Case;
  /** A run that parses and fails. */
  failing?: string[];
}

const m = ["--model", "preset:tiny-vit"];
const d = ["--data", missing];
const ROWS: Row[] = [
  { command: "doctor" },
  {
    command: "demo",
    number: [["demo", "--steps", "1.5"], "--steps"],
    choice: [["demo", "--loss", "triplet"], "--loss"],
  },
  { command: "convert", required: [["convert", "in.pt"], "output"], failing: ["convert", missing, "out.safetensors"] },
  {
    command: "embed",
    number: [["embed", ...m, "--out", "o.npy", "--images", missing, "--batch-size", "x"], "--batch-size"],
    choice: [["embed", ...m, "--out", "o.npy", "--images", missing, "--features", "mid"], "--features"],
    required: [["embed", "--out", "o.npy", "--images", missing], "--model"],
    failing: ["embed", ...m, "--out", path.join(dir, "o.npy"), "--images", missing],
  },
  {
    command: "classify",
    number: [
      ["classify", ...m, "--images", missing, "--classes", "a,b", "--out", "o.csv", "--batch-size", "x"],
      "--batch-size",
    ],
    choice: [
      ["classify", ...m, "--images", missing, "--taxonomy", "--multi-label", "--scoring", "absolute", "--out", "o.csv"],
      "--scoring",
    ],
    required: [["classify", ...m, "--images", missing, "--classes", "a,b"], "--out"],
    failing: ["classify", ...m, "--images", missing, "--classes", "a,b", "--out", path.join(dir, "o.csv")],
  },
  {
    command: "search",
    number: [["search", "--index", missing, "--text", "x", "-k", "0"], "--k"],
    choice: [["search", "--index", missing, "--image", "x", "--features", "mid"], "--features"],
    required: [["search", "--text", "x"], "--index"],
    failing: ["search", "--index", missing, "--queries", path.join(dir, "q.npy")],
  },
  { command: "models list" },
  {
    command: "models add",
    number: [["models", "add", "x.pt", "--context-length", "1.5"], "--context-length"],
    required: [["models", "add"], "file"],
    failing: ["models", "add", missing, "--dir", dir],
  },
  {
    command: "tokenize",
    number: [
      ["tokenize", "--vocab", vocab, "--in", "t.txt", "--out", "o", "--context-length", "1"],
      "--context-length",
    ],
    required: [["tokenize", "--in", "t.txt", "--out", "o"], "--vocab"],
    failing: ["tokenize", "--vocab", vocab, "--in", missing, "--out", path.join(dir, "ids.jsonl")],
  },
  {
    command: "vocab build",
    number: [["vocab", "build", "--in", "c.txt", "--out", "v.txt", "--size", "ten"], "--size"],
    required: [["vocab", "build", "--out", "v.txt"], "--in"],
    failing: ["vocab", "build", "--in", missing, "--out", path.join(dir, "v.txt")],
  },
  {
    command: "labels",
    choice: [["labels", "--in", "r.txt", "--uncertain", "maybe"], "--uncertain"],
    required: [["labels"], "--in"],
    failing: ["labels", "--in", missing],
  },
  {
    command: "labels eval",
    number: [["labels", "eval", "--gold", "g.jsonl", "--min-micro", "1.5"], "--min-micro"],
    choice: [["labels", "eval", "--gold", "g.jsonl", "--uncertain", "maybe"], "--uncertain"],
    required: [["labels", "eval"], "--gold"],
    failing: ["labels", "eval", "--gold", missing],
  },
  {
    command: "synth",
    number: [["synth", "--n", "-1", "--out", "x"], "--n"],
    choice: [["synth", "--n", "1", "--out", "x", "--format", "gif"], "--format"],
    required: [["synth", "--n", "1"], "--out"],
    failing: ["synth", "--n", "1", "--out", path.join(file("a-file", "x"), "sub")],
  },
  {
    command: "pretrain",
    number: [["pretrain", "run.json", "--nproc", "0"], "--nproc"],
    choice: [["pretrain", "run.json", "--loss", "triplet"], "--loss"],
    required: [["pretrain"], "config"],
    failing: ["pretrain", missing],
  },
  {
    command: "data check",
    required: [["data", "check"], "input"],
    failing: ["data", "check", path.join(dir, "missing.csv")],
  },
  {
    command: "data pack",
    number: [["data", "pack", "m.csv", "--out", "o", "--quality", "101"], "--quality"],
    choice: [["data", "pack", "m.csv", "--out", "o", "--labels", "magic"], "--labels"],
    required: [["data", "pack", "m.csv"], "--out"],
    failing: ["data", "pack", path.join(dir, "missing.csv"), "--out", path.join(dir, "packed")],
  },
  {
    command: "eval zeroshot",
    number: [["eval", "zeroshot", ...m, ...d, "--bootstrap", "-5"], "--bootstrap"],
    choice: [["eval", "zeroshot", ...m, ...d, "--scoring", "absolute"], "--scoring"],
    required: [["eval", "zeroshot", ...m], "--data"],
    failing: ["eval", "zeroshot", ...m, ...d],
  },
  {
    command: "eval probe",
    number: [["eval", "probe", ...m, ...d, "--c-grid", "1,-1"], "--c-grid"],
    choice: [["eval", "probe", ...m, ...d, "--multiclass", "ovo"], "--multiclass"],
    required: [["eval", "probe", ...d], "--model"],
    failing: ["eval", "probe", ...m, ...d],
  },
  {
    command: "eval retrieval",
    number: [["eval", "retrieval", ...m, ...d, "--ks", "1,0"], "--ks"],
    choice: [["eval", "retrieval", ...m, ...d, "--adapter", "kaggle"], "--adapter"],
    required: [["eval", "retrieval", ...m], "--data"],
    failing: ["eval", "retrieval", ...m, ...d],
  },
  {
    command: "eval segment",
    number: [["eval", "segment", ...d, "--tile", "6.4e1"], "--tile"],
    choice: [["eval", "segment", ...d, "--normalise", "clahe"], "--normalise"],
    required: [["eval", "segment", ...m], "--data"],
    failing: ["eval", "segment", ...d],
  },
  {
    command: "eval finetune",
    number: [["eval", "finetune", ...m, "--train", "a", "--val", "b", "--epochs", "0"], "--epochs"],
    choice: [["eval", "finetune", ...m, "--train", "a", "--val", "b", "--device", "gpu"], "--device"],
    required: [["eval", "finetune", ...m, "--train", "a"], "--val"],
    failing: ["eval", "finetune", ...m, "--train", missing, "--val", missing],
  },
  {
    command: "eval adapter",
    number: [["eval", "adapter", ...m, ...d, "--method", "tip", "--shots", "0"], "--shots"],
    choice: [["eval", "adapter", ...m, ...d, "--method", "coop", "--shots", "4"], "--method"],
    required: [["eval", "adapter", ...m, ...d, "--method", "tip"], "--shots"],
    failing: ["eval", "adapter", ...m, ...d, "--method", "tip", "--shots", "4"],
  },
];

test("every command is in the table", async (t) => {
  const { buildProgram } = await import("../lib/cli/main.js");
  const names: string[] = [];
  const walk = (c: import("commander").Command, prefix: string) => {
    for (const s of c.commands) {
      const name = prefix ? `${prefix} ${s.name()}` : s.name();
      // a command with an action (labels has one, and the subcommand labels eval)
      if ((s as unknown as { _actionHandler: unknown })._actionHandler) names.push(name);
      walk(s, name);
    }
  };
  walk(buildProgram(), "");
  t.deepEqual(names.sort(), ROWS.map((r) => r.command).sort());
});

for (const row of ROWS) {
  test(`${row.command}: usage errors exit 2 with one line naming the option; a failing run exits 1`, async (t) => {
    const prefix = `vilref ${row.command}: `;
    const cases: [string, Case][] = [];
    if (row.number) cases.push(["malformed number", row.number]);
    if (row.choice) cases.push(["unknown choice", row.choice]);
    if (row.required) cases.push(["missing required", row.required]);
    const valid = row.failing ?? row.command.split(" ");
    cases.push(["unknown option", [[...valid, "--no-such-option"], "--no-such-option"]]);
    for (const [what, [args, name]] of cases) {
      const r = await run(...args);
      t.is(r.code, 2, `${what}: ${args.join(" ")}: ${r.err}`);
      t.is(r.out, "", what);
      t.regex(r.err, /^[^\n]+\n$/, `${what}: one line`);
      t.true(r.err.startsWith(prefix), `${what}: ${r.err}`);
      t.true(r.err.includes(name), `${what}: ${JSON.stringify(r.err)} names ${name}`);
    }
    if (row.failing) {
      const r = await run(...row.failing);
      t.is(r.code, 1, `${row.failing.join(" ")}: ${r.err}`);
      t.true(r.err.startsWith(prefix), r.err);
    }
  });
}

test("the error messages of the number parsers and choices", async (t) => {
  const err = async (...args: string[]) => (await run(...args)).err;
  t.is(
    await err("eval", "probe", ...m, ...d, "--batch-size", "8x"),
    "vilref eval probe: option '--batch-size <n>' argument '8x' is invalid. Expected an integer ≥ 1.\n",
  );
  t.is(
    await err("eval", "segment", ...d, "--threshold", "1.5"),
    "vilref eval segment: option '--threshold <p>' argument '1.5' is invalid. Expected a number between 0 and 1.\n",
  );
  t.is(
    await err("eval", "probe", ...m, ...d, "--refit", "val"),
    "vilref eval probe: option '--refit <which>' argument 'val' is invalid. Allowed choices are train, train+val.\n",
  );
  t.is(
    await err("eval", "zeroshot", ...m, ...d, "--classes", "dr", "--classes-file", "c.txt"),
    "vilref eval zeroshot: option '--classes <list>' cannot be used with option '--classes-file <file>'\n",
  );
  t.is(
    await err("embed", ...m, "--out", "o.npy"),
    "vilref embed: give exactly one of --images <input>, --texts <file> or --npy <file>\n",
  );
  t.is(await err("frobnicate"), "vilref: unknown command 'frobnicate'\n");
  // --config (a released .pt's model config) is read by every command that loads a model
  const badConfig = file("bad-config.json", "{ not json");
  for (const args of [
    ["embed", ...m, "--images", missing, "--out", "o.npy", "--config", badConfig],
    ["eval", "segment", ...d, "--config", badConfig],
  ]) {
    const r = await run(...args);
    t.is(r.code, 1);
    t.true(r.err.includes(`--config ${badConfig}: `), r.err);
  }
  t.is((await run("eval")).code, 2, "a command without its subcommand is a usage error");
  t.is((await run("--version")).code, 0);
  const help = await run("eval", "probe", "--help");
  t.is(help.code, 0);
  t.regex(help.out, /Examples:\n {2}\$ vilref eval probe /);
  t.regex(help.out, /--device <device> +cpu, cuda or cuda:N/);
  t.regex(help.out, /--no-progress/);
});

test.serial("VILREF_DEBUG=1 prints the stack of a failure", async (t) => {
  const before = process.env.VILREF_DEBUG;
  process.env.VILREF_DEBUG = "1";
  try {
    const r = await run("labels", "--in", missing);
    t.is(r.code, 1);
    t.regex(r.err, /^vilref labels: TableError: .*does-not-exist: cannot read/);
    t.regex(r.err, /\n +at /);
  } finally {
    if (before === undefined) delete process.env.VILREF_DEBUG;
    else process.env.VILREF_DEBUG = before;
  }
  const r = await run("labels", "--in", missing);
  t.notRegex(r.err, /\n +at /);
});

// ---- strict CSV, for every command that reads one -----------------------------------------------

const REPORTS = {
  unterminated: 'id,text\n1,未见异常\n2,"视盘边界清\n3,黄斑区\n',
  junk: 'id,text\n1,未见异常\n2,"视盘"正常\n',
};
const MANIFEST = {
  unterminated: 'image,text,labels,split\na.png,x,dr,test\nb.png,"never closed,dr,test\nc.png,y,dr,test\n',
  junk: 'image,text,labels,split\na.png,x,dr,test\nb.png,"a"b,dr,test\n',
};
const CSV_COMMANDS: [string, (csv: string) => string[], typeof REPORTS][] = [
  ["labels", (f) => ["labels", "--in", f], REPORTS],
  ["labels eval", (f) => ["labels", "eval", "--gold", f], REPORTS],
  ["tokenize", (f) => ["tokenize", "--vocab", vocab, "--in", f, "--out", path.join(dir, "ids.jsonl")], REPORTS],
  ["vocab build", (f) => ["vocab", "build", "--in", f, "--out", path.join(dir, "vocab.txt")], REPORTS],
  ["embed", (f) => ["embed", ...m, "--texts", f, "--vocab", vocab, "--out", path.join(dir, "t.npy")], REPORTS],
  ["embed", (f) => ["embed", ...m, "--images", f, "--out", path.join(dir, "i.npy")], MANIFEST],
  ["data check", (f) => ["data", "check", f], MANIFEST],
  ["data pack", (f) => ["data", "pack", f, "--out", path.join(dir, "packed-csv")], MANIFEST],
  ["eval zeroshot", (f) => ["eval", "zeroshot", ...m, "--data", f, "--vocab", vocab], MANIFEST],
  ["eval probe", (f) => ["eval", "probe", ...m, "--data", f], MANIFEST],
  ["eval retrieval", (f) => ["eval", "retrieval", ...m, "--data", f, "--vocab", vocab], MANIFEST],
  ["eval finetune", (f) => ["eval", "finetune", ...m, "--train", f, "--val", f], MANIFEST],
];

CSV_COMMANDS.forEach(([command, args, content], k) => {
  const input = args("X")[args("X").indexOf("X") - 1];
  test(`${command} ${input}: a CSV's unterminated quote and text after a closing quote are errors naming file and \
line`, async (t) => {
    const tag = `csv${k}`;
    const bad = file(`${tag}-unterminated.csv`, content.unterminated);
    let r = await run(...args(bad));
    t.is(r.code, 1, r.err);
    t.true(r.err.includes(`${bad}:3: unterminated quoted field`), r.err);
    const junk = file(`${tag}-junk.csv`, content.junk);
    r = await run(...args(junk));
    t.is(r.code, 1, r.err);
    t.true(r.err.includes(`${junk}:3: text after a closing quote`), r.err);
  });
});

test("invalid UTF-8 in a text input is an error naming file and line", async (t) => {
  const bytes = Buffer.concat([Buffer.from("id,text\n1,未见异常\n2,"), Buffer.from([0xe8, 0x28, 0x0a])]);
  for (const [name, args] of [
    ["r.csv", (f: string) => ["labels", "--in", f]],
    ["r.txt", (f: string) => ["vocab", "build", "--in", f, "--out", path.join(dir, "v2.txt")]],
    ["m.csv", (f: string) => ["data", "check", f]],
  ] as const) {
    const f = file(`utf8-${name}`, bytes);
    const r = await run(...args(f));
    t.is(r.code, 1, r.err);
    t.true(r.err.includes(`${f}:3: not valid UTF-8 text`), r.err);
  }
});
