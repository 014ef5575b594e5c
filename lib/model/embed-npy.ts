/**
 * Embedding of `.npy` arrays — preprocessed images (float32 N×3×R×R) or token ids (int64/int32
 * N×L) — into `.npy` features (float32 N×D), in batches, for numpy users.
 */
import { normalizeRowsInPlace } from "../embed/index.js";
import { readNpy, writeNpy } from "../io/npy.js";
import type { TensorData } from "../native.js";
import type { EncodeOptions, ViLReF } from "./vilref.js";

export interface EmbedNpyOptions extends EncodeOptions {
  batchSize?: number;
  /** Write L2-normalised rows. */
  normalize?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function embedNpy(
  model: ViLReF,
  input: string,
  output: string,
  options: EmbedNpyOptions = {},
): Promise<{ rows: number; dim: number; kind: "images" | "ids" }> {
  const arr = await readNpy(input);
  const batch = options.batchSize ?? 64;
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`batchSize: expected a positive integer, got ${batch}`);
  let kind: "images" | "ids";
  if (arr.dtype === "float32") kind = "images";
  else if (arr.dtype === "int64" || arr.dtype === "int32") kind = "ids";
  else throw new TypeError(`${input}: dtype ${arr.dtype} is neither float32 images nor int64/int32 token ids`);
  const n = arr.shape[0] ?? 0;
  const rowSize = arr.shape.slice(1).reduce((a, b) => a * b, 1);
  const parts: Float32Array[] = [];
  let dim = 0;
  const encodeOptions: EncodeOptions = options.features ? { features: options.features } : {};
  for (let start = 0; start < n; start += batch) {
    const end = Math.min(n, start + batch);
    const shape = [end - start, ...arr.shape.slice(1)];
    const data = arr.data.subarray(start * rowSize, end * rowSize);
    const out: TensorData =
      kind === "images"
        ? await model.encodeImages({ data: data as Float32Array, shape }, encodeOptions)
        : await model.encodeTexts({ data: data as BigInt64Array, shape } as TensorData<BigInt64Array>, encodeOptions);
    dim = out.shape[1]!;
    parts.push(out.data);
    options.onProgress?.(end, n);
  }
  const all = new Float32Array(n * dim);
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.length;
  }
  if (options.normalize) normalizeRowsInPlace(all, n, dim);
  await writeNpy(output, { dtype: "float32", shape: [n, dim], data: all });
  return { rows: n, dim, kind };
}
