/** `vilref/data`: manifests, image folders, preprocessing (the JPEG fast path and sharp), the batch loader. */
export * from "./transforms.js";
export * from "./manifest.js";
export * from "./loader.js";
export * from "./inputs.js";
export { hashSeed, mulberry32, permutation } from "./rng.js";
export type { Rng } from "./rng.js";
