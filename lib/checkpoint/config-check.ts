/**
 * A checkpoint's tensors against the config a model would be built from, before it is built: a
 * config (from safetensors metadata, `--config` or the caller) that disagrees with the tensors is
 * refused with the field and the tensor at fault, so a metadata config claiming terabytes never
 * allocates them. The tensors' own sizes are bounded by the file they were read from.
 */
import { inferConfig } from "../model/config.js";
import type { ModelConfig } from "../model/config.js";
import { CheckpointError } from "./errors.js";

/** Where inferConfig reads each structural field from (for messages). */
function anchor(field: keyof ModelConfig, resnet: boolean): string {
  switch (field) {
    case "embed_dim":
      return "text_projection";
    case "vocab_size":
    case "text_hidden_size":
      return "bert.embeddings.word_embeddings.weight";
    case "text_max_position_embeddings":
      return "bert.embeddings.position_embeddings.weight";
    case "text_type_vocab_size":
      return "bert.embeddings.token_type_embeddings.weight";
    case "text_intermediate_size":
      return "bert.encoder.layer.0.intermediate.dense.weight";
    case "text_num_hidden_layers":
      return "bert.encoder.layer.N.*";
    case "vision_width":
      return resnet ? "visual.conv3.weight" : "visual.conv1.weight";
    case "vision_patch_size":
      return "visual.conv1.weight";
    case "image_resolution":
      return resnet ? "visual.attnpool.positional_embedding" : "visual.positional_embedding";
    case "vision_layers":
      return resnet ? "visual.layer1-4.N.*" : "visual.transformer.resblocks.N.*";
    default:
      return "";
  }
}

const STRUCTURAL: Array<keyof ModelConfig> = [
  "embed_dim",
  "vocab_size",
  "text_hidden_size",
  "text_max_position_embeddings",
  "text_type_vocab_size",
  "text_intermediate_size",
  "text_num_hidden_layers",
  "vision_width",
  "vision_patch_size",
  "image_resolution",
  "vision_layers",
];

/** A rough count of a config's parameters (within a few percent), for a sanity bound. */
export function estimateParameters(c: ModelConfig): number {
  const h = c.text_hidden_size;
  const text =
    (c.vocab_size + c.text_max_position_embeddings + c.text_type_vocab_size) * h +
    c.text_num_hidden_layers * (4 * h * h + 2 * h * c.text_intermediate_size) +
    h * c.embed_dim;
  const w = c.vision_width;
  let vision: number;
  if (Array.isArray(c.vision_layers)) {
    const blocks = c.vision_layers as number[];
    vision = blocks.reduce((a, b, i) => a + 17 * b * (w * 2 ** i) ** 2, 0) + 4 * (w * 32) ** 2 + w * 32 * c.embed_dim;
  } else {
    const p = c.vision_patch_size ?? 1;
    vision = 3 * p * p * w + (c.image_resolution / p) ** 2 * w + c.vision_layers * 12 * w * w + w * c.embed_dim;
  }
  return text + vision;
}

/** The most parameters a model read from a checkpoint without its anchor tensors may have (16 GiB as float32). */
export const MAX_UNCHECKED_PARAMETERS = 2 ** 32;

/**
 * Throws a CheckpointError when `config` does not describe the model whose tensors have `shapes`.
 * With `strict` false a checkpoint may lack tensors; then only the fields it has tensors for are
 * compared, and the config must stay under MAX_UNCHECKED_PARAMETERS.
 */
export function checkConfigAgainstShapes(
  config: ModelConfig,
  shapes: Record<string, readonly number[]>,
  file: string,
  options: { strict?: boolean; source?: string } = {},
): void {
  const source = options.source ?? "the config";
  let inferred: ModelConfig;
  try {
    // heads are not in the shapes; 1-wide ones divide every width, so only missing tensors fail
    inferred = inferConfig(shapes, { vision_head_width: 1, text_num_attention_heads: 1 });
  } catch (e) {
    if (options.strict === false) {
      const n = estimateParameters(config);
      if (n > MAX_UNCHECKED_PARAMETERS)
        throw new CheckpointError(
          `${file}: ${source} asks for about ${n.toExponential(2)} parameters ` +
            `(${((n * 4) / 2 ** 30).toFixed(0)} GiB), and the checkpoint's tensors do not confirm it ` +
            `(${(e as Error).message})`,
          { file },
        );
      return;
    }
    throw new CheckpointError(`${file}: the tensors do not describe a model of ${source}: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
  const resnet = Array.isArray(inferred.vision_layers);
  for (const field of STRUCTURAL) {
    const want = JSON.stringify(config[field]);
    const got = JSON.stringify(inferred[field]);
    if (want === got) continue;
    const tensor = anchor(field, resnet);
    const shape = shapes[tensor];
    throw new CheckpointError(
      `${file}: ${source} does not fit the checkpoint's tensors: ` +
        `${field} is ${want} in ${source} but ${got} in the tensors ` +
        `(${tensor}${shape ? ` [${shape.join(", ")}]` : ""})`,
      { file, tensor },
    );
  }
}
