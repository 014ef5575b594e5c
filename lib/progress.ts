/**
 * The one progress renderer of vilref: every long loop (embedding, an evaluation's encoding,
 * training, segmentation, fine-tuning, data checks) reports through it.
 *
 *   const p = progress({ total: n, label: "embed", unit: "img" });
 *   for (...) { ...; p.tick(batch); p.status(`loss ${loss.toFixed(4)}`); }
 *   p.done();
 *
 * On a terminal it redraws one line (bar, count, rate, ETA, status) cut to the terminal's width.
 * Anywhere else (a log file, a pipe, CI) it writes a plain line at the first tick, then at most one
 * every `interval` seconds, and a summary at `done()`: never a carriage return. `enabled: false`
 * (the commands' --no-progress) silences the bar; `log()` lines are still written.
 *
 * Hand-written: the npm progress bars (progress, cli-progress) redraw on a TTY only and print
 * nothing (or control codes) into logs, and none takes an injectable clock for tests.
 */

/** Where the renderer writes: process.stderr, or a fake in tests. */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Units expected in all (resumed ones included); omit when unknown (no bar, no ETA). */
  total?: number;
  /** What is running, first on the line ("embed", "zeroshot: encoding images"). */
  label?: string;
  /** The unit counted ("img", "step"; default "it"). */
  unit?: string;
  /** Units finished before this run (resumed work): counted in the position, not in the rate. */
  already?: number;
  /** Default: process.stderr. */
  stream?: ProgressStream;
  /** Milliseconds (default performance.now); tests pass a fake clock. */
  clock?: () => number;
  /** Seconds between plain lines when the stream is not a terminal (default 5). */
  interval?: number;
  /** false: no bar and no progress lines (log lines are still written). Default true. */
  enabled?: boolean;
}

/** What library functions accept: options for the bar, or false for none. */
export type ProgressSpec = ProgressOptions | false;

export interface Progress {
  /** Units done (including `already`). */
  readonly count: number;
  /** Units per second in this run (resumed units excluded). */
  readonly rate: number;
  /** Adds n units (default 1) and redraws when due. */
  tick(n?: number): void;
  /** Text shown after the numbers from now on (loss, lr, ...). */
  status(text: string): void;
  /** A message line, written above the bar (the bar is redrawn under it on a terminal). */
  log(line: string): void;
  /** Clears the bar from a terminal line, before something else writes to the terminal. */
  clear(): void;
  /** Final line (on a terminal the bar stays, followed by a newline). Idempotent. */
  done(summary?: string): void;
}

/** m:ss or h:mm:ss; "--:--" when unknown. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "--:--";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0
    ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`
    : `${m}:${String(sec).padStart(2, "0")}`;
}

function formatRate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

/** Milliseconds between redraws of a terminal line. */
const REDRAW_MS = 100;
const BAR_MAX = 30;
const BAR_MIN = 10;

interface Parts {
  label: string;
  count: string;
  rate: string;
  eta: string;
  /** Fraction done; null when the total is unknown. */
  frac: number | null;
}

class Renderer implements Progress {
  count: number;
  readonly #o: ProgressOptions;
  readonly #stream: ProgressStream;
  readonly #clock: () => number;
  readonly #start: number;
  readonly #base: number;
  #status = "";
  #lastDraw = Number.NEGATIVE_INFINITY;
  #drawn = false;
  #finished = false;

  constructor(o: ProgressOptions) {
    this.#o = o;
    this.#stream = o.stream ?? process.stderr;
    this.#clock = o.clock ?? (() => performance.now());
    this.#start = this.#clock();
    this.#base = o.already ?? 0;
    this.count = this.#base;
  }

