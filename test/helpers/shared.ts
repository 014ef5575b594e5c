/** Locates the shared read-only material (../shared next to the repository root). */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const sharedDir = path.resolve(repoRoot, "../shared");

/** Absolute path of a file under ../shared. */
export function sharedPath(...parts: string[]): string {
  return path.join(sharedDir, ...parts);
}

export function hasShared(...parts: string[]): boolean {
  return existsSync(sharedPath(...parts));
}
