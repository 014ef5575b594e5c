/**
 * Build a WordPiece vocabulary from a report corpus, for training a text tower from scratch.
 *
 * Layout follows Chinese BERT so model code can keep its assumptions: [PAD]=0, [unused1..99],
 * [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103. Then every character seen at least `minCount`
 * times, as a word start and as a `##` continuation (CJK ideographs are always single-character
 * words, so every seen character can be encoded without [UNK]), most frequent first; then
 * multi-character WordPiece units for the Latin/number words (OD, NVE, c/d values...) learned by
 * WordPiece's merge score freq(ab) / (freq(a)·freq(b)) until the size is reached.
 * Words are the same BasicTokenizer words the released tokenizer produces, so a built vocabulary
 * tokenizes with `BertTokenizer` unchanged.
 */
import { basicTokenize, isCjkToken } from "./tokenizer.js";
import { Vocab } from "./vocab.js";

export interface VocabBuildOptions {
  /** Total vocabulary size, specials included (default 8000). */
  size?: number;
  /** Characters and merges seen fewer times are left out (default 2). */
  minCount?: number;
  /** Apply the training dataset's preprocessing (lowercase, curly quotes) first (default true). */
  preprocess?: boolean;
}

export const RESERVED_PREFIX = [
  "[PAD]",
  ...Array.from({ length: 99 }, (_, i) => `[unused${i + 1}]`),
  "[UNK]",
  "[CLS]",
  "[SEP]",
  "[MASK]",
];

/** Counts of BasicTokenizer words over a corpus (feed texts one by one, then `build`). */
export class VocabBuilder {
  private readonly words = new Map<string, number>();
  private texts = 0;

  add(text: string): void {
    this.texts++;
    for (const w of basicTokenize(text)) this.words.set(w, (this.words.get(w) ?? 0) + 1);
  }

  get textCount(): number {
    return this.texts;
  }

  build(options: VocabBuildOptions = {}): Vocab {
    const size = options.size ?? 8000;
    const minCount = options.minCount ?? 2;
    if (!Number.isInteger(size) || size < RESERVED_PREFIX.length + 1)
      throw new RangeError(`vocabulary size must be an integer > ${RESERVED_PREFIX.length}, got ${size}`);
    if (!Number.isInteger(minCount) || minCount < 1)
      throw new RangeError(`min count must be an integer ≥ 1, got ${minCount}`);

    // Character alphabet: word-initial and continuation forms.
    const initial = new Map<string, number>();
    const cont = new Map<string, number>();
    const splits: { syms: string[]; count: number }[] = [];
    for (const [w, c] of this.words) {
      const chars = Array.from(w);
      chars.forEach((ch, i) => {
        const m = i === 0 ? initial : cont;
        m.set(ch, (m.get(ch) ?? 0) + c);
      });
      if (!isCjkToken(w) && chars.length > 1)
        splits.push({ syms: chars.map((ch, i) => (i === 0 ? ch : "##" + ch)), count: c });
    }
    const byFreq = (m: Map<string, number>): [string, number][] =>
      [...m].filter(([, c]) => c >= minCount).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const tokens: string[] = [...RESERVED_PREFIX];
    const have = new Set(tokens);
    const push = (t: string): boolean => {
      if (tokens.length >= size || have.has(t)) return false;
      tokens.push(t);
      have.add(t);
      return true;
    };
    for (const [ch] of byFreq(initial)) push(ch);
    // A CJK character is always a word of its own; its ## form helps only whole-word masking
    // models, so continuation forms of CJK characters come after the Latin ones.
    const contList = byFreq(cont);
    for (const [ch] of contList) push("##" + ch);
    for (const [ch] of byFreq(initial)) if (isCjkToken(ch)) push("##" + ch);

    // WordPiece merges over the multi-character non-CJK words.
    while (tokens.length < size) {
      const pair = new Map<string, number>();
      const unit = new Map<string, number>();
      for (const { syms, count } of splits) {
        for (let i = 0; i < syms.length; i++) {
          unit.set(syms[i] as string, (unit.get(syms[i] as string) ?? 0) + count);
          if (i + 1 < syms.length) {
            const key = (syms[i] as string) + "\u0000" + (syms[i + 1] as string);
            pair.set(key, (pair.get(key) ?? 0) + count);
          }
        }
      }
      let bestKey = "";
      let bestScore = -1;
      for (const [key, c] of pair) {
        if (c < minCount) continue;
        const [a, b] = key.split("\u0000") as [string, string];
        const score = c / ((unit.get(a) ?? 1) * (unit.get(b) ?? 1));
        if (score > bestScore || (score === bestScore && key < bestKey)) {
          bestScore = score;
          bestKey = key;
        }
      }
      if (bestScore < 0) break;
      const [a, b] = bestKey.split("\u0000") as [string, string];
      const merged = a + (b.startsWith("##") ? b.slice(2) : b);
      for (const s of splits) {
        const out: string[] = [];
        for (let i = 0; i < s.syms.length; i++) {
          if (i + 1 < s.syms.length && s.syms[i] === a && s.syms[i + 1] === b) {
            out.push(merged);
            i++;
          } else out.push(s.syms[i] as string);
        }
        s.syms = out;
      }
      push(merged);
    }
    return new Vocab(tokens);
  }
}

/** Build a vocabulary from texts in one call. */
export function buildVocab(texts: Iterable<string>, options?: VocabBuildOptions): Vocab {
  const b = new VocabBuilder();
  for (const t of texts)
    b.add(options?.preprocess === false ? t : t.toLowerCase().replaceAll("\u201c", '"').replaceAll("\u201d", '"'));
  return b.build(options);
}
