// A goal table and the one evaluator that walks it. Each goal is one object: what it measures and
// its target (`goal`, `targets`), the figures it is judged on, taken from a run's measured result
// (`figures`), and what the report says of it (`measured`, and `missed`: why it fell short, in the
// run's own numbers). The evaluator judges every goal the same way: met when each target's figure
// is a finite number within its bound, missed otherwise; a goal whose section did not run is "not
// measured", one whose measurement failed is missed with the failure as its reason.
import type { GoalResult } from "./types.ts";

/** One bound on one figure: `atMost` (≤) or `atLeast` (≥). */
export interface Target { figure: string; atMost?: number; atLeast?: number }

/** Why a goal cannot be judged on numbers: its section did not run, or its measurement failed. */
export type Unjudged = { unjudged: "not measured"; reason: string } | { unjudged: "failed"; reason: string; measured: string };
export const notMeasured = (reason: string): Unjudged => ({ unjudged: "not measured", reason });
/** Missed without figures: `measured` says what was measured instead ("failed" by default). */
export const failed = (reason: string, measured = "failed"): Unjudged => ({ unjudged: "failed", reason, measured });
export const isUnjudged = (x: object): x is Unjudged => typeof (x as { unjudged?: unknown }).unjudged === "string";

export type Figures = Record<string, number>;

export interface Goal<R> {
  id: string;
  /** what it measures and its target, in words (the report's "Goal" column) */
  goal: string | ((r: R) => string);
  /** the bounds every one of which the figures must meet */
  targets: Target[];
  /** the figures the targets name, from the measured result; or why there are none */
  figures: (r: R) => Figures | Unjudged;
  /** the measured figures in words (the report's "Measured" column) */
  measured: (r: R, f: Figures) => string;
  /** the message when missed: why, in this run's numbers (the report's "Why" column) */
  missed: (r: R, f: Figures) => string;
}

const within = (t: Target, value: number | undefined): boolean =>
  value !== undefined && Number.isFinite(value) &&
  (t.atMost === undefined || value <= t.atMost) && (t.atLeast === undefined || value >= t.atLeast);

/** Whether figures meet every target of a goal (a figure that is missing or not finite meets none). */
export const meets = (targets: Target[], f: Figures): boolean => targets.every((t) => within(t, f[t.figure]));

/** The median of the finite values (the mean of the middle two for an even count); NaN for none. */
export function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const round3 = (x: number) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en-US") : Number(x.toPrecision(3)).toString());

/**
 * Every goal judged on repeated runs of the same measurements: on the median of each figure
 * across the runs (one noisy run flips no verdict), with the spread (min–max) of the figures and in
 * how many runs the goal was met, so a goal that holds only sometimes says so. One run: evaluate().
 */
export function evaluateRuns<R>(table: readonly Goal<R>[], runs: readonly R[]): GoalResult[] {
  if (runs.length === 0) throw new Error("evaluateRuns: no runs");
  if (runs.length === 1) return evaluate(table, runs[0]!);
  return table.map((g) => {
    const per = runs.map((r) => ({ r, f: g.figures(r) }));
    const judged = per.filter((x): x is { r: R; f: Figures } => !isUnjudged(x.f));
    if (!judged.length) return evaluate([g], runs[0]!)[0]!;
    const names = [...new Set(g.targets.map((t) => t.figure).concat(judged.flatMap((x) => Object.keys(x.f))))];
    const mid: Figures = Object.fromEntries(names.map((n) => [n, median(judged.map((x) => x.f[n] ?? Number.NaN))]));
    // the run nearest the median on the first target's figure words the measurement and the reason
    const key = g.targets[0]?.figure ?? names[0] ?? "";
    const nearest = judged.reduce((a, b) => (Math.abs((b.f[key] ?? Infinity) - (mid[key] ?? 0)) < Math.abs((a.f[key] ?? Infinity) - (mid[key] ?? 0)) ? b : a));
    const met = meets(g.targets, mid);
    const metIn = judged.filter((x) => meets(g.targets, x.f)).length;
    const spread = g.targets.map((t) => {
      const v = judged.map((x) => x.f[t.figure] ?? Number.NaN).filter(Number.isFinite);
      return v.length ? `${t.figure} ${round3(Math.min(...v))}–${round3(Math.max(...v))}` : `${t.figure} not finite`;
    }).join(", ");
    const goal = typeof g.goal === "string" ? g.goal : g.goal(nearest.r);
    const failedRuns = runs.length - judged.length;
    return {
      id: g.id, goal, status: met ? "met" : "missed",
      measured: `${g.measured(nearest.r, mid)} (median of ${judged.length} runs; ${spread}; met in ${metIn} of ${runs.length}${failedRuns ? `, ${failedRuns} not measured` : ""})`,
      reason: met ? "" : g.missed(nearest.r, mid),
      runs: { n: runs.length, met: metIn },
    };
  });
}

/** Every goal of the table, judged on one measured result, in the table's order. */
export function evaluate<R>(table: readonly Goal<R>[], r: R): GoalResult[] {
  return table.map((g) => {
    const goal = typeof g.goal === "string" ? g.goal : g.goal(r);
    const f = g.figures(r);
    if (isUnjudged(f)) {
      return f.unjudged === "failed"
        ? { id: g.id, goal, status: "missed", measured: f.measured, reason: f.reason }
        : { id: g.id, goal, status: "not measured", measured: "–", reason: f.reason };
    }
    const met = meets(g.targets, f);
    return { id: g.id, goal, status: met ? "met" : "missed", measured: g.measured(r, f), reason: met ? "" : g.missed(r, f) };
  });
}
