// Models by name and models as one file: the registry resolves names in the model folder
// (VILREF_HOME or { dir }), a missing released file gets a message naming the file, where it is
// published and the folder; `vilref models add` converts a .pt with its vocabulary into the folder,
// after which --model NAME needs no --vocab; a vocabulary that disagrees with the recorded sha256
// is refused; a .pt without one still takes --vocab.
import test from "ava";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { main } from "../lib/cli/main.js";
import { readNpy } from "../lib/io/npy.js";
import { addModel, convertCheckpoint } from "../lib/model/pretrained.js";
import { listModels, loadRegistry, modelHome, ModelNotFoundError, resolveModel } from "../lib/model/registry.js";
import { canonicalVocabText, sha256Hex, ViLReF } from "../lib/model/vilref.js";
import { Vocab } from "../lib/text/vocab.js";
import { sharedPath } from "./helpers/shared.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-pretrained-"));
const fixture = sharedPath("fixtures", "tiny-vit", "checkpoint.pt");
const fixtureConfig = sharedPath("fixtures", "tiny-vit", "config.json");
const vocab = sharedPath("vocab", "chinese-bert-vocab.txt");
const config = JSON.parse(readFileSync(fixtureConfig, "utf8")) as Record<string, unknown>;

async function run(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  let out = "";
  let err = "";
  const log = console.log;
  const write = process.stdout.write;
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  try {
    const code = await main(["node", "vilref", ...args], { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  } finally {
    console.log = log;
    process.stdout.write = write;
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

const reports = path.join(root, "reports.jsonl");
writeFileSync(
  reports,
  ["视盘边界清，杯盘比约0.7", "黄斑区可见玻璃膜疣", "眼底未见明显异常"]
    .map((text, i) => JSON.stringify({ id: `r${i}`, text }) + "\n")
    .join(""),
);

test("the model folder: VILREF_HOME, else XDG_CACHE_HOME/vilref, else ~/.cache/vilref; { dir } first", (t) => {
  t.is(modelHome(undefined, { VILREF_HOME: "/models" }), "/models");
  t.is(modelHome(undefined, { XDG_CACHE_HOME: "/cache" }), "/cache/vilref");
  t.true(modelHome(undefined, {}).endsWith(path.join(".cache", "vilref")));
  t.is(modelHome("/x", { VILREF_HOME: "/models" }), "/x");
});

test("the registry (data) knows the released ViT-B/16 and RN50: file names, where published, config, context, \
vocabulary", (t) => {
  const r = loadRegistry();
  const vit = r.models["vilref-vit-b-16"]!;
  const rn = r.models["vilref-rn50"]!;
  t.is(vit.released!.name, "ViLReF_ViT");
  t.is(rn.released!.name, "ViLReF_RN50");
  t.regex(vit.released!.published, /github\.com\/T6Yang\/ViLReF/);
  t.is(vit.config.embed_dim, 512);
  t.deepEqual(rn.config.vision_layers, [3, 4, 6, 3]);
  t.is(vit.context_length, 100);
  // the released vocabulary is the Chinese BERT one the tests share, hashed as its tokens (as every vocabulary is)
  t.is(vit.vocab!.sha256, sha256Hex(Vocab.fromFile(vocab).toText()));
  t.is(vit.vocab!.sha256, sha256Hex(canonicalVocabText(readFileSync(vocab, "utf8"))));
});

test("a released name resolves to its file put in the folder; a missing one names the file, \
where it is published and the folder", (t) => {
  const home = path.join(root, "home-released");
  mkdirSync(home);
  const e = t.throws(() => resolveModel("vilref-vit-b-16", { dir: home }), { instanceOf: ModelNotFoundError });
  t.true(e.message.includes("ViLReF_ViT.pt"), e.message);
  t.true(e.message.includes("https://github.com/T6Yang/ViLReF"), e.message);
  t.true(e.message.includes("drive.google.com"), e.message);
  t.true(e.message.includes(home), e.message);
  t.true(e.message.includes("VILREF_HOME"), e.message);
  writeFileSync(path.join(home, "ViLReF_ViT.pt"), "placeholder");
  const r = resolveModel("vilref-vit-b-16", { dir: home });
  t.is(r.path, path.join(home, "ViLReF_ViT.pt"));
  t.is(r.source, "released");
  t.is(r.config!.vision_layers, 12); // the .pt carries no config: the registry's is used
  t.is(r.contextLength, 100);
  // the converted file is preferred to the released .pt
  writeFileSync(path.join(home, "vilref-vit-b-16.safetensors"), "placeholder");
  t.is(resolveModel("vilref-vit-b-16", { dir: home }).source, "converted");
  const listed = listModels({ dir: home }).models.find((m) => m.name === "vilref-vit-b-16")!;
  t.is(listed.present, path.join(home, "vilref-vit-b-16.safetensors"));
  t.is(listModels({ dir: home }).models.find((m) => m.name === "vilref-rn50")!.present, null);
});

test.serial("an unknown model name is an error naming it (API and CLI)", async (t) => {
  const home = path.join(root, "home-unknown");
  const e = await t.throwsAsync(ViLReF.fromPretrained("vilref-vit-h-14", { dir: home }));
  t.true(e.message.includes('"vilref-vit-h-14"'), e.message);
  t.true(e.message.includes("vilref-vit-b-16"), e.message); // lists the known names
  const r = await run(
    { VILREF_HOME: home },
    "embed",
    "--model",
    "vilref-vit-h-14",
    "--texts",
    reports,
    "--out",
    path.join(root, "u.npy"),
  );
  t.is(r.code, 1);
  t.regex(r.err, /^vilref embed: --model vilref-vit-h-14: unknown model name "vilref-vit-h-14"/);
  // a missing checkpoint path is still named as such
  const p = await run(
    {},
    "embed",
    "--model",
    path.join(root, "nope.safetensors"),
    "--texts",
    reports,
    "--out",
    path.join(root, "u.npy"),
  );
  t.is(p.code, 1);
  t.true(p.err.includes("nope.safetensors: no such checkpoint"), p.err);
});

test.serial(
  "models add: a .pt with its vocabulary into the folder; fromPretrained by name loads it; \
--model NAME needs no --vocab",
  async (t) => {
    const home = path.join(root, "home-add");
    const r = await run(
      { VILREF_HOME: home },
      "models",
      "add",
      fixture,
      "--name",
      "tiny",
      "--config",
      fixtureConfig,
      "--vocab",
      vocab,
      "--context-length",
      "24",
    );
    t.is(r.code, 0, r.err);
    t.regex(r.out, /registered tiny: .*tiny\.safetensors .*vocabulary inside, context length 24/);
    const reg = JSON.parse(readFileSync(path.join(home, "models.json"), "utf8")) as {
      models: Record<string, { file: string; source: string }>;
    };
    t.is(reg.models.tiny!.file, "tiny.safetensors");
    t.is(reg.models.tiny!.source, fixture);
    // by name, from the folder given or from VILREF_HOME
    const m = await ViLReF.fromPretrained("tiny", { dir: home });
    // stored as its tokens (Vocab.toText), hashed as every vocabulary is
    t.is(m.vocab, Vocab.fromFile(vocab).toText());
    t.is(m.vocabSha256, sha256Hex(Vocab.fromFile(vocab).toText()));
    t.is(m.contextLength, 24);
    t.is(m.source, "tiny");
    const direct = await ViLReF.load(fixture, { config: config as never });
    const ids = { data: BigInt64Array.from([101n, 2769n, 102n, 0n]), shape: [1, 4] };
    t.deepEqual(Array.from((await m.encodeTexts(ids)).data), Array.from((await direct.encodeTexts(ids)).data));
    // the registered name through the CLI: no --vocab, the model's context length
    const out = path.join(root, "byname.npy");
    const e1 = await run(
      { VILREF_HOME: home },
      "embed",
      "--model",
      "tiny",
      "--texts",
      reports,
      "--out",
      out,
      "--no-progress",
    );
    t.is(e1.code, 0, e1.err);
    const ref = path.join(root, "bypath.npy");
    const e2 = await run(
      {},
      "embed",
      "--model",
      fixture,
      "--config",
      fixtureConfig,
      "--texts",
      reports,
      "--vocab",
      vocab,
      "--context-length",
      "24",
      "--out",
      ref,
      "--no-progress",
    );
    t.is(e2.code, 0, e2.err);
    t.deepEqual(
      Array.from((await readNpy(out)).data as Float32Array),
      Array.from((await readNpy(ref)).data as Float32Array),
    );
    const list = await run({ VILREF_HOME: home }, "models", "list", "--json");
    const tiny = (
      JSON.parse(list.out) as { models: { name: string; kind: string; present: string | null }[] }
    ).models.find((x) => x.name === "tiny")!;
    t.is(tiny.kind, "registered");
    t.is(tiny.present, path.join(home, "tiny.safetensors"));
    // a second add of the name is refused without --force
    const again = await run(
      { VILREF_HOME: home },
      "models",
      "add",
      fixture,
      "--name",
      "tiny",
      "--config",
      fixtureConfig,
    );
    t.is(again.code, 1);
    t.true(again.err.includes("--force"), again.err);
  },
);

test.serial(
  "a vocabulary that disagrees with the recorded sha256 is refused; a .pt without one still takes --vocab",
  async (t) => {
    const other = path.join(root, "other-vocab.txt");
    writeFileSync(other, readFileSync(vocab, "utf8").replace("[unused1]", "[unused1x]"));
    const one = path.join(root, "one.safetensors");
    await convertCheckpoint(fixture, one, { config: config as never, vocab });
    const e = await t.throwsAsync(convertCheckpoint(one, path.join(root, "two.safetensors"), { vocab: other }));
    t.true(e.message.includes(other), e.message);
    t.true(e.message.includes("sha256"), e.message);
    const r = await run(
      {},
      "embed",
      "--model",
      one,
      "--texts",
      reports,
      "--vocab",
      other,
      "--out",
      path.join(root, "x.npy"),
    );
    t.is(r.code, 1);
    t.true(r.err.includes(`--vocab ${other}: sha256`), r.err);
    // the released vocabulary is checked for a known name
    const home = path.join(root, "home-known");
    mkdirSync(home);
    const pt = path.join(root, "ViLReF_ViT.pt");
    copyFileSync(fixture, pt);
    // ViLReF_ViT.pt is the released ViT-B/16's file: registered as vilref-vit-b-16, its vocabulary checked
    const bad = await t.throwsAsync(addModel(pt, { dir: home, vocab: other }));
    t.regex(bad.message, /other-vocab\.txt: sha256 .* is not the released vocabulary/);
    // a .pt has no vocabulary: text commands ask for --vocab, and take it
    const noVocab = await run(
      {},
      "embed",
      "--model",
      fixture,
      "--config",
      fixtureConfig,
      "--texts",
      reports,
      "--out",
      path.join(root, "y.npy"),
    );
    t.is(noVocab.code, 1);
    t.true(noVocab.err.includes("--vocab"), noVocab.err);
    const withVocab = await run(
      {},
      "embed",
      "--model",
      fixture,
      "--config",
      fixtureConfig,
      "--texts",
      reports,
      "--vocab",
      vocab,
      "--out",
      path.join(root, "y.npy"),
      "--no-progress",
    );
    t.is(withVocab.code, 0, withVocab.err);
    // a damaged file whose vocabulary no longer matches its recorded sha256 is refused on load
    const bytes = readFileSync(one);
    const at = bytes.indexOf(Buffer.from("[unused1]"));
    bytes.set(Buffer.from("[unusedX]"), at);
    const damaged = path.join(root, "damaged.safetensors");
    writeFileSync(damaged, bytes);
    const d = await t.throwsAsync(ViLReF.load(damaged));
    t.regex(d.message, /damaged\.safetensors: its vocabulary's sha256 .* is not the one it records/);
  },
);

test.serial(
  "the vocabulary is stored and hashed as its tokens: a BOM and CRLF copy is the same vocabulary",
  async (t) => {
    const crlf = path.join(root, "vocab-crlf.txt");
    writeFileSync(crlf, "\ufeff" + readFileSync(vocab, "utf8").replace(/\n/g, "\r\n"));
    const a = await convertCheckpoint(fixture, path.join(root, "lf.safetensors"), { config: config as never, vocab });
    const b = await convertCheckpoint(fixture, path.join(root, "crlf.safetensors"), {
      config: config as never,
      vocab: crlf,
    });
    const want = sha256Hex(Vocab.fromFile(vocab).toText());
    t.is(a.vocabSha256, want);
    t.is(b.vocabSha256, want);
    const loaded = await ViLReF.load(path.join(root, "crlf.safetensors"));
    t.is(loaded.vocab, Vocab.fromFile(vocab).toText());
    t.is(loaded.vocabSha256, want);
    // the registry's released vocabulary is that hash too, so the shared (released) vocab.txt passes the check
    t.is(loadRegistry().models["vilref-vit-b-16"]!.vocab!.sha256, want);
  },
);
