// `npm run bench -- --quick` end to end on a fresh database of the test cluster (--db-url mode):
// build, every section, the JSON result, the Markdown report and the chart.
// Covers:
//  - the tree is the one prepare_migration builds (sized by default): its leaves, rows per leaf,
//    lock budget and the pre-check's words about it are in the result, no row waits in a DEFAULT;
//    the simulated swap carried the app's triggers;
//  - the JSON has every query class, each with the legacy, indexed and partitioned variants and a
//    numeric median (and p95) for each, plus the speed ratios;
//  - the id-only statements sent prepared ran on the three tables, with their locks and plans;
//  - the other sections produced their figures: insert runs and profile, the planning series,
//    the maintenance run, the migration section (every phase, the rollback after the swap with
//    the app writing, the app's longest wait);
//  - every goal and every promise has a verdict (met or missed): "not measured" fails the test, so
//    a renamed SQL function or a section that stopped measuring cannot hide; the report and the
//    SVG chart are written.
// No timing assertions: the machine is shared and the quick scale is tiny.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchOptions } from "../../scripts/lib/bench/options.ts";
import { QUERY_CLASS_IDS } from "../../scripts/lib/bench/queries.ts";
import { runBench } from "../../scripts/lib/bench/run.ts";
import type { BenchResult } from "../../scripts/lib/bench/types.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { tempDir } from "../helpers/processes.ts";

