/**
 * One ViLReF pre-training step at a time, in LibTorch: EMA momentum encoders, WSCL (or CLIP) over
 * the batch and the memory queue, AdamW with the released recipe (betas 0.9/0.98, eps 1e-6,
 * weight decay 0.001 on tensors of rank ≥ 2, embeddings included: native/optim.h), optional
 * gradient clipping, logit scale clamped to [0, ln 100], enqueue of the batch's momentum features
 * (../shared/WSCL.md). Steps run on the model's queue, in order with its other calls. The options'
 * defaults are trainerOptionFields' (documented on each option); `trainer.options` reads back the
 * effective ones from the native trainer.
 */
import { z } from "zod";
import { parseOptions } from "../config/options.js";
import { NativeResource } from "../dispose.js";
import { native } from "../native.js";
import type { NativeTrainer, TensorData, TrainerDevices } from "../native.js";
import { wsclOptionFields } from "./losses.js";
import { betasSchema, epsSchema, lrSchema, weightDecaySchema } from "./optim.js";
import type { ViLReF } from "../model/vilref.js";
import type { ProcessGroup } from "./dist.js";

export const trainerOptionFields = {
  /** Number of labels per sample (the label vectors' length). Required. */
  labelDim: z
    .number()
    .int()
    .min(1)
    .max(1 << 16),
  /**
   * AdamW's learning rate (a step's `lr` overrides it). Default: 5e-4 — the peak rate of CLIP's and
   * open_clip's ViT-B/16 pre-training, and what `vilref pretrain` has always used (the pre-training
   * config's `schedule.lr` is this option).
   */
  lr: lrSchema().default(5e-4),
  /** AdamW's betas (the released recipe). Default: [0.9, 0.98]. */
  betas: betasSchema().default([0.9, 0.98]),
  /** AdamW's epsilon (the released recipe). Default: 1e-6. */
  eps: epsSchema().default(1e-6),
  /** Weight decay of the tensors of rank ≥ 2 (native/optim.h). Default: 0.001. */
  weightDecay: weightDecaySchema().default(0.001),
  /** Whether the 2-D embedding tables decay too, as in the released pre-training. Default: true. */
  decayEmbeddings: z.boolean().default(true),
  /** EMA factor of the momentum encoders. Default: 0.995. */
  momentum: z.number().min(0).max(1).default(0.995),
  /** Max global gradient norm; 0 clips nothing. Default: 0. */
  gradClip: z.number().min(0).max(1e9).default(0),
  /** Queue entries; 0: no batch expansion and no momentum encoders. Default: 16384. */
  queueSize: z
    .number()
    .int()
    .min(0)
    .max(1 << 24)
    .default(16384),
  /** The objective: WSCL (../shared/WSCL.md) or plain CLIP InfoNCE. Default: "wscl". */
  loss: z.enum(["wscl", "clip"]).default("wscl"),
  ...wsclOptionFields,
  /**
   * Towers whose weights stay fixed: "visual" (every visual.* weight but the ViT's projection
   * visual.proj; a ResNet's projection is its attention pool, frozen with it; a frozen ResNet's
   * BatchNorm statistics stay too) and/or "text" (bert.*). text_projection and logit_scale stay
   * trainable. A frozen tower gets no gradient and is not in the optimizer; its momentum copy
   * stays equal to it. Default: [].
   */
  freeze: z.array(z.enum(["visual", "text"])).default([]),
  /**
   * Recompute the ViT residual blocks and BERT layers in backward instead of keeping their
   * activations (less memory, about one more forward of compute). ResNet stages are not
   * checkpointed (their BatchNorm would update its running statistics twice). Same result.
   * Default: false.
   */
  gradientCheckpointing: z.boolean().default(false),
  /**
   * Mixed precision of the step with float32 master weights (the model must be float32):
   * "bfloat16" autocasts the forward (CPU or CUDA); "float16" (CUDA only) autocasts to float16
   * with dynamic loss scaling (2^16, ×2 after 2000 finite steps, ÷2 and the update skipped on an
   * inf/nan gradient). The loss is computed in float32. Default: "float32".
   */
  precision: z.enum(["float32", "bfloat16", "float16"]).default("float32"),
  /**
   * Data-parallel training in this process group (lib/train/dist.ts): parameters are broadcast from
   * rank 0 at the first step, the loss covers the global batch (features gathered from all ranks,
   * gradient through this rank's own), gradients are summed over ranks and the gathered momentum
   * features are enqueued, so every rank holds the same weights and queue and a step of W ranks
   * with b pairs each equals one process with W·b pairs. Optional.
   */
  processGroup: z.custom<ProcessGroup>().optional(),
};

export const trainerOptionsSchema = z.object(trainerOptionFields).strict();
/** The Trainer's options as given (every one but labelDim has a default). */
export type TrainerOptions = z.input<typeof trainerOptionsSchema>;
/** The Trainer's options with every default filled in: what the native trainer takes and reports back. */
export type ResolvedTrainerOptions = z.output<typeof trainerOptionsSchema>;
/** What the native trainer reports back as its effective options (the process group aside). */
export type EffectiveTrainerOptions = Omit<ResolvedTrainerOptions, "processGroup">;

