// `npm run bench -- --quick` end to end on a fresh database of the test cluster (--db-url mode):
// build, every section, the JSON result, the Markdown report and the chart.
// Covers:
//  - the JSON has every query class, each with the legacy, indexed and partitioned variants and a
//    numeric median (and p95) for each, plus the speed ratios;
//  - the other sections produced their figures: insert runs and profile, the planning series,
//    the maintenance run, the migration section (measured, or a stated reason);
//  - every goal has a verdict; the report and the SVG chart are written.
// No timing assertions: the machine is shared and the quick scale is tiny.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchOptions } from "../scripts/lib/bench/options.ts";
import { QUERY_CLASS_IDS } from "../scripts/lib/bench/queries.ts";
import { runBench } from "../scripts/lib/bench/run.ts";
import type { BenchResult } from "../scripts/lib/bench/types.ts";
import { freshDatabase, type FreshDb } from "./helpers/db.ts";

describe("npm run bench -- --quick", () => {
  let db: FreshDb;
  let outDir: string;
  let result: BenchResult;
  let files: { json: string; markdown: string; svg: string };

  beforeAll(async () => {
    db = await freshDatabase("bench_quick");
    outDir = mkdtempSync(join(tmpdir(), "bench-quick-"));
    const run = await runBench(benchOptions({ quick: true, dbUrl: db.url, outDir, quiet: true }));
    files = run.files;
    result = JSON.parse(readFileSync(files.json, "utf8")) as BenchResult;
  }, 900_000);

  afterAll(async () => {
    await db?.drop();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it("has every query class with numeric medians for each table", () => {
    expect(result.queries.map((q) => q.id).sort()).toEqual([...QUERY_CLASS_IDS].sort());
    for (const q of result.queries) {
      for (const id of ["legacy", "indexed", "partitioned"]) {
        const v = q.variants.find((x) => x.id === id);
        expect(v, `${q.id}/${id}`).toBeDefined();
        expect(v!.error, `${q.id}/${id}`).toBeUndefined();
        expect(typeof v!.timings.median, `${q.id}/${id}`).toBe("number");
        expect(Number.isFinite(v!.timings.median), `${q.id}/${id}`).toBe(true);
        expect(Number.isFinite(v!.timings.p95), `${q.id}/${id}`).toBe(true);
        expect(v!.timings.n).toBeGreaterThan(0);
      }
      expect(typeof q.speedupVsLegacy).toBe("number");
      expect(typeof q.speedupVsIndexed).toBe("number");
    }
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

  it("measured inserts, planning, maintenance and the migration", () => {
    const kinds = new Set(result.inserts?.runs.map((r) => r.table));
    expect(kinds).toEqual(new Set(["legacy", "indexed", "partitioned"]));
    for (const r of result.inserts!.runs) expect(Number.isFinite(r.rowsPerSecond)).toBe(true);
    expect(result.inserts!.profile.length).toBeGreaterThanOrEqual(3);
    expect(result.planning?.error).toBeUndefined();
    expect(result.planning!.levels.length).toBeGreaterThan(0);
    for (const l of result.planning!.levels) {
      expect(Number.isFinite(l.keyed.planning.median)).toBe(true);
      expect(Number.isFinite(l.idOnly!.planning.median)).toBe(true);
    }
    expect(result.maintenance?.error).toBeUndefined();
    expect(Number.isFinite(result.maintenance!.seconds)).toBe(true);
    expect(["measured", "not measured yet"]).toContain(result.migration.status);
    if (result.migration.status === "measured") {
      expect(result.migration.online && "backfillRowsPerSecond" in result.migration.online).toBe(true);
    } else {
      expect(result.migration.reason).toBeTruthy();
    }
  });

  it("gives every goal a verdict and writes the report and the chart", () => {
    expect(result.goals.length).toBe(6);
    for (const g of result.goals) expect(["met", "missed", "not measured"]).toContain(g.status);
    expect(existsSync(files.markdown)).toBe(true);
    const md = readFileSync(files.markdown, "utf8");
    expect(md).toContain("## Goals");
    expect(md).toContain("ratios.svg");
    const svg = readFileSync(files.svg, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("</svg>");
  });
});
