/**
 * Segmenter: a UNETR-like decoder over a ViT's patch tokens from several blocks, with skips from
 * a light convolutional stem at full resolution (native/segment.h). Built from a config, or
 * from a ViLReF model whose image tower is a ViT: the tower's shape and weights (`visual.*`, the
 * positional embedding resized to the tile grid) become the segmenter's backbone.
 */
import { readSafetensors, writeSafetensors } from "../checkpoint/safetensors.js";
import type { StTensor } from "../checkpoint/safetensors.js";
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { NativeSegmenter, SegmentBatch, SegmenterConfig, SegmenterOptions, TensorData } from "../native.js";
import type { ViLReF } from "../model/vilref.js";
import { parseJsonText } from "../io/json.js";

export type { SegmenterConfig, SegmenterOptions, SegmentBatch } from "../native.js";

type Named = Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>;

/** Owns its network and optimizer state: `dispose()` frees them (a model it was made from is independent). */
export class Segmenter extends NativeResource {
  readonly #native: NativeSegmenter;

  constructor(config: SegmenterConfig = {}, options: SegmenterOptions = {}) {
    super();
    this.#native = new (native().Segmenter)(config, options);
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

  get config(): Required<SegmenterConfig> {
    return this.#native.config;
  }
  get steps(): number {
    return this.#native.steps;
  }
  get pending(): number {
    return this.#native.pending;
  }

  /** One AdamW step on Dice + BCE (weights mask pixels out of the loss). */
  step(
    batch: SegmentBatch,
    options: { lr?: number; backboneLr?: number } = {},
  ): Promise<{ loss: number; bce: number; dice: number }> {
    return this.#native.step(batch, options);
  }

  /** [N, 3, tile, tile] → vessel probabilities [N, 1, tile, tile] (eval mode, no gradient). */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.#native.predict(images);
  }

  stateDict(): Promise<Named> {
    return this.#native.stateDict();
  }

  loadStateDict(
    state: Named,
    options: { strict?: boolean } = {},
  ): Promise<{ missing: string[]; unexpected: string[] }> {
    return this.#native.loadStateDict(state, options);
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
