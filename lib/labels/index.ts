/** Expert-knowledge label extraction from Chinese fundus reports. */
export { LABEL_IDS, isLabelId, toLabelVector } from "./taxonomy.js";
export type { LabelId, LabelMap, LabelValue, Eye } from "./taxonomy.js";
export { loadRules, parseRules, rulesSchema, RulesError, DEFAULT_RULES_URL } from "./rules.js";
export type { Rules, LabelRule, NumericRule } from "./rules.js";
export { Labeler, labelReport, UNCERTAINTY_POLICIES } from "./engine.js";
export type { LabelResult, LabelOptions, Evidence, Cue, Status, UncertaintyPolicy } from "./engine.js";
export { normalizeReport, originalSpan, charTable } from "./normalize.js";
export type { NormalizedText, CharTable } from "./normalize.js";
export { evaluate, formatEval } from "./eval.js";
export { errorGroups, formatErrors } from "./errors.js";
export type { ErrorGroup, ErrorCase, ErrorInput, ErrorKind, ErrorVocabulary } from "./errors.js";
export type { EvalReport, EvalPair, LabelScore } from "./eval.js";
export { readReports, parseCsv } from "./io.js";
export type { ReportRecord, ReadOptions } from "./io.js";
