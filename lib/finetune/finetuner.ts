/**
 * Finetuner: the released fine-tuning protocol on a ViLReF model — a linear head on the image
 * tower's pre-projection features, BCE with logits over multi-label targets, AdamW with backbone
 * lr 1e-6 and head lr 1e-3 (native/finetune.h). `frozen` keeps the backbone bit-identical; `lora`
 * trains low-rank adapters of the backbone instead of its weights.
 * Calls run on the model's queue: they see the model as the calls made before them left it.
 */
import { z } from "zod";
import type { Lora } from "../adapt/lora.js";
import { parseOptions, seedSchema } from "../config/options.js";
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { FinetunerConfig, NativeFinetuner, TensorData } from "../native.js";
import type { ViLReF } from "../model/vilref.js";
import { betasSchema, epsSchema, lrSchema, weightDecaySchema } from "../train/optim.js";

export const finetunerOptionFields = {
  /** Number of (multi-label) outputs. Required. */
  classes: z
    .number()
    .int()
    .min(1)
    .max(1 << 16),
  /** AdamW learning rate of the head (the released protocol). Default: 1e-3. */
  lr: lrSchema().default(1e-3),
  /** AdamW learning rate of the backbone (the released protocol). Default: 1e-6. */
  backboneLr: lrSchema().default(1e-6),
  /** AdamW's betas. Default: [0.9, 0.999]. */
  betas: betasSchema().default([0.9, 0.999]),
  /** AdamW's epsilon. Default: 1e-8. */
  eps: epsSchema().default(1e-8),
  /** Weight decay of the tensors of rank ≥ 2 (native/optim.h). Default: 0.001. */
  weightDecay: weightDecaySchema().default(0.001),
  /** Whether the backbone's 2-D embedding tables decay too. Default: false. */
  decayEmbeddings: z.boolean().default(false),
  /** Backbone without gradient, out of the optimizer: its weights stay bit-identical. Default: false. */
  frozen: z.boolean().default(false),
  /** AdamW learning rate of the LoRA factors, when `lora` adapters are given. Default: 1e-3. */
  loraLr: lrSchema().default(1e-3),
  /** Seed of the head's initialisation (torch.nn.Linear's). Default: 0. */
  seed: seedSchema().default(0),
};
export const finetunerOptionsSchema = z.object(finetunerOptionFields).strict();
/** The Finetuner's data options as given (every one but classes has a default). */
type FinetunerOptionsInput = z.input<typeof finetunerOptionsSchema>;
/** Every option filled in: what the native finetuner takes and reports back. */
export type ResolvedFinetunerOptions = z.output<typeof finetunerOptionsSchema>;

/** The Finetuner's options: the schema's, and `lora` (an object, not data, so outside the schema). */
export interface FinetunerOptions extends FinetunerOptionsInput {
  /**
   * LoRA adapters on the same model (lib/adapt/lora.ts), not merged: the backbone is frozen, its
   * weights stay bit-identical, and the factors train (lr `loraLr`) beside the head.
   */
  lora?: Lora;
}
export type FinetuneState = Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>;

/** Owns the head and its optimizer state: `dispose()` frees them; the model's dispose() disposes it first. */
export class Finetuner extends NativeResource {
  readonly #native: NativeFinetuner;
  readonly model: ViLReF;

  constructor(model: ViLReF, options: FinetunerOptions) {
    super();
    this.model = model;
    const { lora, ...rest } = options;
    if (lora && lora.model !== model) throw new RangeError("options.lora: the adapters belong to another model");
    this.#native = new (native().Finetuner)(model.nativeHandle, {
      ...parseOptions(finetunerOptionsSchema, rest),
      ...(lora ? { lora: lora.nativeHandle } : {}),
    });
    NativeResource.attach(model, this);
  }

  protected get nativeResource(): NativeFinetuner {
    return this.#native;
  }

  /** Outputs, feature width, learning rates, weight decay and whether the backbone is frozen. */
  get config(): FinetunerConfig {
    return this.#native.config;
  }
  /** The effective options, as the native finetuner holds them. */
  get options(): ResolvedFinetunerOptions {
    return this.#native.options;
  }
  get steps(): number {
    return this.#native.steps;
  }

  /** images [N, 3, R, R] (preprocessed), labels [N, classes] in [0, 1] → the batch's BCE before the update. */
  step(batch: { images: TensorData<Float32Array>; labels: TensorData<Float32Array> }): Promise<{ loss: number }> {
    return this.#native.step(batch);
  }

  /** images [N, 3, R, R] → probabilities [N, classes]. */
  predict(images: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.#native.predict(images);
  }

  /** Copies of `head.weight`, `head.bias`, unless frozen the backbone's `visual.*`, with LoRA its factors `lora.*`. */
  stateDict(): Promise<FinetuneState> {
    return this.#native.stateDict();
  }

  /** Restores what stateDict returned (the head, and the backbone tensors given). */
  loadStateDict(state: FinetuneState): Promise<void> {
    return this.#native.loadStateDict(state);
  }
}
