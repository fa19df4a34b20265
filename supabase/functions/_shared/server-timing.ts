/**
 * The `Server-Timing` response header (W3C Server Timing): where a request's time went inside the
 * function, phase by phase, for operators (browsers' devtools show it) and for `npm run bench:edge`,
 * which adds them up against the same read as direct SQL. Only names and milliseconds: nothing
 * about the caller or the data.
 */
export class ServerTiming {
  readonly #startedAt: number;
  #last: number;
  readonly #phases: [string, number][] = [];

  constructor(startedAt = performance.now()) {
    this.#startedAt = startedAt;
    this.#last = startedAt;
  }

  /** Ends the phase `name` now: it lasted since the previous mark (or the start). */
  mark(name: string): void {
    const now = performance.now();
    this.#phases.push([name, now - this.#last]);
    this.#last = now;
  }

  /** Milliseconds since the start, to a tenth. */
  elapsedMs(): number {
    return Math.round((performance.now() - this.#startedAt) * 10) / 10;
  }

  /** The header's value: every phase so far, then `total` (the function's whole time). */
  header(): string {
    const entry = (name: string, ms: number) => `${name};dur=${ms.toFixed(2)}`;
    return [...this.#phases.map(([name, ms]) => entry(name, ms)), entry("total", performance.now() - this.#startedAt)].join(", ");
  }
}
