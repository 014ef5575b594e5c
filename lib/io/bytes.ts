/** Byte-level helpers shared by the file formats: endianness, typed-array views, atomic writes. */

/** True on little-endian hosts (every platform LibTorch ships for). */
export const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the bytes of every `itemSize`-byte element of `bytes`, in place. */
export function byteswapInPlace(bytes: Uint8Array, itemSize: number): void {
  if (itemSize <= 1) return;
  if (bytes.length % itemSize !== 0)
    throw new RangeError(`byteswap: ${bytes.length} bytes is not a multiple of ${itemSize}`);
  for (let i = 0; i < bytes.length; i += itemSize) {
    for (let a = i, b = i + itemSize - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** A typed-array constructor of the kinds the formats use. */
export type ElementArrayCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Uint16ArrayConstructor
  | BigInt64ArrayConstructor
  | Int32ArrayConstructor
  | Int16ArrayConstructor
  | Int8ArrayConstructor
  | Uint8ArrayConstructor;

export type ElementArray =
  Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/**
 * A typed array of `count` elements over `bytes[offset, offset + count * itemSize)`.
 * Zero-copy (shares memory with `bytes`) when the address is aligned to the item size and no byte
 * swap is needed; otherwise the bytes are copied (and swapped when `swap`), never converted through
 * numbers, so NaN payloads and -0 survive.
 */
export function viewOrCopy<T extends ElementArray>(
  ctor: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number },
  bytes: Uint8Array,
  offset: number,
  count: number,
  swap = false,
): T {
  const itemSize = ctor.BYTES_PER_ELEMENT;
  const start = bytes.byteOffset + offset;
  if (!swap && start % itemSize === 0) return new ctor(bytes.buffer, start, count);
  const copy = new Uint8Array(count * itemSize);
  copy.set(bytes.subarray(offset, offset + count * itemSize));
  if (swap) byteswapInPlace(copy, itemSize);
  return new ctor(copy.buffer, 0, count);
}

/** The bytes of a typed array, as a view (no copy). */
export function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Atomic writes live in lib/io/atomic.ts; re-exported for the format modules. */
export { atomicWriteFile } from "./atomic.js";
