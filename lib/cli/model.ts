/** `vilref convert` (released .pt → vilref safetensors) and `vilref encode` (.npy → .npy features). */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { embedNpy } from "../model/embed-npy.js";
import { ViLReF } from "../model/vilref.js";
import type { Device, Dtype } from "../model/vilref.js";

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
    .description("convert a released ViLReF/Chinese-CLIP .pt checkpoint (or a .safetensors file) into vilref's safetensors")
    .argument("<input>", "released checkpoint (.pt) or .safetensors")
    .argument("<output>", "output .safetensors")
    .option("--config <file>", "model config JSON in the released names (head widths are not in the weights; default: inferred with 64-wide heads)")
    .option("--labels <file>", "JSON array of label names to record in the metadata")
    .action(async (input: string, output: string, opts: { config?: string; labels?: string }) => {
      const config = await readConfigFile(opts.config);
      const model = await ViLReF.load(input, config ? { config } : {});
      const labels = opts.labels ? (JSON.parse(await readFile(opts.labels, "utf8")) as string[]) : undefined;
      await model.save(output, labels ? { labels } : {});
      const params = model.parameters();
      const count = params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
      console.log(`wrote ${output}: ${params.length} tensors, ${(count / 1e6).toFixed(2)}M values, ${Array.isArray(model.config.vision_layers) ? "ModifiedResNet" : "ViT"} image tower, embed_dim ${model.config.embed_dim}`);
    });

  program
    .command("encode")
    .description("embed a .npy of preprocessed images (float32 N×3×R×R) or token ids (int64/int32 N×L) into a .npy of features (float32 N×D)")
    .requiredOption("--checkpoint <file>", ".safetensors or released .pt")
    .requiredOption("--in <file>", "input .npy")
    .requiredOption("--out <file>", "output .npy")
    .option("--config <file>", "model config JSON (for .pt files)")
    .option("--features <which>", "projected (default) or pre (before the projection)", "projected")
    .option("--batch-size <n>", "rows per forward pass", "64")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .option("--dtype <dtype>", "float32, or bfloat16/float16 on CUDA", "float32")
    .action(async (opts: { checkpoint: string; in: string; out: string; config?: string; features: string; batchSize: string; device: string; dtype: string }) => {
      if (opts.features !== "projected" && opts.features !== "pre") throw new RangeError(`--features: expected "projected" or "pre", got "${opts.features}"`);
      const batchSize = Number(opts.batchSize);
      if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`--batch-size: expected a positive integer, got "${opts.batchSize}"`);
      const config = await readConfigFile(opts.config);
      const model = await ViLReF.load(opts.checkpoint, { device: opts.device as Device, dtype: opts.dtype as Dtype, ...(config ? { config } : {}) });
      const r = await embedNpy(model, opts.in, opts.out, {
        features: opts.features,
        batchSize,
        onProgress: (done, total) => process.stderr.write(`\rencoded ${done}/${total}`),
      });
      process.stderr.write("\n");
      console.log(`wrote ${opts.out}: ${r.rows} × ${r.dim} float32 (${r.kind})`);
    });
}
