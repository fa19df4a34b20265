// Operations figures: one nightly maintenance run on the built tree, and the online migration
// measured with the migration API (migration 20250102000500, through scripts/lib/migration-driver.ts)
// on gasifier_observations, a second managed table of the same database whose migration does not
// touch the petri tables the other sections measure:
//   - offline copy: partition_mgmt.offline_migrate_table (the plan's Option B: the table is locked
//     against writes from the copy to the swap), then rollback_migration;
//   - online: prepare + sync, keyset backfill, validation and swap while a simulated app
//     (scripts/lib/app-load.ts) writes to the table; its latency before and during the migration.
import type { Sql } from "postgres";
import { startAppLoad } from "../app-load.ts";
import * as driver from "../migration-driver.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, percentile } from "./stats.ts";
import type { MaintenanceResult, MigrationResult } from "./types.ts";
import { benchSession, inSession } from "./session.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** In a session of its own, as pg_cron runs it. */
export async function runMaintenance(url: string, progress: Progress): Promise<MaintenanceResult> {
  const sql = benchSession(url, "bench-maintenance");
  try {
    return await maintenance(sql, progress);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function maintenance(sql: Sql, progress: Progress): Promise<MaintenanceResult> {
  progress.step("maintenance: call partition_mgmt.run_maintenance()");
  const [b] = await sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.maintenance_log`;
  const t0 = performance.now();
  try {
    await sql`call partition_mgmt.run_maintenance()`;
  } catch (e) {
    progress.done(`failed: ${(e as Error).message}`);
    return { seconds: (performance.now() - t0) / 1000, steps: [], error: (e as Error).message };
  }
  const seconds = (performance.now() - t0) / 1000;
  const steps = await sql<{ table: string | null; action: string; status: string; seconds: number; partitions: number; rows: number; error: string | null }[]>`
    select table_key as table, action, status, extract(epoch from finished_at - started_at)::float8 as seconds,
           partitions_touched::int as partitions, rows_moved::float8 as rows, error
    from partition_mgmt.maintenance_log where id > ${b?.id ?? 0} and action <> 'run' order by id`;
  progress.done(`${seconds.toFixed(1)} s, ${steps.length} steps${steps.some((s) => s.status === "error") ? " (with errors)" : ""}`);
  return { seconds, steps: [...steps] };
}

type Window = { ops: number; p50: number; p99: number; max: number };
function windowStats(timeline: [number, number][], from: number, to: number): Window {
  const lat = timeline.filter(([s]) => s >= from && s < to).map(([, ms]) => ms);
  return { ops: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100) };
}


/**
 * Each phase in a session of its own (the copy's or the backfill's session has compiled every
 * leaf's triggers, which would slow whatever ran after it in that session).
 */
export async function runMigration(url: string, o: BenchOptions, progress: Progress): Promise<MigrationResult> {
  const table = "gasifier_observations";
  const pre = await inSession(url, "bench-migration", async (sql) => {
    const [has] = await sql<{ api: boolean }[]>`
      select to_regprocedure('partition_mgmt.migrate_to_partitioned(integer,uuid,text,integer,numeric)') is not null
         and to_regprocedure('partition_mgmt.swap_tables(text,text,integer,text)') is not null
         and to_regprocedure('partition_mgmt.offline_migrate_table(text,text,integer)') is not null as api`;
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.gasifier_observations`;
    return { api: Boolean(has?.api), rows: n?.n ?? 0 };
  });
  if (!pre.api) return { status: "not measured yet", reason: "the migration API (partition_mgmt.migrate_to_partitioned, swap_tables, offline_migrate_table) is not in this database" };
  const rows = pre.rows;
  const result: MigrationResult = { status: "measured", table, rows };

  // offline copy (Option B), then back
  progress.step(`migration: offline copy of ${table} (${fmtInt(rows)} rows, table locked against writes)`);
  try {
    const [before] = await inSession(url, "bench-migration", (sql) => sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.migration_log`);
    const t0 = performance.now();
    const [r] = await inSession(url, "bench-migration-offline", (sql) => sql<{ rows_copied: string; lock_held_ms: string }[]>`
      select * from partition_mgmt.offline_migrate_table(${table})`);
    const seconds = (performance.now() - t0) / 1000;
    // the copy alone: from 'prepared' to 'backfilled' in the migration log
    const [c] = await inSession(url, "bench-migration", (sql) => sql<{ copy: number | null }[]>`
      select extract(epoch from max(at) filter (where to_phase = 'backfilled') - max(at) filter (where to_phase = 'prepared'))::float8 as copy
      from partition_mgmt.migration_log where id > ${before?.id ?? 0} and table_key = 'gasifier'`);
    const copySeconds = c?.copy && c.copy > 0 ? c.copy : seconds;
    result.offline = {
      seconds,
      rowsPerSecond: Number(r?.rows_copied ?? rows) / copySeconds,
      lockHeldMs: Number(r?.lock_held_ms ?? 0),
      note: `writes blocked for the whole ${seconds.toFixed(1)} s call (copy ${copySeconds.toFixed(1)} s, validation, swap); rows/s over the copy alone`,
    };
    progress.update("rollback_migration (in a new session)");
    await inSession(url, "bench-migration-rollback", (sql) => driver.rollback(sql, table));
    progress.done(`${fmtInt(result.offline.rowsPerSecond)} rows/s; window ${seconds.toFixed(1)} s`);
  } catch (e) {
    result.offline = { error: (e as Error).message };
    progress.done(`failed: ${(e as Error).message}`);
    await inSession(url, "bench-migration-rollback", (sql) => driver.rollback(sql, table)).catch(() => {});
  }

  // online, with the app writing
  progress.step(`migration: online, ${table} with a simulated app writing (4 sessions)`);
  const sessions = 4;
  const tLoad = performance.now();
  const load = startAppLoad({ url, table, sessions, seed: 11 });
  let tMig = 0;
  let tSwap0 = 0;
  let tSwap1 = 0;
  try {
    progress.update(`baseline latency, ${o.appBaselineSeconds} s`);
    await sleep(o.appBaselineSeconds * 1000);
    tMig = performance.now();
    const prepareSeconds = await inSession(url, "bench-migration-prepare", async (sql) => {
      const blockers = (await driver.preMigrationCheck(sql, table)).filter((c) => c.status === "blocker");
      if (blockers.length) throw new Error(`pre-migration check: ${blockers.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
      progress.update("prepare + sync trigger");
      await sql`select * from partition_mgmt.safe_migrate_table(${table}, false, true)`;
      return (performance.now() - tMig) / 1000;
    });
    const tB = performance.now();
    const { batches, scanned } = await inSession(url, "bench-migration-backfill", async (sql) => {
      const b = await driver.backfill(sql, table, {
        batchSize: 10_000,
        onProgress: (m) => progress.update(`backfill ${driver.progressBar(m, 20)}`),
        progressEveryMs: 1000,
      });
      return { batches: b, scanned: Number((await driver.monitor(sql, table)).rows_scanned) };
    });
    const backfillSeconds = (performance.now() - tB) / 1000;
    const { validateSeconds, swap } = await inSession(url, "bench-migration-swap", async (sql) => {
      progress.update("validation");
      const tV = performance.now();
      const validation = await driver.validate(sql, table);
      const validateSeconds = (performance.now() - tV) / 1000;
      const bad = validation.filter((v) => v.status !== "ok");
      if (bad.length) throw new Error(`validation: ${bad.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
      progress.update("swap");
      tSwap0 = performance.now();
      const [s] = await sql<{ attempts: number; lock_held_ms: string }[]>`select * from partition_mgmt.swap_tables(${table}, '1s', 10)`;
      tSwap1 = performance.now();
      return { validateSeconds, swap: s };
    });
    result.online = {
      prepareSeconds,
      backfillSeconds,
      backfillRowsPerSecond: scanned / backfillSeconds,
      batches,
      validateSeconds,
      swapLockMs: Number(swap?.lock_held_ms ?? 0),
      swapAttempts: swap?.attempts ?? 0,
      totalSeconds: (tSwap1 - tMig) / 1000,
    };
    await sleep(1000); // the app goes on writing into the swapped-in table
  } catch (e) {
    result.online = { error: (e as Error).message };
    result.status = "failed";
  } finally {
    const stats = await load.stop();
    const rel = (t: number) => t - tLoad;
    if (tMig > 0) {
      result.app = {
        sessions,
        baseline: windowStats(stats.timeline, 500, rel(tMig)),
        during: windowStats(stats.timeline, rel(tMig), tSwap1 > 0 ? rel(tSwap1) : Number.POSITIVE_INFINITY),
        swapWindow: (() => {
          if (tSwap1 === 0) return { ops: 0, max: Number.NaN };
          const hit = stats.timeline.filter(([st, ms]) => st < rel(tSwap1) && st + ms > rel(tSwap0));
          return { ops: hit.length, max: Math.max(0, ...hit.map(([, ms]) => ms)) };
        })(),
        errors: stats.errors.length,
        retried: stats.retried,
      };
    }
    const on = result.online;
    progress.done(on && "backfillRowsPerSecond" in on
      ? `backfill ${fmtInt(on.backfillRowsPerSecond)} rows/s, swap lock ${on.swapLockMs.toFixed(0)} ms, app p99 ${result.app?.baseline.p99.toFixed(1)} → ${result.app?.during.p99.toFixed(1)} ms`
      : `failed: ${on && "error" in on ? on.error : "?"}`);
  }
  return result;
}
