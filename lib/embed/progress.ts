/** A one-line progress bar with rate and ETA (a line every few seconds when not a terminal). */
export interface ProgressOptions {
  label?: string;
  unit?: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Seconds between lines when the stream is not a terminal. */
  interval?: number;
}

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

export class Progress {
  readonly total: number;
  done: number;
  readonly #start = performance.now();
  readonly #base: number;
  readonly #o: Required<Omit<ProgressOptions, "stream">> & { stream: NonNullable<ProgressOptions["stream"]> };
  #lastLine = 0;

  /** `already`: units finished before this run (resumed work), not counted in the rate. */
  constructor(total: number, already = 0, options: ProgressOptions = {}) {
    this.total = total;
    this.done = already;
    this.#base = already;
    this.#o = {
      label: options.label ?? "",
      unit: options.unit ?? "it",
      stream: options.stream ?? process.stderr,
      interval: options.interval ?? 5,
    };
  }

  /** Units per second in this run. */
  get rate(): number {
    const s = (performance.now() - this.#start) / 1000;
    return s > 0 ? (this.done - this.#base) / s : 0;
  }

  line(): string {
    const frac = this.total > 0 ? this.done / this.total : 1;
    const width = 24;
    const full = Math.round(frac * width);
    const bar = "#".repeat(full) + "-".repeat(width - full);
    const rate = this.rate;
    const eta = rate > 0 ? (this.total - this.done) / rate : Number.NaN;
    return `${this.#o.label ? this.#o.label + " " : ""}[${bar}] ${this.done}/${this.total} ${(frac * 100).toFixed(1)}% ${rate.toFixed(1)} ${this.#o.unit}/s ETA ${formatDuration(eta)}`;
  }

  tick(n = 1): void {
    this.done += n;
    const s = this.#o.stream;
    if (s.isTTY) s.write(`\r${this.line()}\x1b[K`);
    else {
      const now = performance.now();
      if (now - this.#lastLine >= this.#o.interval * 1000 || this.done >= this.total) {
        this.#lastLine = now;
        s.write(this.line() + "\n");
      }
    }
  }

  finish(): void {
    if (this.#o.stream.isTTY) this.#o.stream.write(`\r${this.line()}\x1b[K\n`);
  }
}
