/**
 * ViLReF model configs, in the released code's argument names (cn_clip's CLIP), as JSON presets
 * (lib/model/presets/*.json) or inferred from a checkpoint's tensor shapes.
 */
import { readFileSync, readdirSync } from "node:fs";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";

const positive = z.number().int().min(1);

export const modelConfigSchema = z
  .object({
    embed_dim: positive,
    image_resolution: positive,
    vision_layers: z.union([positive, z.tuple([positive, positive, positive, positive])]),
    vision_width: positive,
    vision_patch_size: positive.nullable().default(null),
    vision_head_width: positive.default(64),
    vocab_size: positive,
    text_hidden_act: z.literal("gelu").default("gelu"),
    text_hidden_size: positive,
    text_intermediate_size: positive,
    text_max_position_embeddings: positive,
    text_num_attention_heads: positive,
    text_num_hidden_layers: positive,
    text_type_vocab_size: positive.default(2),
    // training-time settings of the released configs: accepted and kept, unused at inference
    text_attention_probs_dropout_prob: z.number().min(0).max(1).optional(),
    text_hidden_dropout_prob: z.number().min(0).max(1).optional(),
    text_initializer_range: z.number().positive().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const resnet = Array.isArray(c.vision_layers);
    if (!resnet) {
      if (c.vision_patch_size === null)
        ctx.addIssue({
          code: "custom",
          path: ["vision_patch_size"],
          message: "a ViT (vision_layers is a number) needs a patch size",
        });
      else if (c.image_resolution % c.vision_patch_size !== 0)
        ctx.addIssue({
          code: "custom",
          path: ["image_resolution"],
          message: `${c.image_resolution} is not a multiple of vision_patch_size ${c.vision_patch_size}`,
        });
      if (c.vision_width % c.vision_head_width !== 0)
        ctx.addIssue({
          code: "custom",
          path: ["vision_head_width"],
          message: `vision_width ${c.vision_width} is not a multiple of ${c.vision_head_width}`,
        });
    } else {
      if (c.image_resolution % 32 !== 0)
        ctx.addIssue({
          code: "custom",
          path: ["image_resolution"],
          message: `${c.image_resolution} is not a multiple of 32 (ModifiedResNet)`,
        });
      if ((c.vision_width * 32) % c.vision_head_width !== 0)
        ctx.addIssue({
          code: "custom",
          path: ["vision_head_width"],
          message: `vision_width·32 = ${c.vision_width * 32} is not a multiple of ${c.vision_head_width}`,
        });
    }
    if (c.text_hidden_size % c.text_num_attention_heads !== 0) {
      ctx.addIssue({
        code: "custom",
        path: ["text_num_attention_heads"],
        message: `text_hidden_size ${c.text_hidden_size} does not split into ${c.text_num_attention_heads} heads`,
      });
    }
  });

export type ModelConfig = z.output<typeof modelConfigSchema>;
export type ModelConfigInput = z.input<typeof modelConfigSchema>;

/** Validates a config; errors name the key (`vision_layers[2]: ...`). */
export function parseModelConfig(value: unknown, source = "config"): ModelConfig {
  const r = modelConfigSchema.safeParse(value);
  if (!r.success) throw new TypeError(`${source}: ${formatIssues(r.error)}`);
  return r.data;
}

const presetDir = new URL("./presets/", import.meta.url);

export function presetNames(): string[] {
  return readdirSync(presetDir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** A preset by name: vit-b-16, rn50 (the released ViLReF shapes), tiny-vit, tiny-rn50 (tests), demo-rn128 (the CPU
 * pre-training demo: a small ModifiedResNet at 128 px). */
export function presetConfig(name: string): ModelConfig {
  if (!presetNames().includes(name))
    throw new RangeError(`unknown model preset "${name}"; presets: ${presetNames().join(", ")}`);
  return parseModelConfig(JSON.parse(readFileSync(new URL(`${name}.json`, presetDir), "utf8")), `preset ${name}`);
}

/** True for a ModifiedResNet image tower. */
export function isResNet(config: ModelConfig): boolean {
  return Array.isArray(config.vision_layers);
}

/**
 * A config from a state dict's shapes. Shapes do not record the number of attention heads: the
 * released 64-wide heads are assumed (vision_head_width 64, text heads = hidden / 64) unless
 * `heads` says otherwise.
 */
export function inferConfig(
  shapes: Record<string, readonly number[]>,
  heads: { vision_head_width?: number; text_num_attention_heads?: number } = {},
): ModelConfig {
  const need = (key: string): readonly number[] => {
    const s = shapes[key];
    if (!s) throw new RangeError(`cannot infer the model config: the checkpoint has no "${key}"`);
    return s;
  };
  const count = (re: RegExp) => new Set(Object.keys(shapes).flatMap((k) => re.exec(k)?.[1] ?? [])).size;
  const text = {
    vocab_size: need("bert.embeddings.word_embeddings.weight")[0]!,
    text_hidden_size: need("bert.embeddings.word_embeddings.weight")[1]!,
    text_max_position_embeddings: need("bert.embeddings.position_embeddings.weight")[0]!,
    text_type_vocab_size: need("bert.embeddings.token_type_embeddings.weight")[0]!,
    text_intermediate_size: need("bert.encoder.layer.0.intermediate.dense.weight")[0]!,
    text_num_hidden_layers: count(/^bert\.encoder\.layer\.(\d+)\./),
  };
  const textHeads = heads.text_num_attention_heads ?? Math.max(1, Math.round(text.text_hidden_size / 64));
  const embed_dim = need("text_projection")[1]!;
  let vision: Record<string, unknown>;
  if (shapes["visual.proj"]) {
    const conv = need("visual.conv1.weight");
    const grid = Math.round(Math.sqrt(need("visual.positional_embedding")[0]! - 1));
    vision = {
      vision_width: conv[0],
      vision_patch_size: conv[2],
      image_resolution: grid * conv[2]!,
      vision_layers: count(/^visual\.transformer\.resblocks\.(\d+)\./),
      vision_head_width: heads.vision_head_width ?? 64,
    };
  } else {
    const width = need("visual.conv3.weight")[0]!;
    const spatial = Math.round(Math.sqrt(need("visual.attnpool.positional_embedding")[0]! - 1));
    vision = {
      vision_width: width,
      vision_patch_size: null,
      image_resolution: spatial * 32,
      vision_layers: [1, 2, 3, 4].map((s) => count(new RegExp(`^visual\\.layer${s}\\.(\\d+)\\.`))),
      vision_head_width: heads.vision_head_width ?? 64,
    };
  }
  return parseModelConfig(
    { embed_dim, ...vision, ...text, text_num_attention_heads: textHeads, text_hidden_act: "gelu" },
    "inferred config",
  );
}
