/** Errors of the checkpoint formats (safetensors, released `.pt` import). */

export interface CheckpointErrorOptions {
  /** The file (or name given by the caller) at fault. */
  file?: string;
  /** The tensor key at fault, when there is one. */
  tensor?: string;
  cause?: unknown;
}

/**
 * A malformed, unsupported or unsafe checkpoint. The message names the file and, where one is at
 * fault, the tensor key: `model.safetensors: tensor "visual.proj": data_offsets [0, 100] hold 100
 * bytes but shape [4, 8] of F32 needs 128`.
 */
export class CheckpointError extends Error {
  override name = "CheckpointError";
  readonly file: string | undefined;
  readonly tensor: string | undefined;

  constructor(message: string, options: CheckpointErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file;
    this.tensor = options.tensor;
  }
}
