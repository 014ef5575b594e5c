/**
 * Finetuner: the released fine-tuning protocol on a ViLReF model — a linear head on the image
 * tower's pre-projection features, BCE with logits over multi-label targets, AdamW with backbone
 * lr 1e-6 and head lr 1e-3 (native/finetune.h). `frozen` keeps the backbone bit-identical.
 * Calls run on the model's queue: they see the model as the calls made before them left it.
 */
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { FinetunerOptions, NativeFinetuner, TensorData } from "../native.js";
import type { ViLReF } from "../model/vilref.js";

export type { FinetunerOptions } from "../native.js";
export type FinetuneState = Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>;

/** Owns the head and its optimizer state: `dispose()` frees them; the model's dispose() disposes it first. */
export class Finetuner extends NativeResource {
  readonly #native: NativeFinetuner;
  readonly model: ViLReF;

  constructor(model: ViLReF, options: FinetunerOptions) {
    super();
    this.model = model;
    this.#native = new (native().Finetuner)(model.nativeHandle, options);
    NativeResource.attach(model, this);
  }

  protected get nativeResource(): NativeFinetuner {
    return this.#native;
  }

  get config() {
    return this.#native.config;
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

  /** Copies of `head.weight`, `head.bias` and, unless frozen, the backbone's `visual.*`. */
  stateDict(): Promise<FinetuneState> {
    return this.#native.stateDict();
  }

  /** Restores what stateDict returned (the head, and the backbone tensors given). */
  loadStateDict(state: FinetuneState): Promise<void> {
    return this.#native.loadStateDict(state);
  }
}
