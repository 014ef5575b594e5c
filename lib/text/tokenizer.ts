/**
 * The released Chinese-CLIP / ViLReF tokenizer, exactly: Google BERT's `FullTokenizer`
 * (BasicTokenizer with do_lower_case=True, then greedy longest-match WordPiece) and
 * `cn_clip.clip.tokenize`: `[CLS] ids[:L-2] [SEP]`, right-padded with 0.
 *
 * BasicTokenizer, step by step (each mirrored below):
 *   1. clean: drop U+0000, U+FFFD and control characters (Cc, Cf except \t \n \r); every
 *      whitespace character (\t \n \r, Zs) becomes a space;
 *   2. put a space around every CJK ideograph (the blocks BERT lists, extension planes included);
 *   3. split on Python whitespace (`str.split()`: spaces, and the U+2028/U+2029 that survive 1);
 *   4. per token: lowercase (Unicode full mapping, as Python's `str.lower`), NFD, drop Mn;
 *   5. split on punctuation (ASCII 33–47, 58–64, 91–96, 123–126, and Unicode P*).
 * WordPiece: a word over 200 code points, or one that cannot be covered by vocabulary pieces
 * (`##` marks a continuation), becomes a single [UNK].
 *
 * The training dataset additionally preprocesses each report (`preprocessText`: lowercase, curly
 * double quotes to `"`); `tokenize` itself does not, exactly as released.
 *
 * The implementation classifies each code point once (a lazily filled table) and caches the
 * WordPiece split of non-CJK words, so a typical report costs one pass over its characters.
 */
import { Vocab } from "./vocab.js";

/** Character classes of BasicTokenizer. */
const enum C {
  Unknown = 0,
  Drop = 1, // NUL, U+FFFD, control
  Space = 2, // whitespace (becomes a separator)
  Cjk = 3, // CJK ideograph: a token of its own
  Punct = 4, // punctuation: a token of its own (after lowercasing)
  Ascii = 5, // other ASCII
  Other = 6, // any other character
}

const CONTROL_RE = /^[\p{Cc}\p{Cf}]$/u;
const ZS_RE = /^\p{Zs}$/u;
const PUNCT_RE = /^\p{P}$/u;
const MN_RE = /\p{Mn}/gu;

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function isAsciiPunct(cp: number): boolean {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
}

function classify(cp: number): C {
  if (cp === 0 || cp === 0xfffd) return C.Drop;
  if (cp === 0x20 || cp === 0x09 || cp === 0x0a || cp === 0x0d) return C.Space;
  const ch = String.fromCodePoint(cp);
  if (CONTROL_RE.test(ch)) return C.Drop;
  if (ZS_RE.test(ch)) return C.Space;
  // Zl / Zp survive cleaning but Python's str.split() separates on them.
  if (cp === 0x2028 || cp === 0x2029) return C.Space;
  if (isCjk(cp)) return C.Cjk;
  if (isAsciiPunct(cp) || PUNCT_RE.test(ch)) return C.Punct;
  return cp < 0x80 ? C.Ascii : C.Other;
}

const bmpClass = new Uint8Array(0x10000); // 0 = not yet classified
const astralClass = new Map<number, C>();

function classOf(cp: number): C {
  if (cp < 0x10000) {
    let c = bmpClass[cp] as C;
    if (c === C.Unknown) {
      c = classify(cp);
      bmpClass[cp] = c;
    }
    return c;
  }
  let c = astralClass.get(cp);
  if (c === undefined) {
    c = classify(cp);
    astralClass.set(cp, c);
  }
  return c;
}

/** The released training dataset's `_preprocess_text`: lowercase, curly double quotes to `"`. */
export function preprocessText(text: string): string {
  return text.toLowerCase().replaceAll("\u201c", '"').replaceAll("\u201d", '"');
}

export interface TokenizerOptions {
  /** Words longer than this many code points become [UNK] (released: 200). */
  maxInputCharsPerWord?: number;
  /** Entries kept in the word -> pieces cache (0 disables it). */
  cacheSize?: number;
}

/** Model input for a batch: `data` is row-major `[n, contextLength]`. */
export interface TokenBatch {
  data: Int32Array;
  shape: [number, number];
}

export const DEFAULT_CONTEXT_LENGTH = 52;

export class BertTokenizer {
  readonly vocab: Vocab;
  readonly maxInputCharsPerWord: number;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly cacheSize: number;
  private readonly unk: number;
  /** A one-element array per id, shared, for words that are whole vocabulary entries. */
  private readonly single: (readonly number[] | undefined)[] = [];