describe("npm run bench -- --quick", () => {
  let db: FreshDb;
  let outDir: string;
  let result: BenchResult;
  let files: { json: string; markdown: string; svg: string };

  beforeAll(async () => {
    db = await freshDatabase("bench_quick");
    outDir = tempDir("bench-quick-");
    const run = await runBench(benchOptions({ quick: true, dbUrl: db.url, outDir, quiet: true }));
    files = run.files;
    result = JSON.parse(readFileSync(files.json, "utf8")) as BenchResult;
  }, 900_000);

  afterAll(async () => {
    await db?.drop();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it("built the three tables with the same rows in the tree prepare_migration plans", () => {
    expect(result.mode).toBe("quick");
    expect(result.build.rows.legacy).toBeGreaterThan(0);
    expect(result.build.rows.indexed).toBe(result.build.rows.legacy);
    expect(result.build.rows.partitioned).toBe(result.build.rows.legacy);
    const t = result.build.tree;
    expect(t.shape).toBe("sized");
    expect(result.build.prepare.calls).toBeGreaterThan(0);
    // a sized tree of a few thousand rows: every program shares the root's DEFAULT leaf
    expect(t.leaves).toBeGreaterThan(0);
    expect(t.leaves).toBe(t.leavesWithoutDefaults + t.defaults);
    expect(result.build.prepare.leaves).toBe(t.leaves);
    expect(t.rowsWaiting).toBe(0);
    // the simulated swap carries the demo app's own triggers as the real swap does, so the
    // partitioned table's updates pay for touch_updated_at as the legacy table's do
    expect(result.build.steps.find((s) => s.name === "simulated swap")?.detail).toMatch(/triggers carried: .*\btouch_updated_at\b/);
    expect(t.rowsPerLeaf.leaves).toBe(t.leaves);
    expect(t.rowsPerLeaf.max).toBeGreaterThan(0);
    expect(t.lockBudget.keylessLocks).toBeGreaterThan(0);
    expect(t.lockBudget.keylessAtOnce).toBeGreaterThanOrEqual(t.lockBudget.minimum);
    expect(t.precheck.tree).toMatch(/sized tree/);
    expect(result.build.locks.source).toBe("server");
    expect(result.build.locks.lockCapacity).toBe(t.lockBudget.lockCapacity);
    expect(result.build.locks.checks.map((c) => c.status)).toEqual(result.build.locks.checks.map(() => "ok"));
    expect(result.machine.postgres).toMatch(/PostgreSQL/);
    expect(result.machine.settings.max_locks_per_transaction).toBe(String(result.build.locks.maxLocksPerTransaction));
  });

  it("has every query class with numeric medians for each table", () => {
    expect(result.queries.map((q) => q.id).sort()).toEqual([...QUERY_CLASS_IDS].sort());
    for (const q of result.queries) {
      for (const v of q.variants) expect(v.error, `${q.id}/${v.id}`).toBeUndefined();
      for (const id of ["legacy", "indexed", "partitioned"]) {
        const v = q.variants.find((x) => x.id === id);
        expect(v, `${q.id}/${id}`).toBeDefined();
        expect(typeof v!.timings.median, `${q.id}/${id}`).toBe("number");
        expect(Number.isFinite(v!.timings.median), `${q.id}/${id}`).toBe(true);
        expect(Number.isFinite(v!.timings.p95), `${q.id}/${id}`).toBe(true);
        expect(v!.timings.n).toBeGreaterThan(0);
      }
      expect(typeof q.speedupVsLegacy).toBe("number");
      expect(typeof q.speedupVsIndexed).toBe("number");
    }
  });

  it("sent the id-only statements prepared on every table and counted their locks", () => {
    const runs = result.prepared?.runs ?? [];
    expect(runs.map((r) => `${r.statement}/${r.table}`).sort()).toEqual(
      ["select", "update"].flatMap((s) => ["legacy", "indexed", "partitioned"].map((t) => `${s}/${t}`)).sort());
    for (const r of runs) {
      expect(r.error, `${r.statement}/${r.table}`).toBeUndefined();
      expect(Number.isFinite(r.timings.median), `${r.statement}/${r.table}`).toBe(true);
      expect(r.relationLocks, `${r.statement}/${r.table}`).toBeGreaterThan(0);
      expect(r.genericPlans + r.customPlans, `${r.statement}/${r.table}`).toBeGreaterThan(5);
    }
    // the partitioned statement locks the tree: more than the legacy table's relation and its indexes
    const locks = (t: string) => runs.find((r) => r.statement === "select" && r.table === t)!.relationLocks;
    expect(locks("partitioned")).toBeGreaterThan(locks("legacy"));
  });

  it("measured inserts, planning, maintenance and every phase of the migration", () => {
    const kinds = new Set(result.inserts?.runs.map((r) => r.table));
    expect(kinds).toEqual(new Set(["legacy", "indexed", "partitioned"]));
    for (const r of result.inserts!.runs) expect(Number.isFinite(r.rowsPerSecond)).toBe(true);
    expect(result.inserts!.profile.length).toBeGreaterThanOrEqual(3);
    expect(result.planning?.error).toBeUndefined();
    expect(result.planning!.levels.length).toBeGreaterThan(0);
    for (const l of result.planning!.levels) {
      expect(Number.isFinite(l.keyed.planning.median)).toBe(true);
      expect(l.idOnlySkipped).toBeUndefined();
      expect(Number.isFinite(l.idOnly!.planning.median)).toBe(true);
    }
    expect(result.maintenance?.error).toBeUndefined();
    expect(result.maintenance?.unfinished).toBeUndefined();
    expect(Number.isFinite(result.maintenance!.seconds)).toBe(true);
    // the day of writes went on a day of its own: its groups hold its rows only, not also what the
    // insert section wrote today
    const d = result.maintenance!.dayWrites!;
    expect(d.groupRows).toBe(d.rows);
    const m = result.migration;
    expect(m.status, m.reason ?? (m.online && "error" in m.online ? m.online.error : "")).toBe("measured");
    expect(m.offline && "rowsPerSecond" in m.offline, JSON.stringify(m.offline)).toBe(true);
    expect(m.online && "backfillRowsPerSecond" in m.online, JSON.stringify(m.online)).toBe(true);
    expect(m.app?.phases.map((p) => p.name)).toEqual(["prepare", "sync", "backfill", "validate", "swap", "rollback"]);
    const on = m.online && "swapLockMs" in m.online ? m.online : undefined;
    expect(on?.rollbackError).toBeUndefined();
    expect(on?.rollbackLockMs).toBeGreaterThan(0);
    expect(on?.rollbackAttempts).toBeGreaterThanOrEqual(1);
    expect(Number.isFinite(m.app!.maxWaitMs)).toBe(true);
    expect(m.app!.errors, m.app!.firstError).toBe(0);
  });

  it("gives every goal and promise a verdict and writes the report and the chart", () => {
    expect(result.goals.length).toBe(18);
    for (const g of [...result.goals, ...result.promises]) {
      expect(["met", "missed"], `${g.id}: ${g.status} (${g.reason})`).toContain(g.status);
      expect(g.measured, g.id).not.toMatch(/^(–|failed)$/);
    }
    expect(existsSync(files.markdown)).toBe(true);
    const md = readFileSync(files.markdown, "utf8");
    for (const h of ["## Goals", "## The tree", "## Id-only statements, prepared", "## Migration"]) expect(md).toContain(h);
    expect(md).not.toMatch(/not measured/i);
    expect(md).toContain("ratios.svg");
    const svg = readFileSync(files.svg, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("</svg>");
  });
});
