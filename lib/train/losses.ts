/**
 * The pre-training objectives as functions, for scripting and tests: the Weighted Similarity
 * Coupling Loss (../shared/WSCL.md: label-similarity weights (1 − c)^γ, false negatives with
 * c ≥ θ removed, queue entries as extra negatives) and plain CLIP InfoNCE. Computed in LibTorch
 * with autograd; features are L2-normalised inside, so the gradients are those of the raw
 * features given. Float32Array or Float64Array (for finite-difference checks) inputs.
 */
import { native } from "../native.js";
import type { NativeLosses, TensorData } from "../native.js";

type Floats = TensorData<Float32Array> | TensorData<Float64Array>;

export interface ClipLossArgs {
  /** Image features [B, D] (online encoder, before normalisation). */
  image: Floats;
  /** Text features [B, D]. */
  text: Floats;
  /** The learnable logit scale: logits are exp(logitScale) · cosine. */
  logitScale: number;
}

export interface WsclLossArgs extends ClipLossArgs {
  /** Label vectors [B, C] in [0, 1] (1 present, 0.5 uncertain, 0 absent). */
  labels: Floats;
  /** Valid queue entries: momentum image/text features [K, D] (normalised) and their labels [K, C]. */
  queue?: { image: Floats; text: Floats; labels: Floats };
  /** False negatives: j ≠ i with label similarity ≥ threshold are removed (default 1: same label set). */
  threshold?: number;
  /** Negative weights (1 − c)^gamma (default 1; 0 with threshold > 1 is CLIP InfoNCE). */
  gamma?: number;
}

export interface LossResult {
  loss: number;
  /** Per anchor image: −log of its positive's weighted softmax share. */
  lossI2T: Floats;
  lossT2I: Floats;
  gradImage: Floats;
  gradText: Floats;
  gradLogitScale: number;
}

const nativeLosses = (): NativeLosses => native().losses;

export const losses = {
  /** ½(mean_i L_i2t + mean_i L_t2i) of WSCL.md, with its gradients. */
  wscl: (args: WsclLossArgs): Promise<LossResult> => nativeLosses().wscl(args),
  /** Plain CLIP InfoNCE over the batch, with its gradients. */
  clip: (args: ClipLossArgs): Promise<LossResult> => nativeLosses().clip(args),
};
