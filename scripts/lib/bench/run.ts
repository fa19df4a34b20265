// One benchmark run, end to end: database, build, the measured sections, goals, outputs.
import { readFileSync } from "node:fs";
import os from "node:os";
import { buildData, openBenchDatabase } from "./build.ts";
import { evaluateRuns } from "./goal-table.ts";
import { evaluateGoals, findings, GOALS, PROMISES, type ResultSoFar } from "./goals.ts";
import { runInserts } from "./inserts.ts";
import { machineInfo } from "./machine.ts";
import { runMaintenance, runMigration } from "./operations.ts";
import type { BenchOptions } from "./options.ts";
import { runPlanning } from "./planning.ts";
import { runPrepared } from "./prepared.ts";
import { createProgress } from "./progress.ts";
import { runQueries } from "./queries.ts";
import { composeRuns } from "./runs.ts";
import { terminalTable, writeOutputs, type WrittenFiles } from "./report.ts";
import type { BenchResult } from "./types.ts";

type Measured = NonNullable<BenchResult["measuredRuns"]>[number];
import { benchSession } from "./session.ts";

/** Goals, promises and outputs again from a saved result (report wording changes need no new run). */
export function renderSaved(o: BenchOptions): WrittenFiles {
  const file = o.render!;
  const saved = JSON.parse(readFileSync(file, "utf8")) as BenchResult;
  if (saved.version !== 2) throw new Error(`${file}: a result of version ${String(saved.version)}; this bench renders version 2 (measure again)`);
  const { goals: _g, promises: _p, findings: _f, runGoals: _rg, measuredRuns, ...partial } = saved;
  const runs: ResultSoFar[] = measuredRuns?.length ? measuredRuns.map((m) => ({ ...partial, ...m })) : [partial];
  const result: BenchResult = {
    ...partial, goals: evaluateRuns(GOALS, runs), promises: evaluateRuns(PROMISES, runs), findings: findings(partial),
    ...(measuredRuns?.length ? { runGoals: runs.map((r) => evaluateGoals(r).map((g) => ({ id: g.id, status: g.status }))), measuredRuns } : {}),
  };
  const files = writeOutputs(result, o.outDir, o.publish);
  if (!o.quiet) {
    console.log(`${terminalTable(result)}\n`);
    console.log(`report:  ${files.markdown}\nresult:  ${files.json}\nchart:   ${files.svg}${files.published ? `\npublished: ${files.published.join(", ")}` : ""}`);
  }
  return files;
}

export async function runBench(o: BenchOptions): Promise<{ result: BenchResult; files: WrittenFiles }> {
  const progress = createProgress({ quiet: o.quiet });
  const startedAt = new Date();
  const t0 = performance.now();
  const db = await openBenchDatabase(o, progress);
  let sql: ReturnType<typeof benchSession> | undefined;
  try {
    const loadAverage = os.loadavg().map((x) => Math.round(x * 100) / 100);
    // the build may restart the own cluster (a literal tree's lock setting): sessions come after it
    const build = await buildData(db, o, progress);
    sql = benchSession(db.url, "bench");
    const machine = { ...(await machineInfo(sql, db.label)), loadAverage };
    // Each section runs in sessions of its own: a session's caches (every leaf it has touched, a
    // compiled trigger and foreign-key check per leaf it has written) change its speed. The
    // sections are measured o.runs times on the same data (the planning series, which builds its
    // own trees, once) and every goal is judged on the median of the runs (runs.ts).
    const measured: Measured[] = [];
    let planning: ResultSoFar["planning"] = null;
    for (let run = 1; run <= o.runs; run++) {
      if (o.runs > 1) progress.step(`run ${run} of ${o.runs}`);
      const q = o.sections.has("queries") ? await runQueries(db.url, o, progress) : null;
      const prepared = o.sections.has("queries") ? await runPrepared(db.url, o, progress) : null;
      const inserts = o.sections.has("inserts") ? await runInserts(db.url, o, progress) : null;
      // maintenance before the planning series (whose extra managed table it would also process)
      const maintenance = o.sections.has("maintenance") ? await runMaintenance(db.url, progress, o.dayWrites, run) : null;
      if (run === 1) planning = o.sections.has("planning") ? await runPlanning(db.url, o, progress) : null;
      const migration = o.sections.has("migration") ? await runMigration(db.url, o, progress) : { status: "skipped" as const, reason: "--skip migration" };
      measured.push({ queries: q?.classes ?? [], roundTrip: q?.roundTrip ?? null, prepared, inserts, maintenance, migration });
    }
    progress.close();
    machine.loadAverageEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
    const notes = [
      `Warm-up runs per variant: ${o.warmup}; repetitions: ${o.reps.scan} (whole-table statements), ${o.reps.query} (filters and aggregates), ${o.reps.byId} (by id and submission, and each prepared id-only statement), fewer when a class exceeds its time budget.`,
      ...(o.runs > 1 ? [`Runs: ${o.runs}, on the same data, one after the other (the planning series once). Every goal and promise is judged on the median of its figures across the runs, with their spread and in how many runs it was met; the tables show, for each variant and section, the run of its median.`] : []),
      "Updates on the legacy tables are plain `UPDATE … WHERE observation_id = …` (what supabase-js `.update().eq()` sends, no RETURNING); the routed RPC also returns the updated row as JSON.",
      "The indexed legacy table has no RLS policies; the comparison runs as a BYPASSRLS role, where policies do not apply anyway.",
    ];
    const common = {
      version: 2 as const, mode: o.quick ? "quick" as const : "full" as const,
      startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), seconds: (performance.now() - t0) / 1000,
      machine, build, planning, notes,
    };
    const runs: ResultSoFar[] = measured.map((m) => ({ ...common, ...m }));
    const partial = composeRuns(runs);
    const result: BenchResult = {
      ...partial, runs: o.runs, goals: evaluateRuns(GOALS, runs), promises: evaluateRuns(PROMISES, runs), findings: findings(partial),
      ...(o.runs > 1 ? { runGoals: runs.map((r) => evaluateGoals(r).map((g) => ({ id: g.id, status: g.status }))), measuredRuns: measured } : {}),
    };
    const files = writeOutputs(result, o.outDir, o.publish);
    if (!o.quiet) {
      console.log(`\n${terminalTable(result)}\n`);
      console.log(`report:  ${files.markdown}\nresult:  ${files.json}\nchart:   ${files.svg}${files.published ? `\npublished: ${files.published.join(", ")}` : ""}`);
    }
    return { result, files };
  } finally {
    progress.close();
    await sql?.end({ timeout: 5 });
    await db.close();
  }
}