export const trainerStepFields = {
  /** This step's learning rate (schedules live in TypeScript). Default: the trainer's `lr`. */
  lr: lrSchema().optional(),
};
export const trainerStepSchema = z.object(trainerStepFields).strict();
export type TrainerStepOptions = z.input<typeof trainerStepSchema>;

export interface TrainBatch {
  /** [B, 3, R, R] preprocessed images. */
  images: TensorData<Float32Array>;
  /** [B, L] token ids. */
  ids: TensorData<BigInt64Array> | TensorData<Int32Array>;
  /** [B, C] label vectors in [0, 1]. */
  labels: TensorData<Float32Array>;
}

export interface StepResult {
  loss: number;
  /** True when the loss was not finite and the step was skipped (no update, no enqueue). */
  skipped: boolean;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  logitScale: number;
  queueValid: number;
  /** Seconds of this step spent in all-gathers (0 without a process group). */
  allGatherSeconds: number;
  /** Seconds of this step spent in all-reduces and broadcasts (0 without a process group). */
  allReduceSeconds: number;
  /** The loss scale this step's backward used (1 unless precision is "float16"). */
  lossScale: number;
  /** precision "float16": the gradient overflowed, the update was skipped and the scale halved. */
  overflow: boolean;
  /** Residual blocks re-run in this step's backward (gradientCheckpointing; 0 without it). */
  recomputedBlocks: number;
}

export interface QueueState {
  valid: number;
  pointer: number;
  steps: number;
  image: TensorData<Float32Array>;
  text: TensorData<Float32Array>;
  labels: TensorData<Float32Array>;
}

/**
 * Everything a resumed run needs besides the model's own weights, as named tensors:
 * `momentum.<name>`, `optim.<name>.{exp_avg,exp_avg_sq,step}`, `queue.{image,text,labels}`,
 * `queue.position` ([valid, pointer]), `trainer.counters` ([steps, skipped]), `trainer.scaler`
 * ([loss scale, finite steps since the last change]; optional on import), `rng.cpu`.
 * Save it with writeSafetensors beside the model; load it into a Trainer made the same way.
 */
export type TrainerStateRecord = Record<
  string,
  TensorData<Float32Array> | TensorData<BigInt64Array> | TensorData<Uint8Array>
>;

/**
 * Owns native memory (momentum encoders, optimizer moments, the queue): `dispose()` frees it; the
 * model's own dispose() disposes its trainers first.
 */
export class Trainer extends NativeResource {
  readonly #native: NativeTrainer;
  readonly #lr: number;

  constructor(model: ViLReF, options: TrainerOptions) {
    super();
    const resolved = parseOptions(trainerOptionsSchema, options);
    this.#native = new (native().Trainer)(model.nativeHandle, resolved);
    this.#lr = resolved.lr;
    NativeResource.attach(model, this);
  }

  protected get nativeResource(): NativeTrainer {
    return this.#native;
  }

  /** The effective options, as the native trainer holds them (every default filled in). */
  get options(): EffectiveTrainerOptions {
    return this.#native.options;
  }

  /** One optimisation step; `lr` overrides the learning rate for this step (schedules live in TS). */
  async step(batch: TrainBatch, options: TrainerStepOptions = {}): Promise<StepResult> {
    const { lr } = parseOptions(trainerStepSchema, options);
    return this.#native.step(batch, { lr: lr ?? this.#lr });
  }

  /** The valid queue entries and the ring position. */
  queueState(): Promise<QueueState> {
    return this.#native.queueState();
  }

  /** The momentum encoders' weights, by the released names. */
  momentumStateDict(): Promise<Record<string, TensorData<Float32Array> | TensorData<BigInt64Array>>> {
    return this.#native.momentumStateDict();
  }

  /** The optimizer, momentum encoders, queue and counters (see TrainerStateRecord). */
  exportState(): Promise<TrainerStateRecord> {
    return this.#native.exportState();
  }

  /** Restores exportState()'s record; with the model's weights restored too, training continues exactly. */
  importState(state: TrainerStateRecord): Promise<void> {
    return this.#native.importState(state);
  }

  /**
   * Where the trainer's tensors live: online and momentum weights, the queue (on the model's device,
   * so a step copies nothing to or from the host), AdamW's moments and the last step's loss.
   */
  devices(): Promise<TrainerDevices> {
    return this.#native.devices();
  }

  /** Steps skipped for a non-finite loss. */
  get skipped(): number {
    return this.#native.skipped;
  }
}

/**
 * The float16 loss scaler's rule over a run of steps whose gradients were finite or not: ×2 after
 * `interval` (default 2000) finite steps in a row, ÷2 and the update skipped on a non-finite one.
 * `applied[i]`: whether step i's update was applied. (The native rule the Trainer follows.)
 */
export function lossScalerUpdate(
  scale: number,
  goodSteps: number,
  finite: boolean[],
  interval = 2000,
): { scale: number; goodSteps: number; applied: boolean[] } {
  return native().Trainer.lossScalerUpdate(scale, goodSteps, finite, interval);
}
