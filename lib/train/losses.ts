/**
 * The pre-training objectives as functions, for scripting and tests: the Weighted Similarity
 * Coupling Loss (../shared/WSCL.md: label-similarity weights (1 − c)^γ, false negatives with
 * c ≥ θ removed, queue entries as extra negatives) and plain CLIP InfoNCE. Computed in LibTorch
 * with autograd; features are L2-normalised inside, so the gradients are those of the raw
 * features given. Float32Array or Float64Array (for finite-difference checks) inputs.
 */
import { z } from "zod";
import { parseOptions } from "../config/options.js";
import { native } from "../native.js";
import type { NativeLosses, TensorData } from "../native.js";

export const wsclOptionFields = {
  /** WSCL: pairs j ≠ i with label similarity ≥ threshold are false negatives, removed (1: the same
   * label set). Default: 1. */
  threshold: z.number().min(0).max(1e9).default(1),
  /** WSCL: negative weights (1 − c)^gamma (0 with threshold > 1 is CLIP InfoNCE). Default: 1. */
  gamma: z.number().min(0).max(1e3).default(1),
};
const lossScalarFields = {
  /** The learnable logit scale: logits are exp(logitScale) · cosine. Required. */
  logitScale: z.number().min(-50).max(50),
  ...wsclOptionFields,
};
const clipScalarsSchema = z.object({ logitScale: lossScalarFields.logitScale });
const wsclScalarsSchema = z.object(lossScalarFields);

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
  /** See wsclOptionFields. Default: 1. */
  threshold?: number;
  /** See wsclOptionFields. Default: 1. */
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

/** The scalar arguments checked and filled in (tensors are checked natively); `args` must be an object. */
function withScalars<S extends z.ZodType>(schema: S, args: object): z.output<S> {
  if (typeof args !== "object" || args === null) return args; // the native side names it
  const a = args as Record<string, unknown>;
  const picked = Object.fromEntries(["logitScale", "threshold", "gamma"].filter((k) => k in a).map((k) => [k, a[k]]));
  return { ...args, ...(parseOptions(schema, picked, "args") as object) } as z.output<S>;
}

export const losses = {
  /** ½(mean_i L_i2t + mean_i L_t2i) of WSCL.md, with its gradients. */
  wscl: async (args: WsclLossArgs): Promise<LossResult> =>
    nativeLosses().wscl(withScalars(wsclScalarsSchema, args) as Required<WsclLossArgs>),
  /** Plain CLIP InfoNCE over the batch, with its gradients. */
  clip: async (args: ClipLossArgs): Promise<LossResult> =>
    nativeLosses().clip(withScalars(clipScalarsSchema, args) as ClipLossArgs),
};
