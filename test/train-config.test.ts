// The experiment config: defaults, path resolution, errors that name the key.
import test from "ava";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig, parseConfig } from "../lib/train/config.js";

const minimal = {
  model: { preset: "tiny-vit" },
  data: { train: "data/manifest.jsonl" },
  batchSize: 8,
  steps: 10,
  output: "runs/a",
};

test("a minimal config gets the specification's defaults", (t) => {
  const c = parseConfig(minimal, { baseDir: "/x" });
  t.is(c.loss, "wscl");
  t.deepEqual(c.wscl, { threshold: 1, gamma: 1 });
  t.is(c.queue.size, 16384);
  t.is(c.momentum, 0.995);
  t.deepEqual(c.optimizer.betas, [0.9, 0.98]);
  t.is(c.optimizer.eps, 1e-6);
  t.is(c.optimizer.weightDecay, 0.001);
  t.is(c.text.vocab, "build");
  t.is(c.text.contextLength, 52);
  t.is(c.labels.source, "rules");
  t.is(c.data.train, "/x/data/manifest.jsonl");
  t.is(c.output, "/x/runs/a");
  t.deepEqual(c.eval.ks, [1, 5, 10]);
  t.is(c.maxNonFinite, 5);
  t.deepEqual(c.freeze, []);
  t.is(c.gradientCheckpointing, false);
  t.is(c.precision, "float32");
});

const err = (value: unknown) => {
  try {
    parseConfig(value);
  } catch (e) {
    return (e as Error).message;
  }
  return "no error";
};

test("errors name the key", (t) => {
  t.regex(err({ ...minimal, batchSize: 1 }), /^config: batchSize: /);
  t.regex(err({ ...minimal, schedule: { warmupSteps: -1 } }), /schedule\.warmupSteps: /);
  t.regex(err({ ...minimal, schedule: { lr: 1e-4, minLr: 1e-3 } }), /schedule\.minLr: must not exceed lr/);
  t.regex(err({ ...minimal, wscl: { gamma: "1" } }), /wscl\.gamma: /);
  t.regex(err({ ...minimal, queue: { size: 1.5 } }), /queue\.size: /);
  t.regex(err({ ...minimal, loss: "triplet" }), /loss: /);
  t.regex(err({ ...minimal, optimizer: { betas: [0.9, 1] } }), /optimizer\.betas\[1\]: /);
  t.regex(err({ ...minimal, device: "tpu" }), /device: expected "cpu", "cuda" or "cuda:N"/);
  t.regex(err({ ...minimal, model: { preset: "huge" } }), /model\.preset: unknown preset "huge"/);
  t.regex(
    err({ ...minimal, model: { preset: "tiny-vit", checkpoint: "a.safetensors" } }),
    /model: give exactly one of preset, config or checkpoint/,
  );
  t.regex(err({ ...minimal, model: { config: { embed_dim: 0 } } }), /model\.config\.embed_dim: /);
  t.regex(err({ ...minimal, labels: { source: "file" } }), /labels\.file: a labels file is needed/);
  t.regex(err({ ...minimal, steps: undefined }), /steps: give epochs or steps/);
  t.regex(err({ ...minimal, lr: 0.1 }), /Unrecognized key: "lr"/);
  t.regex(err({ ...minimal, data: {} }), /data\.train: /);
  t.regex(err({ ...minimal, checkpoint: { keep: 0 } }), /checkpoint\.keep: /);
  t.regex(err({ ...minimal, freeze: ["image"] }), /freeze\[0\]: /);
  t.regex(err({ ...minimal, gradientCheckpointing: "yes" }), /gradientCheckpointing: /);
  t.regex(err({ ...minimal, precision: "float16" }), /precision: float16 \(with loss scaling\) needs device "cuda"/);
  t.notThrows(() => parseConfig({ ...minimal, precision: "float16", device: "cuda" }));
});

test("a config file resolves paths against its folder and names itself in errors", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "vilref-cfg-"));
  const file = path.join(dir, "exp.json");
  writeFileSync(file, JSON.stringify({ ...minimal, text: { vocab: "vocab.txt" } }));
  const c = loadConfig(file);
  t.is(c.text.vocab, path.join(dir, "vocab.txt"));
  t.is(c.data.train, path.join(dir, "data/manifest.jsonl"));
  writeFileSync(file, JSON.stringify({ ...minimal, epochs: 0 }));
  t.throws(() => loadConfig(file), { message: `${file}: epochs: Too small: expected number to be >=1` });
  writeFileSync(file, "{");
  t.throws(() => loadConfig(file), { message: new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `) });
});
