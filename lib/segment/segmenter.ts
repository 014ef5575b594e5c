/**
 * Segmenter: a UNETR-like decoder over a ViT's patch tokens from several blocks, with skips from
 * a light convolutional stem at full resolution (native/segment.h). Built from a config, or
 * from a ViLReF model whose image tower is a ViT: the tower's shape and weights (`visual.*`, the
 * positional embedding resized to the tile grid) become the segmenter's backbone.
 */
import { z } from "zod";
import { readSafetensors, writeSafetensors } from "../checkpoint/safetensors.js";
import type { StTensor } from "../checkpoint/safetensors.js";
import { loadStateSchema, parseOptions, seedSchema } from "../config/options.js";
import type { KeyReport, LoadStateOptions } from "../config/options.js";
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { NativeSegmenter, SegmentBatch, SegmentStepResult, TensorData } from "../native.js";
import type { ViLReF } from "../model/vilref.js";
import { parseJsonText } from "../io/json.js";
import { betasSchema, epsSchema, lrSchema, weightDecaySchema } from "../train/optim.js";

export type { SegmentBatch, SegmentStepResult } from "../native.js";

const int = (lo: number, hi: number) => z.number().int().min(lo).max(hi);

export const segmenterConfigFields = {
  /** Side of the square tiles it takes; a multiple of patch. Default: 64. */
  tile: int(2, 4096).default(64),
  /** ViT patch size, a power of two in [2, 64]: the decoder has log2(patch) stages. Default: 8. */
  patch: int(2, 64).default(8),
  /** ViT width. Default: 64. */
  width: int(1, 1 << 14).default(64),
  /** ViT blocks. Default: 4. */
  layers: int(1, 256).default(4),
  /** Attention heads; they split the width. Default: 2. */
  heads: int(1, 256).default(2),
  /** Ascending 1-based blocks whose patch tokens the decoder reads. Default: 1/4, 2/4, 3/4, 4/4 of the depth. */
  taps: z.array(z.number().int()).min(1).optional(),
  /** Channels of the convolutional stem at full resolution, doubled per level up to 4×. Default: 16. */
  stemChannels: int(1, 1024).default(16),
  /** Channels of the token bottleneck. Default: 64. */
  decoderChannels: int(1, 4096).default(64),
};

/** The blocks at the quarters of the depth: what `taps` defaults to. */
export function quarterTaps(layers: number): number[] {
  return [...new Set([1, 2, 3, 4].map((q) => Math.max(1, Math.ceil((layers * q) / 4))))];
}

export const segmenterConfigSchema = z
  .object(segmenterConfigFields)
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if ((c.patch & (c.patch - 1)) !== 0)
      issue(["patch"], `${c.patch} is not a power of two (the decoder doubles the resolution per stage)`);
    if (c.tile % c.patch !== 0) issue(["tile"], `${c.tile} is not a multiple of config.patch ${c.patch}`);
    if (c.width % c.heads !== 0) issue(["heads"], `width ${c.width} does not split into ${c.heads} heads`);
    c.taps?.forEach((tap, i) => {
      if (tap < 1 || tap > c.layers) issue(["taps", i], `${tap} is outside [1, ${c.layers}]`);
      else if (i > 0 && tap <= c.taps![i - 1]!) issue(["taps"], "block numbers must ascend");
    });
  })
  .transform((c) => ({ ...c, taps: c.taps ?? quarterTaps(c.layers) }));
/** A Segmenter's architecture as given (omitted keys take the defaults shown). */
export type SegmenterConfig = z.input<typeof segmenterConfigSchema>;
/** Every key filled in: what the native segmenter takes and reports back as `config`. */
export type ResolvedSegmenterConfig = z.output<typeof segmenterConfigSchema>;

export const segmenterOptionFields = {
  /** Seed of the initialisation. Default: 0. */
  seed: seedSchema().default(0),
  /**
   * AdamW learning rate of stem, decoder and head (the peak of trainSegmenter's cosine). Default:
   * 2e-3 — what `vilref eval segment` has trained with (DRIVE Dice 0.79 in 3 CPU minutes).
   */
  lr: lrSchema().default(2e-3),
  /** AdamW learning rate of the ViT backbone. Default: lr. */
  backboneLr: lrSchema().optional(),
  /** AdamW's betas. Default: [0.9, 0.999]. */
  betas: betasSchema().default([0.9, 0.999]),
  /** AdamW's epsilon. Default: 1e-8. */
  eps: epsSchema().default(1e-8),
  /** Weight decay of the tensors of rank ≥ 2 (native/optim.h). Default: 1e-4. */
  weightDecay: weightDecaySchema().default(1e-4),
  /** Whether the backbone's 2-D embedding tables decay too. Default: false. */
  decayEmbeddings: z.boolean().default(false),
  /** The backbone takes no gradient and is left out of the optimizer. Default: false. */
  freezeBackbone: z.boolean().default(false),
  /** Weight of the soft Dice loss. Default: 1. */
  diceWeight: z.number().min(0).max(1e3).default(1),
  /** Weight of the BCE loss. Default: 1. */
  bceWeight: z.number().min(0).max(1e3).default(1),
};
export const segmenterOptionsSchema = z
  .object(segmenterOptionFields)
  .strict()
  .transform((o) => ({ ...o, backboneLr: o.backboneLr ?? o.lr }));
