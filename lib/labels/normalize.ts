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
  /** Replacement UTF-16 unit for each BMP unit (0: none). */
  map: Uint16Array;
  /** Every mapped character, for the offset-keeping slow path. */
  other: Map<string, string>;
}

const cache = new Map<number, string>();

/** Compile a character map (`{"視": "视"}`); keys and values are single BMP characters. */
export function charTable(map: Readonly<Record<string, string>>): CharTable {
  const out = new Uint16Array(0x10000);
  const other = new Map<string, string>();
  for (const [from, to] of Object.entries(map)) {
    out[from.charCodeAt(0)] = to.charCodeAt(0);
    other.set(from, to);
  }
  return { map: out, other };
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
  const o = table?.other.get(ch);
  return o !== undefined ? o : mapChar(cp, ch);
}

/** Per UTF-16 unit: the unit it normalises to, -2 when it changes length (or is a surrogate), -1 not yet known. */
const UNIT = new Int32Array(0x10000).fill(-1);

function unitOf(c: number): number {
  let m = UNIT[c] as number;
  if (m === -1) {
    if (c >= 0xd800 && c <= 0xdfff) m = -2;
    else {
      const s = mapChar(c, String.fromCharCode(c));
      m = s.length === 1 ? s.charCodeAt(0) : -2;
    }
    UNIT[c] = m;
  }
  return m;
}

let scratch = new Uint16Array(1024);

/** UTF-16 code units to a string: TextDecoder on little-endian machines (twice as fast), else fromCharCode. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf16 = new TextDecoder("utf-16le");

function decode(buf: Uint16Array, n: number): string {
  if (LITTLE_ENDIAN) return utf16.decode(buf.subarray(0, n));
  const parts: string[] = [];
  for (let i = 0; i < n; i += 8192)
    parts.push(String.fromCharCode.apply(null, buf.subarray(i, Math.min(n, i + 8192)) as unknown as number[]));
  return parts.join("");
}

/** Normalise a report (or a term). `table`: the rules' character table, if any. */
export function normalizeReport(text: string, table: CharTable | null = null): NormalizedText {
  const n = text.length;
  if (scratch.length < n) scratch = new Uint16Array(Math.max(n, scratch.length * 2));
  const buf = scratch;
  const over = table?.map ?? null;
  let changed = false;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    let m = over === null ? 0 : (over[c] as number);
    if (m === 0) {
      m = UNIT[c] as number;
      if (m < 0) m = unitOf(c);
      // A character that changes length (Ⅳ → iv, a surrogate pair): the offset-keeping path.
      if (m === -2) return normalizeWithOffsets(text, table);
    }
    buf[i] = m;
    if (m !== c) changed = true;
  }
  return { text: changed ? decode(buf, n) : text, start: null, end: null };
}

/** The slow path: some character changes length (Ⅱ → ii); each output unit keeps its original span. */
function normalizeWithOffsets(text: string, table: CharTable | null): NormalizedText {
  const n = text.length;
  let out = new Uint16Array(n + 16);
  let starts = new Int32Array(n + 16);
  let ends = new Int32Array(n + 16);
  let o = 0;
  const put = (unit: number, from: number, to: number): void => {
    if (o === out.length) {
      const size = out.length * 2;
      const a = new Uint16Array(size);
      a.set(out);
      out = a;
      const b = new Int32Array(size);
      b.set(starts);
      starts = b;
      const e = new Int32Array(size);
      e.set(ends);
      ends = e;
    }
    out[o] = unit;
    starts[o] = from;
    ends[o++] = to;
  };
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    let m = table === null ? 0 : (table.map[c] as number);
    if (m === 0) m = (UNIT[c] as number) >= 0 ? (UNIT[c] as number) : unitOf(c);
    if (m >= 0) {
      put(m, i, i + 1);
      continue;
    }
    let width = 1;
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = (c - 0xd800) * 0x400 + (lo - 0xdc00) + 0x10000;
        width = 2;
      }
    }
    const mapped = mapOne(cp, text.slice(i, i + width), table);
    for (let k = 0; k < mapped.length; k++) put(mapped.charCodeAt(k), i, i + width);
    i += width - 1;
  }
  return { text: decode(out, o), start: starts.slice(0, o), end: ends.slice(0, o) };
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
