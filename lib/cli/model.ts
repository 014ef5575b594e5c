/** `vilref convert`: released .pt → vilref safetensors. (`vilref embed --npy` encodes .npy arrays.) */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { ViLReF } from "../model/vilref.js";

async function readConfigFile(path: string | undefined) {
  if (!path) return undefined;
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new Error(`--config ${path}: ${(e as Error).message}`);
  }
}

export function register(program: Command): void {
  program
    .command("convert")
    .description(
      "convert a released ViLReF/Chinese-CLIP .pt checkpoint (or a .safetensors file) into vilref's safetensors",
    )
    .argument("<input>", "released checkpoint (.pt) or .safetensors")
    .argument("<output>", "output .safetensors")
    .option(
      "--config <file>",
      "model config JSON in the released names (head widths are not in the weights; default: inferred with 64-wide heads)",
    )
    .option("--labels <file>", "JSON array of label names to record in the metadata")
    .action(async (input: string, output: string, opts: { config?: string; labels?: string }) => {
      const config = await readConfigFile(opts.config);
      const model = await ViLReF.load(input, {
        ...(config ? { config } : {}),
        onWarning: (message) => console.error(`warning: ${message}`),
      });
      const labels = opts.labels ? (JSON.parse(await readFile(opts.labels, "utf8")) as string[]) : undefined;
      await model.save(output, labels ? { labels } : {});
      const params = model.parameters();
      const count = params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
      console.log(
        `wrote ${output}: ${params.length} tensors, ${(count / 1e6).toFixed(2)}M values, ${Array.isArray(model.config.vision_layers) ? "ModifiedResNet" : "ViT"} image tower, embed_dim ${model.config.embed_dim}`,
      );
    });
}
