/** Text side of ViLReF: the released tokenizer and vocabularies. */
export { Vocab, SPECIAL_TOKENS, pyStrip } from "./vocab.js";
export { BertTokenizer, preprocessText, basicTokenize, isCjkToken, DEFAULT_CONTEXT_LENGTH } from "./tokenizer.js";
export type { TokenizerOptions, TokenBatch } from "./tokenizer.js";
export { VocabBuilder, buildVocab, RESERVED_PREFIX } from "./vocab-build.js";
export type { VocabBuildOptions } from "./vocab-build.js";
