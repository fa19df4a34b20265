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
