// eval segment / eval finetune: registered on a caller's eval command; bad input names the culprit.
import test from "ava";
import { Command } from "commander";
import { registerFinetune, registerSegment } from "../lib/cli/segment.js";

function program(): Command {
  const p = new Command("vilref").exitOverride();
  const e = p.command("eval").exitOverride();
  registerSegment(e);
  registerFinetune(e);
  for (const c of e.commands) c.exitOverride().configureOutput({ writeErr: () => {} });
  return p;
}

const run = (...args: string[]) => program().parseAsync(["node", "vilref", "eval", ...args]);

test("both subcommands are registered on the eval command", (t) => {
  const e = program().commands.find((c) => c.name() === "eval")!;
  t.deepEqual(e.commands.map((c) => c.name()).sort(), ["finetune", "segment"]);
});

test("segment: a missing data folder and bad options are named", async (t) => {
  await t.throwsAsync(run("segment", "--data", "/nonexistent/DRIVE"), {
    message: "/nonexistent/DRIVE: no such directory (a DRIVE root holds training/ and test/)",
  });
  // usage errors are commander's, one line naming the option (main exits 2: test/cli.test.ts)
  await t.throwsAsync(run("segment", "--data", "x", "--normalise", "clahe"), {
    message: /option '--normalise <mode>' argument 'clahe' is invalid\. Allowed choices are fov-standard, green-lcn/,
  });
  await t.throwsAsync(run("segment", "--data", "x", "--minutes", "-1"), {
    message: /option '--minutes <m>' argument '-1' is invalid\. Expected a number > 0/,
  });
  await t.throwsAsync(run("segment", "--data", "x", "--device", "cuda"), {
    message: /--device cuda: the segmenter runs on the CPU only/,
  });
});

test("finetune: missing sets are named", async (t) => {
  await t.throwsAsync(
    run("finetune", "--model", "preset:tiny-vit", "--train", "/nonexistent/train", "--val", "/nonexistent/val"),
    { message: "--train /nonexistent/train: no such file or directory" },
  );
});

test("segment --report writes a page with the metrics and one overlay per test image", async (t) => {
  const { mkdtempSync, readFileSync, existsSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const path = await import("node:path");
  const { sharedPath } = await import("./helpers/shared.js");
  const drive = sharedPath("data/DRIVE");
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-segreport-"));
  const log = console.log;
  console.log = () => {};
  try {
    // windows without overlap (stride = tile): the page is under test here, not the accuracy
    await run("segment", "--data", drive, "--steps", "3", "--minutes", "5", "--stride", "64", "--report", dir);
  } finally {
    console.log = log;
  }
  const html = readFileSync(path.join(dir, "index.html"), "utf8");
  t.regex(html, /Inside the field of view, 20 test images/);
  t.regex(html, /mean over images/);
  const imgs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
  t.is(imgs.length, 20, "one overlay per test image");
  for (const f of imgs) t.true(existsSync(path.join(dir, f)), f);
});
