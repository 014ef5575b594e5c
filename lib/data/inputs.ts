/**
 * What `vilref embed` accepts as input: a directory (images found recursively), a glob
 * (`*`, `**`, `?`, `[...]`, `{a,b}`), a manifest (.csv, .tsv, .jsonl), or a single image file.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import {
  IMAGE_EXTENSIONS,
  listImages,
  readManifest,
  samplesFromFiles,
  type ManifestOptions,
  type Sample,
} from "./manifest.js";

/** A glob as a regular expression over "/"-separated paths. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === "*") {
      if (glob[i + 1] === "*") {
        // "**/" matches zero or more directories; a trailing "**" anything.
        i++;
        if (glob[i + 1] === "/") {
          i++;
          re += "(?:[^/]*/)*";
        } else re += ".*";
      } else re += "[^/]*";
    } else if (ch === "?") re += "[^/]";
    else if (ch === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        let cls = glob.slice(i + 1, end);
        if (cls.startsWith("!")) cls = "^" + cls.slice(1);
        re += `[${cls.replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else if (ch === "{") {
      braces++;
      re += "(?:";
    } else if (ch === "}" && braces > 0) {
      braces--;
      re += ")";
    } else if (ch === "," && braces > 0) re += "|";
    else re += ch.replace(/[.+^$()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export function isGlob(s: string): boolean {
  return /[*?[{]/.test(s);
}

/** Files matching a glob (relative to cwd unless absolute), sorted. */
export function expandGlob(glob: string, cwd = process.cwd()): string[] {
  const norm = glob.split(path.sep).join("/");
  const parts = norm.split("/");
  const fixed: string[] = [];
  for (const p of parts) {
    if (isGlob(p)) break;
    fixed.push(p);
  }
  const baseRel = fixed.join("/") || ".";
  const base = path.resolve(cwd, baseRel === "" ? "/" : baseRel);
  if (!existsSync(base) || !statSync(base).isDirectory()) return [];
  const re = globToRegExp(path.resolve(cwd, norm).split(path.sep).join("/"));
  return listImages(base, [""].concat(IMAGE_EXTENSIONS)).filter((f) => re.test(f.split(path.sep).join("/")));
}

const MANIFEST_EXT = new Set([".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json"]);

/** Samples for an input: directory, glob, manifest or image file. Ids: paths relative to the input's folder, or the manifest's ids. */
export function resolveImageInputs(input: string, manifestOptions: ManifestOptions = {}): Sample[] {
  if (isGlob(input) && !existsSync(input)) {
    const files = expandGlob(input);
    if (files.length === 0) throw new Error(`${input}: no files match`);
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
