// Command outputs that are whole or absent, and checks that refuse rather than mislead (issue 22):
// `tokenize --out` and `labels --out` on a full disk keep the previous good file (and name the
// path); `embed --texts` refuses a vocabulary the checkpoint was not trained with (as `eval` does);
// `labels eval` on a file without gold labels is an error, not a table of zeros.
import test from "ava";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex, ViLReF } from "../lib/model/vilref.js";
import { Vocab } from "../lib/text/index.js";
import { sharedPath } from "./helpers/shared.js";

const cli = fileURLToPath(new URL("./helpers/cli.ts", import.meta.url));
const root = mkdtempSync(path.join(tmpdir(), "vilref-cli-out-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");

function vilref(...args: string[]) {
  return spawnSync(process.execPath, ["--import", "tsx", cli, ...args], { encoding: "utf8", timeout: 300_000 });
}

const reports = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify({ id: `r${i}`, text: `右眼视网膜可见出血及渗出，第${i}例，黄斑水肿` }),
  ).join("\n") + "\n";

test("labels eval on a file without gold labels is an error naming the file and field", (t) => {
  const none = path.join(root, "nogold.jsonl");
  writeFileSync(none, reports(3));
  const r = vilref("labels", "eval", "--gold", none);
  t.is(r.status, 1, r.stdout);
  t.regex(
    r.stderr,
    new RegExp(
      `--gold ${none.replace(/[/.]/g, "\\$&")}: none of its 3 reports has gold labels in the field "labels" ` +
        "\\(another field: --labels-field\\)",
    ),
  );
  t.notRegex(r.stdout, /micro/, "no table of zeros");
  const some = path.join(root, "somegold.jsonl");
  writeFileSync(
    some,
    [
      JSON.stringify({ text: "视网膜正常", labels: {} }),
      JSON.stringify({ text: "出血" }),
      JSON.stringify({ text: "渗出" }),
    ].join("\n"),
  );
  const r2 = vilref("labels", "eval", "--gold", some);
  t.is(r2.status, 1);
  t.regex(r2.stderr, /somegold\.jsonl:2: no gold labels in the field "labels" \(nor in 1 more reports\)/);
});

test("embed --texts refuses a vocabulary other than the checkpoint's", async (t) => {
  const ckpt = path.join(root, "model.safetensors");
  const mine = Vocab.fromFile(vocab);
  await ViLReF.create("tiny-vit").save(ckpt, { vocabSha256: sha256Hex(mine.toText()) });
  const other = path.join(root, "other-vocab.txt");
  writeFileSync(other, readFileSync(vocab, "utf8").replace("[unused1]", "[unused-x]"));
  const texts = path.join(root, "texts.jsonl");
  writeFileSync(texts, reports(4));
  const out = path.join(root, "t.npy");
  const bad = vilref("embed", "--texts", texts, "--vocab", other, "--model", ckpt, "--out", out, "--no-progress");
  t.is(bad.status, 1, bad.stdout);
  t.regex(bad.stderr, /--vocab .*other-vocab\.txt: sha256 \w+… is not the vocabulary the checkpoint was trained with/);
  t.false(existsSync(out));
  const good = vilref("embed", "--texts", texts, "--vocab", vocab, "--model", ckpt, "--out", out, "--no-progress");
  t.is(good.status, 0, good.stderr);
  t.true(existsSync(out));
});

/** A tmpfs of `size`, or null when this process may not mount. */
function tmpfs(size: string): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-full-"));
  if (spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]).status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return dir;
}

test("tokenize, labels and convert on a full disk keep the previous good file and name the path; EROFS too", (t) => {
  const disk = tmpfs("256k");
  if (!disk) {
    t.log("SKIPPED: cannot mount a tmpfs here");
    t.pass();
    return;
  }
  try {
    const input = path.join(root, "many.jsonl");
    writeFileSync(input, reports(6000));
    for (const [label, args] of [
      ["tokenize", ["tokenize", "--vocab", vocab, "--in", input]],
      ["labels", ["labels", "--in", input]],
    ] as const) {
      const out = path.join(disk, `${label}.jsonl`);
      writeFileSync(out, "the previous good output\n");
      const r = vilref(...args, "--out", out);
      t.is(r.status, 1, `${label}: ${r.stdout}`);
      t.regex(
        r.stderr,
        new RegExp(
          `${out.replace(/[/.]/g, "\\$&")}: cannot write: no space left on the device; ` +
            "free some and run again \\(ENOSPC\\)",
        ),
        label,
      );
      t.is(readFileSync(out, "utf8"), "the previous good output\n", `${label}: the previous output is whole`);
    }
    // convert: a checkpoint larger than the disk
    const converted = path.join(disk, "model.safetensors");
    writeFileSync(converted, "the previous good model\n");
    const c = vilref(
      "convert",
      sharedPath("fixtures", "tiny-vit", "checkpoint.pt"),
      converted,
      "--config",
      sharedPath("fixtures", "tiny-vit", "config.json"),
    );
    t.is(c.status, 1, c.stdout);
    t.regex(c.stderr, /model\.safetensors: cannot write: no space left on the device/);
    t.is(readFileSync(converted, "utf8"), "the previous good model\n");
    t.deepEqual(
      readdirSync(disk).sort(),
      ["labels.jsonl", "model.safetensors", "tokenize.jsonl"],
      "no temporary left behind",
    );
    // a read-only file system: the path and what to do
    spawnSync("mount", ["-o", "remount,ro", disk]);
    const ro = vilref("tokenize", "--vocab", vocab, "--in", input, "--out", path.join(disk, "ro.jsonl"));
    t.is(ro.status, 1);
    t.regex(ro.stderr, /ro\.jsonl: cannot write: the file system is read-only; write the output elsewhere \(EROFS\)/);
  } finally {
    spawnSync("umount", [disk]);
    rmSync(disk, { recursive: true, force: true });
  }
});
