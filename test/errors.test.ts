// Errors a user can act on (issue 22): what LibTorch would have said from deep inside ("index out
// of range in self", "INTERNAL ASSERT FAILED ... please report a bug to PyTorch") is checked first
// and said in vilref's words, naming the option or tensor.
import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ViLReF } from "../lib/model/vilref.js";
import { native } from "../lib/native.js";
import { writeSynthDataset } from "../lib/synth/index.js";
import { Vocab } from "../lib/text/index.js";
import { pretrain } from "../lib/train/pretrain.js";
import { Trainer } from "../lib/train/trainer.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-errors-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

test("a training step checks token ids against the model's positions and vocabulary", async (t) => {
  const model = ViLReF.create("tiny-vit");
  const trainer = new Trainer(model, { labelDim: 4, queueSize: 8 });
  const batch = (L: number, id: bigint) => ({
    images: { data: new Float32Array(2 * 3 * 32 * 32), shape: [2, 3, 32, 32] },
    ids: { data: new BigInt64Array(2 * L).fill(id), shape: [2, L] },
    labels: { data: new Float32Array(2 * 4), shape: [2, 4] },
  });
  await t.throwsAsync(trainer.step(batch(65, 1n)), {
    instanceOf: RangeError,
    message: "batch.ids: context length 65 is outside [1, 64] (text_max_position_embeddings)",
  });
  await t.throwsAsync(trainer.step(batch(8, 99999n)), {
    instanceOf: RangeError,
    message: "batch.ids.data[0] = 99999 is outside the vocabulary [0, 21128)",
  });
  const ok = await trainer.step(batch(8, 101n));
  t.true(Number.isFinite(ok.loss));
});

test("pretrain: a context length beyond the model's positions, \
or another vocabulary than its checkpoint's", async (t) => {
  const data = path.join(root, "data");
  await writeSynthDataset(data, 16, 5, { size: 32 });
  const base = {
    model: { preset: "tiny-vit" },
    data: { train: path.join(data, "manifest.jsonl") },
    batchSize: 8,
    steps: 1,
    queue: { size: 16 },
    threads: 2,
  };
  await t.throwsAsync(pretrain({ ...base, text: { contextLength: 100 }, output: path.join(root, "long") }), {
    instanceOf: RangeError,
    message: "text.contextLength: 100 is longer than the model's 64 positions (text_max_position_embeddings)",
  });
  // a checkpoint trained with one vocabulary, a run given another
  const ckpt = path.join(root, "with-vocab.safetensors");
  const vocabA = path.join(root, "a.txt");
  const vocabB = path.join(root, "b.txt");
  const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  writeFileSync(vocabA, [...special, "视", "网", "膜"].join("\n") + "\n");
  writeFileSync(vocabB, [...special, "出", "血"].join("\n") + "\n");
  await ViLReF.create("tiny-vit").save(ckpt, {
    vocabSha256: (await import("../lib/model/vilref.js")).sha256Hex(Vocab.fromFile(vocabA).toText()),
  });
  await t.throwsAsync(
    pretrain({ ...base, model: { checkpoint: ckpt }, text: { vocab: vocabB }, output: path.join(root, "vocab") }),
    {
      message: new RegExp(
        `^text\\.vocab: sha256 \\w+… is not the vocabulary ${ckpt.replace(/[/.]/g, "\\$&")} was trained with`,
      ),
    },
  );
});

test("LibTorch's internal assertions reach users in vilref's words", async (t) => {
  const debug = native().debug;
  for (const run of [
    () => Promise.resolve().then(() => debug.torchError("Expected GenericDict but got None", false, true)),
    () => debug.torchError("Expected GenericDict but got None", true, true)!,
  ]) {
    const e = await t.throwsAsync(run());
    t.regex(
      e!.message,
      new RegExp(
        /^LibTorch rejected an input vilref did not check: Expected GenericDict but got None /.source +
          /\(an internal assertion at "[^"]+":\d+\); /.source +
          /please report this to vilref with the command that caused it$/.source,
      ),
    );
    t.notRegex(e!.message, /report a bug to PyTorch|INTERNAL ASSERT FAILED/);
  }
  // plain LibTorch errors are unchanged
  t.throws(() => debug.torchError("shapes do not line up: 3 vs 4"), { message: "shapes do not line up: 3 vs 4" });
});
