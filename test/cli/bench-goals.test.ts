// The benchmark's goals as a table (scripts/lib/bench/goals.ts: GOALS and PROMISES, one object per
// goal) judged by one evaluator (scripts/lib/bench/goal-table.ts), fed the measured figures of the
// published runs (docs/benchmarks/sized.json and literal.json, `npm run bench -- --publish`).
// Covers: the table gives every published goal and promise back word for word (id, goal, verdict,
// measured, why); a run that misses one goal (the swap held its lock 250 ms) has that goal reported
// missed, with its figure and the reason, and no other verdict changed; a goal with two targets is
// missed when only the second one is (app errors with short waits); a figure that is not a number
// (NaN, or the Infinity of a minimum over no runs) is missed, never met; a section that did not run
// leaves its goals "not measured". Repeated runs (--runs): every goal judged on the median of its
// figures, with their spread and the runs that met it; the report's body from the median runs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { evaluateRuns, median } from "../../scripts/lib/bench/goal-table.ts";
import { evaluateGoals, evaluatePromises, GOALS, PROMISES, type ResultSoFar } from "../../scripts/lib/bench/goals.ts";
import { composeRuns, medianBy } from "../../scripts/lib/bench/runs.ts";
import type { BenchResult, GoalResult } from "../../scripts/lib/bench/types.ts";

const published = (name: string): BenchResult =>
  JSON.parse(readFileSync(join(REPO_ROOT, "docs", "benchmarks", `${name}.json`), "utf8")) as BenchResult;

/** The measured part of a published result: what the evaluator is fed. */
function measured(name: string): ResultSoFar {
  const { goals: _g, promises: _p, findings: _f, runGoals: _rg, measuredRuns: _m, ...partial } = published(name);
  return structuredClone(partial);
}

/** A published result's runs (one, or each of --runs N): what evaluateRuns is fed. */
function measuredRunsOf(name: string): ResultSoFar[] {
  const { measuredRuns } = published(name);
  const partial = measured(name);
  return measuredRuns?.length ? measuredRuns.map((m) => structuredClone({ ...partial, ...m })) : [partial];
}

const verdicts = (goals: GoalResult[]) => Object.fromEntries(goals.map((g) => [g.id, g.status]));
const byId = (goals: GoalResult[], id: string) => goals.find((g) => g.id === id);

describe("the bench's goal table", () => {
  it.each(["sized", "literal"])("gives %s.json's goals and promises back word for word (judged on the median of its runs when it has several)", (name) => {
    const saved = published(name);
    const runs = measuredRunsOf(name);
    expect(evaluateRuns(GOALS, runs)).toEqual(saved.goals);
    expect(evaluateRuns(PROMISES, runs)).toEqual(saved.promises);
    expect(GOALS.map((g) => g.id)).toEqual(saved.goals.map((g) => g.id));
    // a single run is judged as evaluateGoals judges it
    if (runs.length === 1) expect(evaluateGoals(runs[0]!)).toEqual(saved.goals);
  });

  it("reports a goal the run missed as missed, with its figure and why, and changes no other verdict", () => {
    const r = measured("sized");
    const before = evaluateGoals(r);
    expect(byId(before, "swap_hold")?.status).toBe("met");
    const online = r.migration.online as { swapLockMs: number };
    online.swapLockMs = 250;
    const after = evaluateGoals(r);
    expect(byId(after, "swap_hold")).toMatchObject({
      status: "missed",
      measured: "250 ms (1 attempt; 1 leaves in the gasifier_observations tree)",
      reason: expect.stringMatching(/^swap_tables' catalog work under the lock .* on a tree of \d+ leaves/),
    });
    expect({ ...verdicts(after), swap_hold: "met" }).toEqual(verdicts(before));
  });

  it("misses a goal with two targets when only the second one is missed", () => {
    const r = measured("sized");
    const app = r.migration.app!;
    expect(app.maxWaitMs).toBeLessThan(1000);
    app.errors = 2;
    app.firstError = "deadlock detected";
    expect(byId(evaluateGoals(r), "app_wait")).toMatchObject({
      status: "missed", reason: "2 app statements failed (first: deadlock detected).",
    });
  });

  it("misses a goal whose figure is not a finite number, and leaves the goals of a section not run unmeasured", () => {
    const r = measured("sized");
    (r.migration.online as { swapLockMs: number }).swapLockMs = Number.NaN;
    expect(byId(evaluateGoals(r), "swap_hold")?.status).toBe("missed");
    // no durable insert run: the worst share of none is Infinity, which is no measurement
    r.inserts!.shares = r.inserts!.shares.filter((s) => s.commit !== "durable");
    expect(byId(evaluateGoals(r), "insert_share")?.status).toBe("missed");
    r.migration.status = "skipped";
    r.maintenance = null;
    const goals = evaluateGoals(r);
    for (const id of ["swap_hold", "rollback_hold", "app_wait", "backfill_share"]) {
      expect(byId(goals, id)).toMatchObject({ status: "not measured", measured: "–", reason: "migration section not run" });
    }
    expect(byId(goals, "maintenance")).toMatchObject({ status: "not measured", reason: "maintenance section not run" });
  });
});

describe("goals judged on repeated runs (npm run bench -- --runs N)", () => {
  const withSwap = (ms: number): ResultSoFar => {
    const r = measured("sized");
    (r.migration.online as { swapLockMs: number }).swapLockMs = ms;
    return r;
  };

  it("judges the median of the runs: one slow run of three does not miss the goal, and the spread and the runs met are reported", () => {
    const goals = evaluateRuns(GOALS, [withSwap(30), withSwap(250), withSwap(40)]);
    expect(byId(goals, "swap_hold")).toMatchObject({
      status: "met",
      measured: "40.0 ms (1 attempt; 1 leaves in the gasifier_observations tree) (median of 3 runs; lockMs 30–250; met in 2 of 3)",
      runs: { n: 3, met: 2 },
    });
  });

  it("misses a goal the median misses, worded from the median run, even when one run met it", () => {
    const goals = evaluateRuns(GOALS, [withSwap(260), withSwap(30), withSwap(250)]);
    expect(byId(goals, "swap_hold")).toMatchObject({ status: "missed", runs: { n: 3, met: 1 } });
    expect(byId(goals, "swap_hold")?.measured).toMatch(/^250 ms .*\(median of 3 runs; lockMs 30–260; met in 1 of 3\)$/);
  });

  it("gives one run's verdicts unchanged, and the median of an even count is the middle two's mean", () => {
    const one = measured("sized");
    expect(evaluateRuns(GOALS, [one])).toEqual(evaluateGoals(one));
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
    expect(medianBy([{ k: 3 }, { k: 1 }, { k: 2 }], (x) => x.k)).toEqual({ k: 2 });
  });

  it("composes the report's tables from the median run of each variant and section", () => {
    const runs = [40, 20, 30].map((ms) => {
      const r = measured("sized");
      const v = r.queries.find((q) => q.id === "fetch_by_id")!.variants.find((x) => x.id === "partitioned")!;
      v.timings = { ...v.timings, median: ms };
      r.maintenance = { ...r.maintenance!, seconds: ms / 10 };
      return r;
    });
    const body = composeRuns(runs);
    expect(body.queries.find((q) => q.id === "fetch_by_id")!.variants.find((x) => x.id === "partitioned")!.timings.median).toBe(30);
    expect(body.maintenance?.seconds).toBe(3);
  });
});
