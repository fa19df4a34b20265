// `npm run bench:scale -- --quick` end to end at two tiny scales on fresh databases of the test
// cluster (--db-url mode), then the curve report written from those results.
// Covers:
//  - each scale ran the bench with its own row count and the gasifier table grown with it (the
//    migration phases have a row count per scale);
//  - the maintenance section processed what the sections before it wrote in an untimed run, then
//    wrote the same day of writes at both scales (rows, statements, changed groups recorded) before
//    the timed run;
//  - the curve has every query class on the three tables, maintenance and every migration phase at
//    both scales, with the exponent log(cost ratio) / log(rows ratio) and the "faster than the
//    rows it touches" flag following from it and the margin;
//  - a result without a day of writes gives no maintenance point (a stale figure stays out);
//  - the settled run's second day of writes goes on a day of its own (its groups hold its rows only),
//    and so does a repeated bench's second run (--runs);
//  - the maintenance spread is judged at the goal's scales (1M, 5M, 20M) once two of them are
//    measured, the spread across every scale said beside it;
//  - the settled maintenance run: the measured one where it promoted nothing, the bench's steady
//    run (after the nights that promoted) where it did, none for a run that stopped at its budget;
//  - the push bench's JSON (the published adoption.json) gives the push and every setup step;
//  - the report lists 1M, 5M and 20M as not measured (nothing extrapolated), the chart is written,
//    and the curve's JSON, given back as an input, keeps every point.
// No timing assertions: the machine is shared and the quick scale is tiny.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMaintenance, steadyMaintenance } from "../../scripts/lib/bench/operations.ts";
import { createProgress } from "../../scripts/lib/bench/progress.ts";
import { QUERY_CLASS_IDS } from "../../scripts/lib/bench/queries.ts";
import { buildCurve, loadInput, MARGIN, type ScaleReport, scaleMarkdown, writeScaleReport } from "../../scripts/lib/bench/scale-report.ts";
import { runScales } from "../../scripts/lib/bench/scale-runs.ts";
import type { BenchResult } from "../../scripts/lib/bench/types.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { tempDir } from "../helpers/processes.ts";

const SCALES = [4_800, 9_600];

