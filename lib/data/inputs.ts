/**
 * What `vilref embed` accepts as input: a directory (images found recursively), a glob
 * (`*`, `**`, `?`, `[...]`, `{a,b}`; expanded by tinyglobby), a manifest (.csv, .tsv, .jsonl), or a
 * single image file.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { globSync, isDynamicPattern } from "tinyglobby";
import {
  IMAGE_EXTENSIONS,
  listImages,
  readManifest,
  samplesFromFiles,
  type ManifestOptions,
  type Sample,
} from "./manifest.js";

/** Does the string use glob syntax (`*`, `?`, `[...]`, `{a,b}`, extglobs)? */
export function isGlob(s: string): boolean {
  return isDynamicPattern(s);
}

/**
 * Image files matching a glob (relative to cwd unless absolute), absolute and sorted (code-unit
 * order). tinyglobby reads only the folders the pattern can reach: `data/*.png` lists `data/` and
 * nothing below it; `**` descends. Hidden files are left out unless the pattern names them.
 */
export function expandGlob(glob: string, cwd = process.cwd()): string[] {
  const pattern = glob.split(path.sep).join("/");
  return globSync(pattern, { cwd, absolute: true, onlyFiles: true, expandDirectories: false })
    .map((f) => path.normalize(f))
    .filter((f) => IMAGE_EXTENSIONS.includes(path.extname(f).toLowerCase()))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const MANIFEST_EXT = new Set([".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json"]);

/** Samples for an input: directory, glob, manifest or image file. Ids: paths relative to the
 * input's folder, or the manifest's ids. */
export function resolveImageInputs(input: string, manifestOptions: ManifestOptions = {}): Sample[] {
  if (isGlob(input) && !existsSync(input)) {
    const files = expandGlob(input);
    if (files.length === 0) throw new Error(`${input}: no image files match (${IMAGE_EXTENSIONS.join(" ")})`);
    return samplesFromFiles(files);
  }
  if (!existsSync(input)) throw new Error(`${input}: no such file or directory`);
  if (statSync(input).isDirectory()) {
    const files = listImages(input);
    if (files.length === 0) throw new Error(`${input}: no images (${IMAGE_EXTENSIONS.join(" ")})`);
    return samplesFromFiles(files, input);
  }
  if (MANIFEST_EXT.has(path.extname(input).toLowerCase())) return readManifest(input, manifestOptions);
  return samplesFromFiles([input]);
}
