/**
 * `vilref/data`: manifests, image folders, preprocessing (the JPEG fast path and sharp), the batch
 * loader, and WebDataset shards (the packer, the streaming loader, shard listings, data sources).
 */
export * from "./transforms.js";
export * from "./manifest.js";
export * from "./loader.js";
export * from "./inputs.js";
export { hashSeed, mulberry32, permutation } from "./rng.js";
export type { Rng } from "./rng.js";
export { packShards } from "./pack.js";
export type { PackOptions, PackProgress, PackResult } from "./pack.js";
export { ShardLoader, shardLoaderSchema } from "./shard-loader.js";
export type { ShardLoaderOptions, ShardLoaderStats } from "./shard-loader.js";
export {
  SHARD_INDEX_FORMAT,
  braceExpand,
  expandShards,
  isShardSpec,
  readMember,
  readShardIndex,
  scanShards,
} from "./shards.js";
export type { ScanOptions, ScanResult, ShardIndex, ShardProblem } from "./shards.js";
export { readSource } from "./source.js";
export type { SourceOptions, SourceResult } from "./source.js";
