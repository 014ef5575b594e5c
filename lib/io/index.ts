/**
 * `vilref/io`: NumPy `.npy` and safetensors files, read and written with their headers checked;
 * the strict reader of CSV/TSV tables and text files (errors at file:line); run locks, atomic writes
 * and JSON with a depth limit.
 */
export { parseNpy, readNpy, encodeNpy, writeNpy, npyFromTensor, npyItemSize, NpyError } from "./npy.js";
export type { NpyArray, NpyDtype } from "./npy.js";
export {
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  encodeSafetensors,
  writeSafetensors,
  stItemSize,
  DEFAULT_MAX_HEADER_BYTES,
} from "../checkpoint/safetensors.js";
export type { StDtype, StTensor, StHeader, StHeaderEntry, SafetensorsOptions } from "../checkpoint/safetensors.js";
export { CheckpointError } from "../checkpoint/errors.js";
export { TableError, decodeUtf8, delimiterOf, parseRows, parseTable, readTable, readText } from "./table.js";
export type { Delimiter, Table, TableRow } from "./table.js";
export { acquireLock, withLock, ownerAlive, LockError } from "./lock.js";
export type { LockOwner, RunLock } from "./lock.js";
export { atomicWriteFile, atomicWriteFileSync, cleanTempFiles, OutputError } from "./atomic.js";
export type { AtomicOptions } from "./atomic.js";
export { parseJson, JsonInputError, DEFAULT_MAX_JSON_DEPTH } from "./json.js";
