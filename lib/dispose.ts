/**
 * Explicit release of native memory. Every public object that owns LibTorch tensors (ViLReF,
 * Trainer, Segmenter, Finetuner, Head; a ProcessGroup is the native object itself) extends
 * NativeResource: `dispose()` frees its tensors at once instead of when the garbage collector gets
 * to it, `using` / `await using` call it, and later calls reject with "<Class> was disposed".
 *
 * What the native side does (native/async.h, Disposal): the release is queued behind the calls
 * already made on the object, so they finish first; then the tensors are freed and the CPU block
 * cache hands the freed blocks back to the system (on CUDA they go back to LibTorch's caching
 * allocator). Objects that work on another one (a Trainer or Finetuner on a ViLReF) are its
 * dependents: disposing the model disposes them first, since their optimizers hold its weights.
 *
 * Node 20 defines Symbol.dispose and Symbol.asyncDispose (as Node's own symbols, which TypeScript's
 * `using` helpers read at run time), so no polyfill is needed on the Node versions vilref supports.
 */

/** The native half of a NativeResource: dispose() queues the release and resolves once it is done. */
export interface NativeDisposable {
  dispose(): Promise<void>;
}

export abstract class NativeResource implements Disposable, AsyncDisposable {
  #disposing: Promise<void> | undefined;
  readonly #dependents = new Set<NativeResource>();
  #parent: NativeResource | undefined;

  /** The native object whose dispose() releases the memory. */
  protected abstract get nativeResource(): NativeDisposable;

  /** True once dispose() was called (the memory may still be in use by calls queued before). */
  get disposed(): boolean {
    return this.#disposing !== undefined;
  }

  /**
   * Frees the object's native memory after the calls already made on it have finished; resolves
   * when it is freed. Every later call rejects with an Error saying the object was disposed.
   * Calling it again returns the same promise.
   */
  dispose(): Promise<void> {
    if (!this.#disposing) {
      // Synchronously: the dependents and this object stop taking calls now, in this order.
      const dependents = [...this.#dependents].map((d) => d.dispose());
      const own = this.nativeResource.dispose();
      if (this.#parent) this.#parent.#dependents.delete(this);
      this.#disposing = Promise.all([...dependents, own]).then(() => undefined);
    }
    return this.#disposing;
  }

  /** `using x = ...`: starts dispose() at the end of the block (the memory is freed once queued calls finish). */
  [Symbol.dispose](): void {
    void this.dispose().catch(() => {});
  }

  /** `await using x = ...`: dispose() at the end of the block, waiting until the memory is freed. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /** Makes `dependent` part of this object's lifetime: disposing this disposes it first. */
  protected static attach(owner: NativeResource, dependent: NativeResource): void {
    owner.#dependents.add(dependent);
    dependent.#parent = owner;
  }
}
