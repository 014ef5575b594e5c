/**
 * `vilref/eval`: evaluation protocols (zero-shot, linear probe, retrieval), datasets and their
 * adapters, metrics with bootstrap confidence intervals, HTML reports.
 */
export * from "./metrics.js";
export * from "./dataset.js";
export * from "./evaluate.js";
export {
  encodeImageSet,
  normalizeRows,
  textEncoder,
  tokenizerFor,
  contextLengthFor,
  logitScaleOf,
} from "./features.js";
export type { ImageFeatures, EncodeImagesOptions, TextEncodeFn, VocabSource } from "./features.js";
export { ZeroShotClassifier, resolveClassPrompts } from "./classify.js";
export type { ClassifierOptions, ImagePrediction, LabelScore } from "./classify.js";
export {
  writePredictions,
  formatPredictions,
  predictionRows,
  predictionsFormat,
  writeScoreTable,
  tableRows,
  goldLabels,
} from "./predictions.js";
export type { PredictionRow, PredictionsFormat, ScoreTable } from "./predictions.js";
// gallery search over vilref embed's output (lib/search), by the block-wise top-k below
export { openIndex, searchIndex } from "../search/index.js";
export type { GalleryIndex, SearchOptions, SearchHit, SearchResult } from "../search/index.js";
export {
  zeroShot,
  loadPromptBank,
  classPrompts,
  buildPrompts,
  encodeClassPrompts,
  multiLabelScores,
  singleLabelProbabilities,
  DEFAULT_PROMPTS_URL,
  MULTI_LABEL_SCORINGS,
} from "./zeroshot.js";
export type {
  PromptBank,
  ClassEntry,
  ClassPrompts,
  ClassFeatures,
  ZeroShotOptions,
  ZeroShotResult,
  MultiLabelScoring,
} from "./zeroshot.js";
export { linearProbe, trainProbe, fitLinear, predictProba, convergenceWarning, DEFAULT_C_GRID } from "./probe.js";
export type {
  ProbeOptions,
  ProbeResult,
  LinearModel,
  FittedLinear,
  FitProblem,
  ProbeTargets,
  TrainedProbe,
  SelectionRow,
  NonConvergence,
} from "./probe.js";
export { retrieval, retrievalFromRanks, pairedRanks, directionReport, namedRecall } from "./retrieval.js";
export type { RetrievalResult, DirectionReport, PairedRanks } from "./retrieval.js";
export { targetRanks, topK, topKStream, featureMatrix } from "./rank.js";
export type { BlockOptions, TopKOptions, FeatureMatrix, TopKResult } from "./rank.js";
export { writeReport, rocSvg, confusionSvg, svgToPng } from "./report.js";
export type { Overlay, ReportOptions, Reportable } from "./report.js";
export * from "./adapters/index.js";
