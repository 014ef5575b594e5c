/**
 * A WordPiece vocabulary: the `vocab.txt` that comes with a checkpoint (one token a line, the id is
 * the line number), loaded exactly as the released `load_vocab` does: lines end at `\n`, `\r\n` or
 * `\r` (Python's universal newlines), each line is stripped of Python whitespace, and a token that
 * appears twice keeps its last id.
 */
import { readFileSync } from "node:fs";

/** Python's `str.strip()` whitespace (`str.isspace()` code points). */
const PY_SPACE_CLASS = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP_RE = new RegExp(`^[${PY_SPACE_CLASS}]+|[${PY_SPACE_CLASS}]+$`, "g");

/** `s.strip()` with Python's definition of whitespace. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP_RE, "");
}

export const SPECIAL_TOKENS = {
  pad: "[PAD]",
  unk: "[UNK]",
  cls: "[CLS]",
  sep: "[SEP]",
  mask: "[MASK]",
} as const;

export class Vocab {
  /** token -> id (the last line wins, as in Python's dict assignment). */
  readonly tokenToId: ReadonlyMap<string, number>;
  /** id -> token, one per line of the file (stripped). */
  readonly idToToken: readonly string[];
  /** [PAD]'s id, if present. The released code pads with 0 whatever the vocabulary says. */
  readonly padId: number | undefined;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number | undefined;

  constructor(tokens: readonly string[]) {
    const map = new Map<string, number>();
    tokens.forEach((t, i) => map.set(t, i));
    this.tokenToId = map;
    this.idToToken = tokens.slice();
    const need = (name: string): number => {
      const id = map.get(name);
      if (id === undefined) throw new Error(`vocabulary has no ${name} token`);
      return id;
    };
    this.padId = map.get(SPECIAL_TOKENS.pad);
    this.unkId = need(SPECIAL_TOKENS.unk);
    this.clsId = need(SPECIAL_TOKENS.cls);
    this.sepId = need(SPECIAL_TOKENS.sep);
    this.maskId = map.get(SPECIAL_TOKENS.mask);
  }

  /** Parse the text of a vocab.txt. */
  static fromText(text: string): Vocab {
    const lines = text.split(/\r\n|\r|\n/);
    // A final newline ends the last line; it does not start an empty one (Python's readline).
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    return new Vocab(lines.map(pyStrip));
  }

  /** Load a vocab.txt from disk (UTF-8). */
  static fromFile(path: string | URL): Vocab {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new Error(`cannot read vocabulary ${String(path)}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return Vocab.fromText(text);
  }

  get size(): number {
    return this.idToToken.length;
  }

  has(token: string): boolean {
    return this.tokenToId.has(token);
  }

  /** The id of a token, or [UNK]'s id. */
  id(token: string): number {
    return this.tokenToId.get(token) ?? this.unkId;
  }

  /** The token of an id (throws on an id out of range). */
  token(id: number): string {
    const t = this.idToToken[id];
    if (t === undefined) throw new RangeError(`token id ${id} is outside the vocabulary (size ${this.size})`);
    return t;
  }

  /** The vocab.txt text: one token a line. */
  toText(): string {
    return this.idToToken.join("\n") + "\n";
  }
}
