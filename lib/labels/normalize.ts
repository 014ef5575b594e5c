/**
 * Report text normalisation for matching: NFKC per character (full-width letters, digits and
 * punctuation to ASCII, Roman numerals to letters), lowercase, circled/parenthesised list numbers
 * to line breaks. Offsets back into the original text are kept so every evidence span points at
 * what the clinician wrote.
 */

export interface NormalizedText {
  /** The normalised text. */
  text: string;
  /** Original UTF-16 offset where normalised unit k starts / ends; null when offsets are identical. */
  start: Int32Array | null;
  end: Int32Array | null;
}

const cache = new Map<number, string>();
/** Characters that need mapping: upper-case ASCII and everything outside ASCII, CJK, 。 and 、. */
const SPECIAL_RE = /[A-Z]|[^\u0000-\u007f\u4e00-\u9fff\u3001\u3002]/gu;

function mapChar(cp: number, ch: string): string {
  let m = cache.get(cp);
  if (m === undefined) {
    // ①..⑳, ⑴..⒇, ⒈..⒛: list numbers start a new clause.
    if (cp >= 0x2460 && cp <= 0x249b) m = "\n";
    else m = ch.normalize("NFKC").toLowerCase();
    if (cache.size < 100_000) cache.set(cp, m);
  }
  return m;
}

export function normalizeReport(text: string): NormalizedText {
  const n = text.length;
  // Fast path: ASCII and CJK unified ideographs only.
  let simple = true;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80 && !(c >= 0x4e00 && c <= 0x9fff) && c !== 0x3002 && c !== 0x3001) {
      simple = false;
      break;
    }
  }
  if (simple) return { text: text.toLowerCase(), start: null, end: null };

  // Common case: every character maps to the same number of UTF-16 units (，→, ：→: （→( ...).
  let sameLength = true;
  const replaced = text.replace(SPECIAL_RE, (ch: string) => {
    const m = mapChar(ch.codePointAt(0) as number, ch);
    if (m.length !== ch.length) sameLength = false;
    return m;
  });
  if (sameLength) return { text: replaced, start: null, end: null };

  const parts: string[] = [];
  let starts: number[] | null = null;
  let ends: number[] | null = null;
  let outLen = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    let width = 1;
    let m: string;
    if (c < 0x80) {
      m = c >= 65 && c <= 90 ? String.fromCharCode(c + 32) : (text[i] as string);
    } else if ((c >= 0x4e00 && c <= 0x9fff) || c === 0x3002 || c === 0x3001) {
      m = text[i] as string;
    } else {
      let cp = c;
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const lo = text.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = (c - 0xd800) * 0x400 + (lo - 0xdc00) + 0x10000;
          width = 2;
        }
      }
      m = mapChar(cp, text.slice(i, i + width));
    }
    if (starts === null && m.length !== width) {
      // First length change: materialise the identity offsets so far.
      starts = [];
      ends = [];
      for (let k = 0; k < outLen; k++) {
        starts.push(k);
        ends.push(k + 1);
      }
    }
    if (starts !== null && ends !== null) {
      for (let k = 0; k < m.length; k++) {
        starts.push(i);
        ends.push(i + width);
      }
    }
    parts.push(m);
    outLen += m.length;
    i += width;
  }
  return {
    text: parts.join(""),
    start: starts ? Int32Array.from(starts) : null,
    end: ends ? Int32Array.from(ends) : null,
  };
}

/** The original [start, end) of the normalised span [s, e). */
export function originalSpan(nt: NormalizedText, s: number, e: number): [number, number] {
  if (!nt.start || !nt.end) return [s, e];
  if (e <= s) {
    const p =
      s < nt.start.length ? (nt.start[s] as number) : nt.end.length > 0 ? (nt.end[nt.end.length - 1] as number) : 0;
    return [p, p];
  }
  return [nt.start[s] as number, nt.end[e - 1] as number];
}