describe("npm run bench:scale -- --quick", () => {
  const dbs: FreshDb[] = [];
  let outDir: string;
  let results: BenchResult[];
  let resultFiles: string[];
  let curve: ScaleReport;
  let md: string;

  beforeAll(async () => {
    outDir = tempDir("bench-scale-");
    const files = await runScales(
      { scales: SCALES, push: false, pushPort: 0, outDir, quiet: true, bench: { quick: true, runs: 1, sections: new Set(["queries", "maintenance", "migration"]) } },
      async (rows) => {
        const db = await freshDatabase(`bench_scale_${rows}`);
        dbs.push(db);
        return db.url;
      });
    resultFiles = files.bench;
    results = files.bench.map((f) => JSON.parse(readFileSync(f, "utf8")) as BenchResult);
    const written = writeScaleReport([...files.bench, join(REPO_ROOT, "docs", "benchmarks", "adoption.json")], outDir, false);
    curve = JSON.parse(readFileSync(written.json, "utf8")) as ScaleReport;
    md = readFileSync(written.markdown, "utf8");
  }, 1_800_000);

  afterAll(async () => {
    for (const db of dbs) await db.drop();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it("ran each scale with its rows, the gasifier table grown with them, and the same day of writes", () => {
    expect(results.map((r) => r.build.rows.legacy)).toEqual(SCALES);
    const gasifier = results.map((r) => r.migration.rows ?? 0);
    expect(gasifier[1]).toBeGreaterThan(gasifier[0]!);
    for (const r of results) {
      const d = r.maintenance?.dayWrites;
      expect(r.maintenance?.error).toBeUndefined();
      expect(d?.rows).toBe(500);
      expect(d?.statements).toBe(50);
      expect(d?.dirtyGroups).toBeGreaterThan(0);
      expect(d?.dirtyEntries).toBeGreaterThanOrEqual(d!.statements);
      // the history ends with the previous month: the refresh recomputes the written rows only, not
      // a current month's rows squeezed into its elapsed days (more at the larger scale)
      expect(d?.groupRows).toBe(500);
      // a day of its own, not today's, which holds what the sections before wrote
      expect(d?.day).not.toBe(new Date().toISOString().slice(0, 10));
      expect(d?.day?.slice(0, 7)).toBe(new Date().toISOString().slice(0, 7));
      // the queries section wrote before it: an untimed run processed that first
      expect(r.maintenance?.settleSeconds).toBeGreaterThan(0);
    }
  });

  it("the settled run's second day of writes goes on a day of its own: its groups hold its rows only", async () => {
    const steady = await steadyMaintenance(dbs[0]!.url, createProgress({ quiet: true }), 500, 2);
    expect(steady.settled).toBe(true);
    expect(steady.dayWrites.dirtyGroups).toBeGreaterThan(0);
    expect(steady.dayWrites.day).not.toBe(results[0]!.maintenance!.dayWrites!.day);
    // on the first day's, the groups would hold both days' rows (1,000)
    expect(steady.dayWrites.groupRows).toBe(500);
    expect(Number.isFinite(steady.seconds)).toBe(true);
  });

  it("a repeated bench's second run writes on days of its own: its groups hold its rows only", async () => {
    const second = await runMaintenance(dbs[1]!.url, createProgress({ quiet: true }), 500, 2);
    expect(second.error).toBeUndefined();
    expect(second.dayWrites!.day).not.toBe(results[1]!.maintenance!.dayWrites!.day);
    // on the first run's day, the groups would hold both runs' rows (1,000)
    expect(second.dayWrites!.groupRows).toBe(500);
  });

  it("has every query class on the three tables, maintenance and the migration phases at both scales", () => {
    const ids = [
      ...QUERY_CLASS_IDS.flatMap((q) => ["legacy", "indexed", "partitioned"].map((t) => `query.${q}.${t}`)),
      "maintenance.run", "migration.prepare", "migration.backfill", "migration.validate", "migration.swap",
    ];
    for (const id of ids) {
      const c = curve.costs.find((x) => x.id === id);
      expect(c, id).toBeDefined();
      expect(c!.points.map((p) => p.scale), id).toEqual(SCALES);
      expect(Number.isFinite(c!.overall), id).toBe(true);
    }
    expect(curve.maintenance.points.length).toBe(2);
    expect(curve.maintenance.spread).toBeGreaterThanOrEqual(1);
    expect(curve.maintenance.at5m).toBeNull();
  });

  it("computes each exponent from the measured pair and flags what grows faster than its rows", () => {
    for (const c of curve.costs.filter((x) => x.points.length === 2)) {
      const [a, b] = c.points as [typeof c.points[0], typeof c.points[0]];
      const e = Math.log(b.value / a.value) / Math.log(b.rows / a.rows);
      expect(c.overall, c.id).toBeCloseTo(e, 9);
      expect(c.steps.length).toBe(1);
      expect(c.faster, c.id).toBe(e > c.touches + MARGIN);
    }
    // the migration's x axis is the gasifier table's rows, the queries' the petri table's
    const backfill = curve.costs.find((c) => c.id === "migration.backfill")!;
    expect(backfill.points.map((p) => p.rows)).toEqual(results.map((r) => r.migration.rows));
    for (const c of curve.costs.filter((x) => x.faster)) expect(md).toContain(`**${c.label}** (${c.id})`);
  });

  it("leaves out a maintenance figure without a day of writes", () => {
    const stale = JSON.parse(readFileSync(resultFiles[1]!, "utf8")) as BenchResult;
    delete stale.maintenance!.dayWrites;
    const file = join(outDir, "stale.json");
    writeFileSync(file, JSON.stringify(stale));
    const only = buildCurve([loadInput(resultFiles[0]!), loadInput(file)], {});
    expect(only.costs.find((c) => c.id === "maintenance.run")!.points.map((p) => p.scale)).toEqual([SCALES[0]]);
    expect(only.costs.find((c) => c.id === "query.fetch_by_id.partitioned")!.points.length).toBe(2);
  });

  it("has the settled maintenance run: the measured one where it promoted nothing, else the run after the nights that promoted", () => {
    // the quick scales promote nothing: the measured run is the settled one
    const steady = curve.costs.find((c) => c.id === "maintenance.steady")!;
    expect(steady.points.map((p) => p.scale)).toEqual(SCALES);
    // and the maintenance section judges it across the scales too
    expect(md).toMatch(/- Once the tree has settled \(maintenance\.steady, below\): 4\.8k [\d.]+ s, 9\.6k [\d.]+ s; across the scales measured \(4\.8k, 9\.6k\): slowest ÷ fastest = [\d.]+× — (✅ met|❌ missed) \(the goal names 1M, 5M, 20M; 1M, 5M, 20M not measured\)\./);
    expect(steady.points.map((p) => p.value)).toEqual(results.map((r) => r.maintenance!.seconds));
    // a measured run that stopped at its budget is not the settled one, and nothing stands for it
    const grown = JSON.parse(readFileSync(resultFiles[1]!, "utf8")) as BenchResult;
    grown.maintenance!.unfinished = "the run's time budget was spent";
    const file = join(outDir, "grown.json");
    writeFileSync(file, JSON.stringify(grown));
    const without = buildCurve([loadInput(resultFiles[0]!), loadInput(file)], {});
    expect(without.costs.find((c) => c.id === "maintenance.steady")!.points.map((p) => p.scale)).toEqual([SCALES[0]]);
    expect(without.costs.find((c) => c.id === "maintenance.run")!.points.map((p) => p.scale)).toEqual(SCALES);
    // with the bench's steady run after it, that run is
    grown.maintenance!.steady = { settleRuns: 3, settleSeconds: 200, settled: true, cutovers: 7, held: null, dayWrites: grown.maintenance!.dayWrites!,
      seconds: 0.5, steps: grown.maintenance!.steps };
    writeFileSync(file, JSON.stringify(grown));
    const points = buildCurve([loadInput(resultFiles[0]!), loadInput(file)], {}).costs.find((c) => c.id === "maintenance.steady")!.points;
    expect(points.map((p) => p.value)).toEqual([results[0]!.maintenance!.seconds, 0.5]);
    expect(points[1]!.detail).toMatch(/^after 3 nightly runs \(200 s, 7 promotions cut over\)/);
  });

  it("judges the maintenance spread at the goal's scales (1M, 5M, 20M) once two of them are measured, and says the spread across every scale", () => {
    // the quick run's result relabelled as four scales, with the run times of each
    const at = (rows: number, seconds: number) => {
      const r = JSON.parse(readFileSync(resultFiles[0]!, "utf8")) as BenchResult;
      r.build.rows.legacy = rows;
      r.maintenance!.seconds = seconds;
      const file = join(outDir, `relabelled-${rows}.json`);
      writeFileSync(file, JSON.stringify(r));
      return loadInput(file);
    };
    const four = buildCurve([at(250_000, 0.43), at(1_000_000, 0.14), at(5_000_000, 0.18), at(20_000_000, 0.16)], {});
    expect(four.maintenance.judgedScales).toEqual([1_000_000, 5_000_000, 20_000_000]);
    expect(four.maintenance.spread).toBeCloseTo(0.18 / 0.14, 9);
    expect(four.maintenance.withinSpread).toBe(true);
    expect(four.maintenance.spreadAll).toBeCloseTo(0.43 / 0.14, 9);
    expect(four.maintenance.settled?.spread).toBeCloseTo(0.18 / 0.14, 9);
    const fourMd = scaleMarkdown(four, "scale.svg");
    expect(fourMd).toContain("- Within 1.5× of each other at the goal's scales (1M, 5M, 20M): slowest ÷ fastest = 1.29× — ✅ met; " +
      "across every scale measured (250k, 1M, 5M, 20M): 3.07×, not judged.");
    // one of the goal's scales: judged across the scales measured, with the missing ones named
    const two = buildCurve([at(250_000, 0.43), at(1_000_000, 0.14)], {});
    expect(two.maintenance.judgedScales).toEqual([250_000, 1_000_000]);
    expect(two.maintenance.withinSpread).toBe(false);
    expect(scaleMarkdown(two, "scale.svg")).toContain("- Within 1.5× of each other across the scales measured (250k, 1M): slowest ÷ fastest = 3.07× — ❌ missed " +
      "(the goal names 1M, 5M, 20M; 5M, 20M not measured).");
  });

  it("takes the push and its setup steps from the push bench's result", () => {
    const push = curve.costs.filter((c) => c.group === "push");
    expect(push.map((c) => c.id)).toEqual(expect.arrayContaining(["push.push", "push.setup.petri:company_id", "push.app_wait"]));
    for (const c of push) expect(c.points.length, c.id).toBe(1);
    expect(curve.costs.find((c) => c.id === "push.setup.petri:company_id")!.touches).toBe(1);
    expect(curve.costs.find((c) => c.id === "push.push")!.touches).toBe(0);
  });

  it("lists the issue's scales as not measured, writes the chart, and takes its own JSON back", () => {
    for (const g of ["Query classes", "Maintenance", "Online migration"]) {
      expect(curve.notMeasured.find((n) => n.startsWith(g)), g).toMatch(/not measured at 1M, 5M, 20M/);
    }
    expect(md).toContain("## Not measured yet");
    expect(md).toContain("## Maintenance with the same day of writes");
    const svg = readFileSync(join(outDir, "scale.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    const again = buildCurve([loadInput(join(outDir, "scale.json"))], {});
    expect(again.costs.map((c) => [c.id, c.points.length])).toEqual(curve.costs.map((c) => [c.id, c.points.length]));
    expect(again.inputs.length).toBe(curve.inputs.length);
  });
});