  constructor(vocab: Vocab, options: TokenizerOptions = {}) {
    this.vocab = vocab;
    this.maxInputCharsPerWord = options.maxInputCharsPerWord ?? 200;
    this.cacheSize = options.cacheSize ?? 50_000;
    this.unk = vocab.unkId;
  }

  static fromFile(vocabPath: string | URL, options?: TokenizerOptions): BertTokenizer {
    return new BertTokenizer(Vocab.fromFile(vocabPath), options);
  }

  /**
   * BasicTokenizer: the words WordPiece receives, in order. Each is a CJK ideograph, a
   * punctuation character or a maximal run of other characters (lowercased, accents stripped).
   */
  basicTokenize(text: string): string[] {
    const out: string[] = [];
    scanText(text, (w) => {
      out.push(w);
      return true;
    });
    return out;
  }

  /** WordPiece of one basic token: its pieces (strings), or ["[UNK]"]. */
  wordpiece(word: string): string[] {
    return this.wordIds(word).map((id) => this.vocab.token(id));
  }

  /** The token strings of a text (no [CLS]/[SEP]), as FullTokenizer.tokenize. */
  tokenize(text: string): string[] {
    return this.encode(text).map((id) => this.vocab.token(id));
  }

  /** The ids of a text, no special tokens, no truncation. */
  encode(text: string): number[] {
    const ids: number[] = [];
    scanText(text, (w) => {
      const wid = this.wordIds(w);
      for (let i = 0; i < wid.length; i++) ids.push(wid[i] as number);
      return true;
    });
    return ids;
  }

  /**
   * `cn_clip.clip.tokenize` for one text: `[CLS] ids[:L-2] [SEP]` then zeros up to L.
   * Writes into `into` at `offset` when given (for batches).
   */
  encodeForModel(text: string, contextLength = DEFAULT_CONTEXT_LENGTH, into?: Int32Array, offset = 0): Int32Array {
    checkContextLength(contextLength);
    const row = into ?? new Int32Array(contextLength);
    if (into) {
      if (offset < 0 || offset + contextLength > into.length)
        throw new RangeError("encodeForModel: row does not fit in the output array");
      row.fill(0, offset, offset + contextLength);
    }
    const max = contextLength - 2;
    let n = 0;
    row[offset] = this.vocab.clsId;
    scanText(text, (w) => {
      const wid = this.wordIds(w);
      for (let i = 0; i < wid.length; i++) {
        if (n >= max) return false;
        row[offset + 1 + n] = wid[i] as number;
        n++;
      }
      return n < max;
    });
    row[offset + 1 + n] = this.vocab.sepId;
    return row;
  }

  /** A batch of texts as one `[n, L]` Int32Array (the model's text input). */
  encodeBatch(texts: readonly string[], contextLength = DEFAULT_CONTEXT_LENGTH): TokenBatch {
    checkContextLength(contextLength);
    const data = new Int32Array(texts.length * contextLength);
    for (let i = 0; i < texts.length; i++) {
      const t = texts[i];
      if (typeof t !== "string") throw new TypeError(`encodeBatch: texts[${i}] is not a string`);
      this.encodeForModel(t, contextLength, data, i * contextLength);
    }
    return { data, shape: [texts.length, contextLength] };
  }

