// Summary statistics of repeated timings. Nearest-rank percentiles: with few repetitions an
// interpolated p95 would invent values that were never measured.

export interface Summary {
  n: number;
  median: number;
  p95: number;
  mean: number;
  min: number;
  max: number;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1] ?? Number.NaN;
}

/** The largest value, or `floor` for none; a loop, since Math.max(...values) overflows the stack on a long migration's hundreds of thousands of app statements. */
export function maxOf(values: Iterable<number>, floor = 0): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) return { n: 0, median: Number.NaN, p95: Number.NaN, mean: Number.NaN, min: Number.NaN, max: Number.NaN };
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
  return {
    n: s.length,
    median,
    p95: percentile(s, 95),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
  };
}

/** How many times faster `candidate` is than `baseline` (baseline median / candidate median). */
export function speedup(baseline: Summary | undefined, candidate: Summary | undefined): number | null {
  if (!baseline || !candidate || !(candidate.median > 0) || !(baseline.median > 0)) return null;
  return baseline.median / candidate.median;
}

/** 0.0123 -> "0.012", 12.3 -> "12.3", 1234 -> "1,234" */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms >= 100) return Math.round(ms).toLocaleString("en-US");
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

/** speed ratio as "123×", "4.5×", "0.42×" */
export function fmtRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return "–";
  if (r >= 100) return `${Math.round(r).toLocaleString("en-US")}×`;
  if (r >= 10) return `${r.toFixed(0)}×`;
  if (r >= 1) return `${r.toFixed(1)}×`;
  return `${r.toFixed(2)}×`;
}

export function fmtInt(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

export function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  return `${m} min ${String(s).padStart(2, "0")} s`;
}

/** "N changed groups" and, where the result has it, the rows they held after the writes and their day. */
export function fmtChangedGroups(d: { dirtyGroups: number; groupRows?: number; day?: string }): string {
  return `${fmtInt(d.dirtyGroups)} changed groups${d.groupRows !== undefined ? ` of ${fmtInt(d.groupRows)} rows` : ""}${d.day ? ` on ${d.day}` : ""}`;
}
