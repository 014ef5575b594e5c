/**
 * Report text normalisation for matching: NFKC per character (full-width letters, digits and
 * punctuation to ASCII, Roman numerals to letters), lowercase, circled/parenthesised list numbers
 * to line breaks, and an optional one-to-one character table from the rules file (traditional
 * characters and variant forms to the simplified form the terms are written in: 視→视, 浑→混).
 * Offsets back into the original text are kept so every evidence span points at what the
 * clinician wrote.
 */

export interface NormalizedText {
  /** The normalised text. */
  text: string;
  /** Original UTF-16 offset where normalised unit k starts / ends; null when offsets are identical. */
  start: Int32Array | null;
  end: Int32Array | null;
}

/** A compiled character table: one BMP character to one BMP character. */
export interface CharTable {
  /** Replacement for each code unit of the CJK block U+4E00..U+9FFF (0: none). */
  cjk: Uint16Array;
  /** Every mapped character, for characters outside the CJK block. */
  other: Map<string, string>;
  /** Matches the characters that need mapping (ASCII upper case, non-ASCII non-CJK, mapped CJK). */
  special: RegExp;
}

const cache = new Map<number, string>();
const SPECIAL_SRC = "[A-Z]|[^\\u0000-\\u007f\\u4e00-\\u9fff\\u3001\\u3002]";
/** Characters that need mapping without a table: upper-case ASCII and everything outside ASCII, CJK, 。 and 、. */
const SPECIAL_RE = new RegExp(SPECIAL_SRC, "gu");

function escapeClass(ch: string): string {
  return /[\\\]^-]/.test(ch) ? `\\${ch}` : ch;
}

/** Compile a character map (`{"視": "视"}`); keys and values are single BMP characters. */
export function charTable(map: Readonly<Record<string, string>>): CharTable {
  const cjk = new Uint16Array(0x9fff - 0x4e00 + 1);
  const other = new Map<string, string>();
  const cls: string[] = [];
  for (const [from, to] of Object.entries(map)) {
    const c = from.charCodeAt(0);
    if (c >= 0x4e00 && c <= 0x9fff) {
      cjk[c - 0x4e00] = to.charCodeAt(0);
      cls.push(escapeClass(from));
    } else other.set(from, to);
  }
  const src = cls.length > 0 ? `${SPECIAL_SRC}|[${cls.join("")}]` : SPECIAL_SRC;
  return { cjk, other, special: new RegExp(src, "gu") };
}

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

function mapOne(cp: number, ch: string, table: CharTable | null): string {
  if (table !== null) {
    if (cp >= 0x4e00 && cp <= 0x9fff) {
      const r = table.cjk[cp - 0x4e00] as number;
      if (r !== 0) return String.fromCharCode(r);
      return ch;
    }
    const o = table.other.get(ch);
    if (o !== undefined) return o;
  }
  return mapChar(cp, ch);
}

/** True when the text is ASCII, CJK ideographs (none of them mapped), 。 and 、 only. */
function isSimple(text: string, table: CharTable | null): boolean {
  const cjk = table?.cjk ?? null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80 || c === 0x3002 || c === 0x3001) continue;
    if (c >= 0x4e00 && c <= 0x9fff) {
      if (cjk !== null && cjk[c - 0x4e00] !== 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

/** Normalise a report (or a term). `table`: the rules' character table, if any. */
export function normalizeReport(text: string, table: CharTable | null = null): NormalizedText {
  if (isSimple(text, table)) return { text: text.toLowerCase(), start: null, end: null };

  // Common case: every character maps to the same number of UTF-16 units (，→, ：→: （→( 視→视 ...).
  let sameLength = true;
  const replaced = text.replace(table?.special ?? SPECIAL_RE, (ch: string) => {
    const m = mapOne(ch.codePointAt(0) as number, ch, table);
    if (m.length !== ch.length) sameLength = false;
    return m;
  });
  if (sameLength) return { text: replaced, start: null, end: null };
  return normalizeWithOffsets(text, table);
}

function normalizeWithOffsets(text: string, table: CharTable | null): NormalizedText {
  const n = text.length;
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
    } else if (c === 0x3002 || c === 0x3001) {
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
      m = mapOne(cp, text.slice(i, i + width), table);
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
