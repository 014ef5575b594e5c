/**
 * Sliding-window inference at full resolution: square tiles at a stride (overlapping when the
 * stride is below the tile), the last tile of each row/column flush with the border, the
 * predictions averaged where tiles overlap. Pixels beyond a border that is smaller than a tile
 * read as zero.
 */
import type { TensorData } from "../native.js";

/** A CHW float image. */
export interface Plane {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

/** Tile origins along one axis: 0, stride, 2·stride, ..., and size − tile (flush with the border). */
export function windowOrigins(size: number, tile: number, stride: number): number[] {
  if (!(Number.isInteger(stride) && stride >= 1))
    throw new RangeError(`stride: expected a positive integer, got ${stride}`);
  if (!(Number.isInteger(tile) && tile >= 1)) throw new RangeError(`tile: expected a positive integer, got ${tile}`);
  if (size <= tile) return [0];
  const out: number[] = [];
  for (let o = 0; o + tile < size; o += stride) out.push(o);
  out.push(size - tile);
  return out;
}

/** Copies the tile at (y0, x0) of `image` into `out` at `offset`, zero beyond the borders. */
export function extractTile(
  image: Plane,
  y0: number,
  x0: number,
  tile: number,
  out: Float32Array,
  offset: number,
): void {
  const { channels: C, height: H, width: W, data } = image;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < tile; y++) {
      const row = offset + (c * tile + y) * tile;
      const sy = y0 + y;
      if (sy >= H) {
        out.fill(0, row, row + tile);
        continue;
      }
      const n = Math.max(0, Math.min(tile, W - x0));
      const src = (c * H + sy) * W + x0;
      out.set(data.subarray(src, src + n), row);
      if (n < tile) out.fill(0, row + n, row + tile);
    }
  }
}

export type TilePredictor = (batch: TensorData<Float32Array>) => Promise<TensorData<Float32Array>>;

/**
 * Runs `predict` ([N, C, tile, tile] → [N, 1, tile, tile]) over `image` and returns the
 * overlap-averaged [H, W] map.
 */
export async function slidingWindow(
  image: Plane,
  tile: number,
  stride: number,
  predict: TilePredictor,
  batchSize = 16,
): Promise<Float32Array> {
  const { channels: C, height: H, width: W } = image;
  if (image.data.length !== C * H * W) throw new RangeError(`image: ${image.data.length} values for ${C}×${H}×${W}`);
  const ys = windowOrigins(H, tile, stride),
    xs = windowOrigins(W, tile, stride);
  const origins = ys.flatMap((y) => xs.map((x) => [y, x] as const));
  const sum = new Float64Array(H * W),
    count = new Float64Array(H * W); // exact averages of equal values
  const per = C * tile * tile;
  for (let b = 0; b < origins.length; b += batchSize) {
    const chunk = origins.slice(b, b + batchSize);
    const data = new Float32Array(chunk.length * per);
    chunk.forEach(([y, x], i) => extractTile(image, y, x, tile, data, i * per));
    const out = await predict({ data, shape: [chunk.length, C, tile, tile] });
    if (out.data.length !== chunk.length * tile * tile)
      throw new RangeError(
        `predict: expected ${chunk.length}×1×${tile}×${tile} values, got shape [${out.shape.join(", ")}]`,
      );
    chunk.forEach(([y0, x0], i) => {
      const base = i * tile * tile;
      for (let y = 0; y < tile && y0 + y < H; y++) {
        for (let x = 0; x < tile && x0 + x < W; x++) {
          const p = (y0 + y) * W + x0 + x;
          sum[p]! += out.data[base + y * tile + x]!;
          count[p]! += 1;
        }
      }
    });
  }
  return Float32Array.from(sum, (s, p) => s / count[p]!);
}