  get #on(): boolean {
    return this.#o.enabled !== false;
  }
  get #tty(): boolean {
    return this.#stream.isTTY === true;
  }
  get #seconds(): number {
    return (this.#clock() - this.#start) / 1000;
  }
  get rate(): number {
    const s = this.#seconds;
    return s > 0 ? (this.count - this.#base) / s : 0;
  }

  tick(n = 1): void {
    this.count += n;
    if (!this.#on || this.#finished) return;
    const now = this.#clock();
    const due = this.#tty ? REDRAW_MS : 1000 * (this.#o.interval ?? 5);
    const complete = this.#o.total !== undefined && this.count >= this.#o.total;
    if (now - this.#lastDraw >= due || (this.#tty && complete)) this.#draw(now);
  }

  status(text: string): void {
    this.#status = text;
  }

  log(line: string): void {
    this.clear();
    this.#stream.write(line + "\n");
    if (this.#tty && this.#on && !this.#finished && this.#lastDraw > Number.NEGATIVE_INFINITY)
      this.#draw(this.#clock());
  }

  clear(): void {
    if (this.#tty && this.#drawn) this.#stream.write("\r\x1b[K");
    this.#drawn = false;
  }

  done(summary?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.#on) return;
    if (this.#tty) {
      this.#stream.write(`\r${this.#fit(this.#parts(), summary)}\x1b[K\n`);
      this.#drawn = false;
    } else this.#stream.write(this.#summaryLine(summary) + "\n");
  }

  #draw(now: number): void {
    this.#lastDraw = now;
    if (this.#tty) {
      this.#stream.write(`\r${this.#fit(this.#parts())}\x1b[K`);
      this.#drawn = true;
    } else this.#stream.write(this.#plainLine() + "\n");
  }

  /** The pieces of a line: label, count (with total and percentage), rate, ETA. */
  #parts(): Parts {
    const { total, unit = "it", label = "" } = this.#o;
    const rate = this.rate;
    const known = total !== undefined && total > 0;
    const frac = known ? Math.min(1, this.count / total) : null;
    const eta = known && rate > 0 ? formatDuration(Math.max(0, total - this.count) / rate) : "--:--";
    return {
      label,
      count: known ? `${this.count}/${total} ${unit} ${(100 * frac!).toFixed(0)}%` : `${this.count} ${unit}`,
      rate: `${formatRate(rate)} ${unit}/s`,
      eta: known ? `ETA ${eta}` : formatDuration(this.#seconds),
      frac,
    };
  }

  /** A terminal line no wider than the terminal: the bar shrinks, then goes, then the status is cut. */
  #fit(p: Parts, summary?: string): string {
    const width = Math.max(20, (this.#stream.columns ?? 80) - 1);
    const tail = summary ?? this.#status;
    const fixed = [p.label, p.count, p.rate, p.eta].filter((s) => s !== "").join("  ");
    let line = fixed;
    if (p.frac !== null) {
      const room = width - fixed.length - (tail ? tail.length + 2 : 0) - 4; // brackets and a separator
      const bar = Math.min(BAR_MAX, room);
      if (bar >= BAR_MIN) {
        const full = Math.round(p.frac * bar);
        const drawn = `[${"#".repeat(full)}${"-".repeat(bar - full)}]`;
        line = [p.label, drawn, p.count, p.rate, p.eta].filter((s) => s !== "").join("  ");
      }
    }
    if (tail) line += "  " + tail;
    return line.length > width ? line.slice(0, width - 1) + "…" : line;
  }

  #plainLine(): string {
    const p = this.#parts();
    const head = p.label ? `${p.label}: ` : "";
    return `${head}${p.count}, ${p.rate}, ${p.eta}${this.#status ? `; ${this.#status}` : ""}`;
  }

  #summaryLine(summary?: string): string {
    const { label = "", unit = "it" } = this.#o;
    const head = label ? `${label}: ` : "";
    const done = this.count - this.#base;
    const resumed = this.#base > 0 ? ` (${this.#base} done before)` : "";
    const tail = summary ?? this.#status;
    return (
      `${head}${done} ${unit} in ` +
      `${formatDuration(this.#seconds)} (${formatRate(this.rate)} ${unit}/s)${resumed}${tail ? `; ${tail}` : ""}`
    );
  }
}

/** A progress renderer (see the file header). `progress(false)` is a silent one. */
export function progress(options: ProgressSpec = {}): Progress {
  return new Renderer(options === false ? { enabled: false } : options);
}
