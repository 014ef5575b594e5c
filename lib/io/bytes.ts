/** Byte-level helpers shared by the file formats: endianness, typed-array views, atomic writes. */
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import path from "node:path";

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

/**
 * Writes `chunks` to `file` atomically: a temporary file in the same directory is written, flushed
 * to disk (fsync) and renamed over `file`. On any failure the temporary file is removed and an
 * existing `file` is left untouched.
 */
export async function atomicWriteFile(file: string, chunks: Uint8Array | Uint8Array[]): Promise<void> {
  const parts = Array.isArray(chunks) ? chunks : [chunks];
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let renamed = false;
  try {
    const handle = await open(tmp, "wx", 0o644);
    try {
      for (const part of parts) {
        let written = 0;
        while (written < part.length) {
          const { bytesWritten } = await handle.write(part, written, part.length - written);
          written += bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    renamed = true;
    // Persist the rename itself; not every platform lets a directory be opened, so best effort.
    try {
      const dh = await open(dir, "r");
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      /* best effort */
    }
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}
