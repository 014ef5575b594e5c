/**
 * Recycled batch memory (the loaders' `recycleImages` option): the [B, 3, S, S] arrays of full
 * batches, handed back by the loader when its consumer asks for the next batch and reused for a
 * later one. A 224² batch of 64 is 38.5 MB of memory outside V8's heap; allocating one per batch
 * makes V8 run a full mark-compact every few batches (its external-memory heuristic), a cost the
 * evaluation pipeline measured at several percent of an image's CPU (bench/RESULTS.md). The arrays
 * are let go when the loop taking them ends (an epoch's, or a run of epochs' through batches()),
 * so an idle loader (a held-out evaluator between its runs) holds none.
 */
export class BatchMemory {
  readonly #free: Float32Array[] = [];
  /**
   * @param length floats in one full batch (B × 3 × S × S); arrays of other lengths are not kept.
   * @param keep the most arrays held (the loader's prefetch + 2: the batches decoding ahead, the
   *   one being consumed, and the one handed back).
   */
  constructor(
    readonly length: number,
    readonly keep: number,
  ) {}

  /** An array of `length` floats, not zero-filled: a recycled one, else a new one. */
  take(length: number): Float32Array {
    if (length === this.length) {
      const a = this.#free.pop();
      if (a) return a;
    }
    return newBatchArray(length);
  }

  /** Hands an array back for reuse; the caller must not touch it afterwards. */
  give(a: Float32Array): void {
    if (a.length === this.length && a.byteOffset === 0 && this.#free.length < this.keep && !this.#free.includes(a))
      this.#free.push(a);
  }

  /** Lets go of the arrays held (an epoch ended: memory is held only while batches are being made). */
  clear(): void {
    this.#free.length = 0;
  }
}

/** A new batch array, not zero-filled (every image writes its whole slot or is compacted away). */
export function newBatchArray(length: number): Float32Array {
  return new Float32Array(Buffer.allocUnsafeSlow(length * 4).buffer, 0, length);
}