/** A Segmenter's training options as given. */
export type SegmenterOptions = z.input<typeof segmenterOptionsSchema>;
/** Every option filled in: what the native segmenter takes and reports back as `options`. */
export type ResolvedSegmenterOptions = z.output<typeof segmenterOptionsSchema>;

export const segmenterStepFields = {
  /** This step's lr of stem, decoder and head. Default: the segmenter's `lr`. */
  lr: lrSchema().optional(),
  /** This step's lr of the backbone. Default: the segmenter's `backboneLr`. */
  backboneLr: lrSchema().optional(),
};
export const segmenterStepSchema = z.object(segmenterStepFields).strict();
export type SegmenterStepOptions = z.input<typeof segmenterStepSchema>;

type Named = Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>;

/** Owns its network and optimizer state: `dispose()` frees them (a model it was made from is independent). */
export class Segmenter extends NativeResource {
  readonly #native: NativeSegmenter;
  readonly #lr: { lr: number; backboneLr: number };

  constructor(config: SegmenterConfig = {}, options: SegmenterOptions = {}) {
    super();
    const resolved = parseOptions(segmenterOptionsSchema, options);
    this.#native = new (native().Segmenter)(parseOptions(segmenterConfigSchema, config, "config"), resolved);
    this.#lr = { lr: resolved.lr, backboneLr: resolved.backboneLr };
  }

  protected get nativeResource(): NativeSegmenter {
    return this.#native;
  }

  /**
   * A segmenter whose backbone is `model`'s ViT image tower (shape and weights; the model itself
   * is not changed). `config` sets the tile and the decoder.
   */
  static async fromModel(
    model: ViLReF,
    config: Omit<SegmenterConfig, "patch" | "width" | "layers" | "heads"> = {},
    options: SegmenterOptions = {},
  ): Promise<Segmenter> {
    const c = model.config;
    if (Array.isArray(c.vision_layers) || c.vision_patch_size === null || c.vision_patch_size === undefined) {
      throw new RangeError("model: segmentation reads ViT patch tokens; this model's image tower is a ModifiedResNet");
    }
    const seg = new Segmenter(
      {
        ...config,
        patch: c.vision_patch_size,
        width: c.vision_width,
        layers: c.vision_layers as number,
        heads: c.vision_width / (c.vision_head_width ?? 64),
      },
      options,
    );
    const state = await model.stateDict();
    const visual = Object.fromEntries(
      Object.entries(state).filter(([k]) => k.startsWith("visual.") && k !== "visual.proj"),
    );
    const r = await seg.loadStateDict(visual, { strict: false });
    const missed = r.missing.filter((k) => k.startsWith("visual.") && k !== "visual.proj");
    if (missed.length) throw new Error(`model: its image tower lacks ${missed.join(", ")}`);
    return seg;
  }

  get config(): ResolvedSegmenterConfig {
    return this.#native.config;
  }
  /** The effective training options, as the native segmenter holds them. */
  get options(): ResolvedSegmenterOptions {
    return this.#native.options;
  }
  get steps(): number {
    return this.#native.steps;
  }
  get pending(): number {
    return this.#native.pending;
  }

  /** One AdamW step on Dice + BCE (weights mask pixels out of the loss). */
  async step(batch: SegmentBatch, options: SegmenterStepOptions = {}): Promise<SegmentStepResult> {
    const o = parseOptions(segmenterStepSchema, options);
    return this.#native.step(batch, { lr: o.lr ?? this.#lr.lr, backboneLr: o.backboneLr ?? this.#lr.backboneLr });
  }

  /** [N, 3, tile, tile] → vessel probabilities [N, 1, tile, tile] (eval mode, no gradient). */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.#native.predict(images);
  }

  stateDict(): Promise<Named> {
    return this.#native.stateDict();
  }

  /** Replaces tensors by name; missing and unexpected names are reported (an error when strict). */
  async loadStateDict(state: Named, options: LoadStateOptions = {}): Promise<KeyReport> {
    return this.#native.loadStateDict(state, parseOptions(loadStateSchema, options));
  }

  /** safetensors with the config in the metadata ("vilref_segmenter"). */
  async save(path: string, extra: Record<string, unknown> = {}): Promise<void> {
    const state = await this.stateDict();
    const tensors = new Map<string, StTensor>(
      Object.entries(state).map(
        ([k, v]) =>
          [
            k,
            v.data instanceof BigInt64Array
              ? { dtype: "I64", shape: v.shape, data: v.data }
              : { dtype: "F32", shape: v.shape, data: v.data as Float32Array },
          ] as const,
      ),
    );
    await writeSafetensors(path, tensors, {
      vilref_segmenter: JSON.stringify({ format: 1, config: this.config, ...extra }),
    });
  }

  static async load(path: string): Promise<Segmenter> {
    const file = await readSafetensors(path);
    const meta = file.metadata.vilref_segmenter;
    if (meta === undefined) throw new Error(`${path}: not a vilref segmenter (no "vilref_segmenter" metadata)`);
    const { config } = parseJsonText(meta) as { config: SegmenterConfig };
    const seg = new Segmenter(config);
    const state: Named = {};
    for (const [k, t] of file.tensors) state[k] = { data: t.data, shape: t.shape } as TensorData<Float32Array>;
    await seg.loadStateDict(state);
    return seg;
  }
}
