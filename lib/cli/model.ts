/**
 * `vilref convert` (a released .pt → vilref's safetensors, the vocabulary inside with --vocab) and
 * `vilref models list|add` (the model folder: known, registered and present checkpoints).
 * (`vilref embed --npy` encodes .npy arrays.)
 */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { addModel, convertCheckpoint } from "../model/pretrained.js";
import { listModels } from "../model/registry.js";
import type { ViLReF } from "../model/vilref.js";
import { configOption, contextLengthOption, examples, int, readModelConfig, vocabOption } from "./options.js";
import { parseJson } from "../io/json.js";

function describe(model: ViLReF): string {
  const params = model.parameters();
  const count = params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const tower = Array.isArray(model.config.vision_layers) ? "ModifiedResNet" : "ViT";
  const vocab = model.vocab !== undefined ? "vocabulary inside" : "no vocabulary inside (text commands need --vocab)";
  const ctx = model.contextLength !== undefined ? `, context length ${model.contextLength}` : "";
  return (
    `${params.length} tensors, ${(count / 1e6).toFixed(2)}M values, ${tower} image tower, ` +
    `embed_dim ${model.config.embed_dim}, ${vocab}${ctx}`
  );
}

function registerConvert(program: Command): void {
  const cmd = program
    .command("convert")
    .description(
      "convert a released ViLReF/Chinese-CLIP .pt checkpoint (or a .safetensors file) " +
        "into vilref's safetensors, the vocabulary inside",
    )
    .argument("<input>", "released checkpoint (.pt) or .safetensors")
    .argument("<output>", "output .safetensors")
    .addOption(configOption())
    .addOption(vocabOption({ description: "vocab.txt to store inside the output (checked against a recorded sha256)" }))
    .addOption(contextLengthOption(undefined, "tokens per text to record as the model's default"))
    .option("--labels <file>", "JSON array of label names to record in the metadata")
    .option(
      "--max-uncompressed-mib <n>",
      "a .pt archive may inflate to this many MiB (default: 4 × the file's size + 1 MiB)",
      int({ min: 1 }),
    );
  examples(cmd, [
    [
      "vilref convert ViLReF_ViT.pt vilref-vit-b-16.safetensors --vocab vocab.txt --context-length 100",
      "a released checkpoint (64-wide heads inferred) into one file with its vocabulary",
    ],
  ]).action(
    async (
      input: string,
      output: string,
      opts: { config?: string; labels?: string; vocab?: string; contextLength?: number; maxUncompressedMib?: number },
    ) => {
      const config = readModelConfig(opts.config);
      const labels = opts.labels
        ? (parseJson(await readFile(opts.labels, "utf8"), `--labels ${opts.labels}`) as string[])
        : undefined;
      const model = await convertCheckpoint(input, output, {
        ...(config ? { config } : {}),
        ...(labels ? { labels } : {}),
        ...(opts.vocab ? { vocab: opts.vocab } : {}),
        ...(opts.contextLength !== undefined ? { contextLength: opts.contextLength } : {}),
        ...(opts.maxUncompressedMib !== undefined ? { maxUncompressedBytes: opts.maxUncompressedMib * 2 ** 20 } : {}),
        onWarning: (message) => console.error(`warning: ${message}`),
      });
      console.log(`wrote ${output}: ${describe(model)}`);
    },
  );
}

function registerModels(program: Command): void {
  const models = program
    .command("models")
    .description("the model folder (VILREF_HOME, default ~/.cache/vilref): known and registered checkpoints");
  const dirHelp = "the model folder (default: VILREF_HOME, else $XDG_CACHE_HOME/vilref or ~/.cache/vilref)";
  examples(
    models
      .command("list")
      .description("known checkpoints (released ViLReF weights, registered ones, presets) and which are present")
      .option("--dir <dir>", dirHelp)
      .option("--json", "as JSON"),
    [["vilref models list", "what --model NAME can load, and which files are in the folder"]],
  ).action((o: { dir?: string; json?: boolean }) => {
    const { home, models: rows } = listModels(o.dir ? { dir: o.dir } : {});
    if (o.json) {
      console.log(JSON.stringify({ home, models: rows }, null, 2));
      return;
    }
    console.log(`model folder: ${home}`);
    const w = Math.max(...rows.map((r) => r.name.length));
    for (const r of rows) {
      const state =
        r.kind === "preset"
          ? ""
          : r.present
            ? `present: ${r.present}`
            : `missing (put ${r.expected.join(" or ")} here)`;
      console.log(
        `  ${r.name.padEnd(w)}  ${r.kind.padEnd(10)}  ${r.description}${state ? `\n  ${" ".repeat(w)}  ${state}` : ""}`,
      );
    }
  });
  const add = models
    .command("add")
    .description("convert a checkpoint into the model folder (vocabulary inside) and register it by name")
    .argument("<file>", "a released .pt or a .safetensors")
    .option("--name <name>", "the name to register (default: the known model it is, else the file's base name)")
    .addOption(configOption())
    .addOption(
      vocabOption({ description: "vocab.txt to store inside (default: the checkpoint's, else one beside it)" }),
    )
    .addOption(contextLengthOption(undefined, "tokens per text to record (default: the known model's)"))
    .option("--dir <dir>", dirHelp)
    .option("--force", "replace a model of that name");
  examples(add, [
    [
      "vilref models add ~/Downloads/ViLReF_ViT.pt --vocab vocab.txt",
      "the released ViT-B/16 as vilref-vit-b-16 (then: --model vilref-vit-b-16)",
    ],
    ["vilref models add run/final/model.safetensors --name my-run", "a pre-trained model by name"],
  ]).action(
    async (
      file: string,
      o: { name?: string; config?: string; vocab?: string; contextLength?: number; dir?: string; force?: boolean },
    ) => {
      const config = readModelConfig(o.config);
      const r = await addModel(file, {
        ...(o.name ? { name: o.name } : {}),
        ...(config ? { config } : {}),
        ...(o.vocab ? { vocab: o.vocab } : {}),
        ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
        ...(o.dir ? { dir: o.dir } : {}),
        ...(o.force ? { force: true } : {}),
        onWarning: (m) => console.error(`warning: ${m}`),
      });
      console.log(`registered ${r.name}: ${r.path} (sha256 ${r.sha256.slice(0, 12)}…): ${describe(r.model)}`);
      console.log(`use it with --model ${r.name}`);
    },
  );
}

export function register(program: Command): void {
  registerConvert(program);
  registerModels(program);
}