  /** Token ids back to text pieces (special and padding tokens dropped, `##` joined). */
  decode(ids: ArrayLike<number>): string {
    const v = this.vocab;
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (id === 0 || id === v.clsId || id === v.sepId || id === v.padId) continue;
      const t = v.token(id);
      if (t.startsWith("##")) s += t.slice(2);
      else s += (s === "" ? "" : " ") + t;
    }
    return s;
  }

  // ---------------------------------------------------------------------------------------------

  /** WordPiece ids of one word (cached). */
  private wordIds(word: string): readonly number[] {
    if (word.length <= this.maxInputCharsPerWord) {
      const direct = this.vocab.tokenToId.get(word);
      if (direct !== undefined) return (this.single[direct] ??= [direct]);
    }
    const hit = this.cache.get(word);
    if (hit !== undefined) return hit;
    const ids = this.wordpieceUncached(word);
    if (this.cacheSize > 0) {
      if (this.cache.size >= this.cacheSize) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  private wordpieceUncached(word: string): number[] {
    const map = this.vocab.tokenToId;
    // Code point boundaries (Python indexes code points, JS strings UTF-16 units).
    let bounds: number[] | null = null;
    for (let i = 0; i < word.length; i++) {
      const u = word.charCodeAt(i);
      if (u >= 0xd800 && u <= 0xdfff) {
        bounds = [];
        let j = 0;
        for (const ch of word) {
          bounds.push(j);
          j += ch.length;
        }
        bounds.push(j);
        break;
      }
    }
    const nChars = bounds ? bounds.length - 1 : word.length;
    if (nChars > this.maxInputCharsPerWord) return [this.unk];
    const at = (k: number): number => (bounds ? (bounds[k] as number) : k);
    const ids: number[] = [];
    let start = 0;
    while (start < nChars) {
      let end = nChars;
      let found = -1;
      while (start < end) {
        let sub = word.slice(at(start), at(end));
        if (start > 0) sub = "##" + sub;
        const id = map.get(sub);
        if (id !== undefined) {
          found = id;
          break;
        }
        end--;
      }
      if (found < 0) return [this.unk];
      ids.push(found);
      start = end;
    }
    return ids;
  }
}

/** BasicTokenizer over `text`, calling `emit` for each word in order until it returns false. */
function scanText(text: string, emit: (word: string) => boolean): void {
  const n = text.length;
  let tokStart = -1; // start of the current whitespace token (non-CJK run), or -1
  let allAscii = true;
  let pieces = ""; // cleaned text of the current token (only built when it contains dropped chars)
  let dirty = false; // current token has a dropped character inside
  let i = 0;
  const flush = (end: number): boolean => {
    if (tokStart < 0) return true;
    const raw = dirty ? pieces : text.slice(tokStart, end);
    const go = emitToken(raw, allAscii, emit);
    tokStart = -1;
    allAscii = true;
    dirty = false;
    pieces = "";
    return go;
  };
  while (i < n) {
    // a surrogate pair is one code point of two UTF-16 units; a lone surrogate stands for itself
    const cp = text.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    const c = cp < 0x80 ? asciiClass(cp) : classOf(cp);
    switch (c) {
      case C.Drop:
        if (tokStart >= 0 && !dirty) {
          pieces = text.slice(tokStart, i);
          dirty = true;
        }
        break;
      case C.Space:
        if (!flush(i)) return;
        break;
      case C.Cjk:
        if (!flush(i)) return;
        // Compatibility ideographs decompose under NFD (step 4 applies to every token).
        if (
          !emit(
            cp >= 0xf900 && (cp <= 0xfaff || cp >= 0x2f800)
              ? text.slice(i, i + width).normalize("NFD")
              : text.slice(i, i + width),
          )
        )
          return;
        break;
      default:
        if (tokStart < 0) tokStart = i;
        if (c !== C.Ascii && c !== C.Punct) allAscii = false;
        else if (c === C.Punct && cp >= 0x80) allAscii = false;
        if (dirty) pieces += text.slice(i, i + width);
    }
    i += width;
  }
  flush(n);
}

/** Steps 4–5 for one whitespace token; false when `emit` asked to stop. */
function emitToken(raw: string, allAscii: boolean, emit: (word: string) => boolean): boolean {
  let tok: string;
  if (allAscii) {
    tok = raw.toLowerCase();
  } else {
    tok = raw.toLowerCase().normalize("NFD").replace(MN_RE, "");
  }
  // Split on punctuation (classes computed on the lowercased, accent-stripped characters).
  const n = tok.length;
  let start = 0;
  let i = 0;
  while (i < n) {
    // a surrogate pair is one code point of two UTF-16 units; a lone surrogate stands for itself
    const cp = tok.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    const c = cp < 0x80 ? asciiClass(cp) : classOf(cp);
    if (c === C.Punct) {
      if (i > start && !emit(tok.slice(start, i))) return false;
      if (!emit(tok.slice(i, i + width))) return false;
      start = i + width;
    } else if (c === C.Space) {
      // Not produced by lowercasing/NFD in practice; kept for exactness with the final split.
      if (i > start && !emit(tok.slice(start, i))) return false;
      start = i + width;
    }
    i += width;
  }
  if (start < n) return emit(start === 0 ? tok : tok.slice(start));
  return true;
}

/** BasicTokenizer alone (no vocabulary): the words WordPiece would receive. */
export function basicTokenize(text: string): string[] {
  const out: string[] = [];
  scanText(text, (w) => {
    out.push(w);
    return true;
  });
  return out;
}

/** Whether a (single-character) basic token is a CJK ideograph. */
export function isCjkToken(word: string): boolean {
  const cp = word.codePointAt(0);
  return cp !== undefined && word.length === (cp > 0xffff ? 2 : 1) && isCjk(cp);
}

const asciiTable = (() => {
  const t = new Uint8Array(128);
  for (let cp = 0; cp < 128; cp++) t[cp] = classify(cp);
  return t;
})();

function asciiClass(cp: number): C {
  return asciiTable[cp] as C;
}

function checkContextLength(L: number): void {
  if (!Number.isInteger(L) || L < 2) throw new RangeError(`context length must be an integer ≥ 2, got ${L}`);
}
