/** `vilref convert`: released .pt → vilref safetensors. (`vilref embed --npy` encodes .npy arrays.) */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { ViLReF } from "../model/vilref.js";
import { configOption, examples, int, readModelConfig } from "./options.js";
import { parseJson } from "../io/json.js";

export function register(program: Command): void {
  const cmd = program
    .command("convert")
    .description(
      "convert a released ViLReF/Chinese-CLIP .pt checkpoint (or a .safetensors file) into vilref's safetensors",
    )
    .argument("<input>", "released checkpoint (.pt) or .safetensors")
    .argument("<output>", "output .safetensors")
    .addOption(configOption())
    .option("--labels <file>", "JSON array of label names to record in the metadata")
    .option(
      "--max-uncompressed-mib <n>",
      "a .pt archive may inflate to this many MiB (default: 4 × the file's size + 1 MiB)",
      int({ min: 1 }),
    );
  examples(cmd, [
    ["vilref convert vilref-vit-b-16.pt vilref-vit-b-16.safetensors", "a released checkpoint (64-wide heads inferred)"],
  ]).action(
    async (input: string, output: string, opts: { config?: string; labels?: string; maxUncompressedMib?: number }) => {
      const config = readModelConfig(opts.config);
      const model = await ViLReF.load(input, {
        ...(config ? { config } : {}),
        ...(opts.maxUncompressedMib !== undefined ? { maxUncompressedBytes: opts.maxUncompressedMib * 2 ** 20 } : {}),
        onWarning: (message) => console.error(`warning: ${message}`),
      });
      const labels = opts.labels
        ? (parseJson(await readFile(opts.labels, "utf8"), `--labels ${opts.labels}`) as string[])
        : undefined;
      await model.save(output, labels ? { labels } : {});
      const params = model.parameters();
      const count = params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
      console.log(
        `wrote ${output}: ${params.length} tensors, ${(count / 1e6).toFixed(2)}M values, ${Array.isArray(model.config.vision_layers) ? "ModifiedResNet" : "ViT"} image tower, embed_dim ${model.config.embed_dim}`,
      );
    },
  );
}
