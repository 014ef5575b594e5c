/**
 * The AdamW options every trainable class takes (Trainer, Finetuner, Segmenter), with one set of
 * ranges; each class's schema sets its own documented defaults (native/optim.h has the recipe:
 * no weight decay below rank 2, `decayEmbeddings` for the 2-D embedding tables).
 */
import { z } from "zod";

/** A learning rate. */
export const lrSchema = () => z.number().min(0).max(10);
/** AdamW's [beta1, beta2], each in [0, 1). */
export const betasSchema = () => z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]);
/** AdamW's epsilon. */
export const epsSchema = () => z.number().positive().max(1);
/** Decoupled weight decay. */
export const weightDecaySchema = () => z.number().min(0).max(10);
