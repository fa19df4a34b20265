// Operations figures: one nightly maintenance run on the built tree (the statement
// partition_mgmt.maintenance_runner() returns, as the pg_cron job runs it), and the online migration
// measured with the migration API (migrations 20250102000400 to 0470, through scripts/lib/migration-driver.ts's steps)
// on gasifier_observations, a second managed table of the same database whose migration does not
// touch the petri tables the other sections measure:
//   - offline copy: partition_mgmt.offline_migrate_table (the plan's Option B: the table is locked
//     against writes from the copy to the swap), then rollback_migration and finish_rollback;
//   - online: prepare (prepare_migration until prepared, one transaction per call), sync
//     (start_sync), keyset backfill, validation and swap while a simulated app
//     (scripts/lib/app-load.ts) writes to the table; its latency before the migration and the
//     longest app statement overlapping each phase.
import type { Sql } from "postgres";
import { startAppLoad } from "../app-load.ts";
import { runMaintenance as runMaintenanceNow } from "../maintenance-runner.ts";
import * as driver from "../migration-driver.ts";
import { writeDay } from "./day-writes.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtChangedGroups, fmtInt, maxOf, percentile } from "./stats.ts";
import type { MaintenanceResult, MigrationPhase, MigrationResult, SteadyMaintenance } from "./types.ts";
import { benchSession, inSession } from "./session.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The day of writes (day-writes.ts, in sessions of their own, as the app's), then the run in a
 * session of its own with the database's statement_timeout, as pg_cron runs it. Run `run` of a
 * repeated bench (--runs) writes on days of its own: its first day is the (2 × run − 1)th day
 * writeDay picks, the settled run's second the (2 × run)th, so no run recomputes an earlier
 * run's rows.
 */
export async function runMaintenance(url: string, progress: Progress, dayRows: number, run = 1): Promise<MaintenanceResult> {
  // what the sections before wrote is processed first, untimed: the timed run then processes the
  // day of writes alone, the same work at every scale
  progress.step("maintenance: a first run for what the sections before wrote (not timed)");
  const settle = await inSession(url, "bench-maintenance-settle", (sql) => maintenance(sql, progress));
  progress.step(`maintenance: a day of new writes first (${fmtInt(dayRows)} petri rows over a day of the current month before today)`);
  const dayWrites = await writeDay(url, dayRows, 2 * run - 1);
  progress.done(`${fmtInt(dayWrites.statements)} statements in ${dayWrites.seconds.toFixed(1)} s; ${fmtChangedGroups(dayWrites)}`);
  const sql = benchSession(url, "bench-maintenance");
  let measured: MeasuredRun;
  try {
    measured = { ...(await maintenance(sql, progress)), dayWrites, settleSeconds: settle.seconds };
  } finally {
    await sql.end({ timeout: 5 });
  }
  if (measured.error || (!measured.unfinished && !measured.promotionWork)) return withoutMarks(measured);
  return { ...withoutMarks(measured), steady: await steadyMaintenance(url, progress, dayRows, MAX_SETTLE_RUNS, 2 * run) };
}

/** MAX_SETTLE_RUNS nightly runs at most before the steady-state run (30 nights of 90 s). */
const MAX_SETTLE_RUNS = 30;

function withoutMarks(m: MeasuredRun): MaintenanceResult {
  const { promotionWork: _p, heldReason: _h, ...rest } = m;
  return rest;
}

/**
 * The nightly runs after a measured run that restructured the tree, until one finishes without
 * promotion work (a held promotion is no work: it waits for the lock budget), then a second day of
 * writes and the run on it, timed. Exported for a kept cluster (npm run bench -- --keep).
 */
export async function steadyMaintenance(url: string, progress: Progress, dayRows: number, maxRuns = MAX_SETTLE_RUNS, day = 2): Promise<SteadyMaintenance> {
  let settleRuns = 0;
  let settleSeconds = 0;
  let cutovers = 0;
  let held: string | null = null;
  let settled = false;
  await inSession(url, "bench-maintenance-nights", async (sql) => {
    while (!settled && settleRuns < maxRuns) {
      const r = await maintenance(sql, progress);
      settleRuns++;
      settleSeconds += r.seconds;
      if (r.error) throw new Error(`maintenance run ${settleRuns} after the measured one failed: ${r.error}`);
      cutovers += r.steps.filter((x) => x.action === "promote" && x.partitions > 0).length;
      held = r.heldReason;
      settled = !r.unfinished && !r.promotionWork;
    }
  });
  progress.step(`maintenance: ${settleRuns} nightly runs (${settleSeconds.toFixed(0)} s, ${cutovers} promotions cut over${held ? ", one held by the lock budget" : ""}); then a second day of writes (${fmtInt(dayRows)} rows)`);
  // the second day of writes, on a day of its own: on the first one's, its groups would hold both
  // days' rows, twice what the first run recomputed
  const dayWrites = await writeDay(url, dayRows, day);
  const run = await inSession(url, "bench-maintenance-steady", (sql) => maintenance(sql, progress));
  return {
    settleRuns, settleSeconds, settled, cutovers, held, dayWrites, seconds: run.seconds, steps: run.steps,
    ...(run.unfinished ? { unfinished: run.unfinished } : {}),
  };
}

/** A run as measured, with what the bench needs to know of its promote steps. */
type MeasuredRun = MaintenanceResult & { promotionWork: boolean; heldReason: string | null };

async function maintenance(sql: Sql, progress: Progress): Promise<MeasuredRun> {
  progress.step("maintenance: the statement partition_mgmt.maintenance_runner() returns (the nightly job's)");
  const [b] = await sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.maintenance_log`;
  const t0 = performance.now();
  try {
    await runMaintenanceNow(sql);
  } catch (e) {
    progress.done(`failed: ${(e as Error).message}`);
    return { seconds: (performance.now() - t0) / 1000, steps: [], error: (e as Error).message, promotionWork: false, heldReason: null };
  }
  const seconds = (performance.now() - t0) / 1000;
  const steps = await sql<{ table: string | null; action: string; status: string; seconds: number; partitions: number; rows: number; error: string | null }[]>`
    select table_key as table, action, status, extract(epoch from finished_at - started_at)::float8 as seconds,
           partitions_touched::int as partitions, rows_moved::float8 as rows, error
    from partition_mgmt.maintenance_log where id > ${b?.id ?? 0} and action <> 'run' order by id`;
  // a run that spent its time budget stops and says so; the next run goes on
  const [run] = await sql<{ unfinished: string | null }[]>`
    select case when detail ->> 'unfinished' = 'true' then coalesce(detail ->> 'reason', 'unfinished') end as unfinished
    from partition_mgmt.maintenance_log where id > ${b?.id ?? 0} and action = 'run' order by id desc limit 1`;
  // promote steps that started, copied or cut over a promotion; the last one's reason when held
  const [promo] = await sql<{ work: number; held: string | null }[]>`
    select count(*) filter (where detail ->> 'action' in ('start', 'copy', 'cutover'))::int as work,
           (array_agg(detail ->> 'detail' order by id desc) filter (where detail ->> 'action' = 'held'))[1] as held
    from partition_mgmt.maintenance_log where id > ${b?.id ?? 0} and action = 'promote'`;
  progress.done(`${seconds.toFixed(1)} s, ${steps.length} steps${steps.some((s) => s.status === "error") ? " (with errors)" : ""}${run?.unfinished ? `; unfinished: ${run.unfinished}` : ""}` +
    `${promo?.work ? `; ${promo.work} promote steps with work` : ""}`);
  return {
    seconds, steps: [...steps], ...(run?.unfinished ? { unfinished: run.unfinished } : {}),
    promotionWork: (promo?.work ?? 0) > 0, heldReason: promo?.held ?? null,
  };
}

type Window = { ops: number; p50: number; p99: number; max: number };
function windowStats(timeline: [number, number][], from: number, to: number): Window {
  const lat = timeline.filter(([s]) => s >= from && s < to).map(([, ms]) => ms);
  return { ops: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100) };
}


/** The SQL API the section calls: a renamed or missing function fails the section by name. */
const MIGRATION_API = [
  "partition_mgmt.prepare_migration(text,text)", "partition_mgmt.migration_phase(text)", "partition_mgmt.start_sync(text)",
  "partition_mgmt.migrate_to_partitioned(integer,uuid,text,integer,numeric)", "partition_mgmt.post_migration_validation(text)",
  "partition_mgmt.swap_tables(text,text,integer,text)", "partition_mgmt.offline_migrate_table(text,text,integer)",
  "partition_mgmt.rollback_migration(text,text,integer)", "partition_mgmt.finish_rollback(text)",
];

/**
 * prepare_migration until the phase is 'prepared', one transaction per call (a tree may not fit
 * in one transaction's lock budget). Returns the calls and the leaves of the prepared tree.
 */
async function prepareUntilPrepared(sql: Sql, table: string, onCall: (call: number) => void = () => {}): Promise<{ calls: number; leaves: number }> {
  for (let call = 1; ; call++) {
    onCall(call);
    // the orchestrator's prepare step: one transaction's lock budget per call
    const r = await driver.step<{ message: string }>(sql, table);
    const m = { msg: r.result?.message ?? "" };
    const ph = { phase: r.phase };
    if (ph?.phase === "prepared") {
      const [t] = await sql<{ leaves: number }[]>`
        select count(*)::int as leaves from partition_mgmt.partition_registry
        where table_key = partition_mgmt.resolve_table_key(${table}) and is_leaf`;
      return { calls: call, leaves: t?.leaves ?? 0 };
    }
    if (ph?.phase !== "preparing" || call >= 1000) throw new Error(`prepare_migration(${table}) left the phase ${ph?.phase} after ${call} calls: ${m?.msg}`);
  }
}

/**
 * Each phase in a session of its own (the copy's or the backfill's session has compiled every
 * leaf's triggers, which would slow whatever ran after it in that session); each phase's session
 * lifts the 2-minute statement_timeout, as an operator's would. The app keeps the database's.
 */
export async function runMigration(url: string, o: BenchOptions, progress: Progress): Promise<MigrationResult> {
  const table = "gasifier_observations";
  const long = { long: true };
  const pre = await inSession(url, "bench-migration", async (sql) => {
    const missing: string[] = [];
    for (const f of MIGRATION_API) {
      const [r] = await sql<{ ok: boolean }[]>`select to_regprocedure(${f}) is not null as ok`;
      if (!r?.ok) missing.push(f);
    }
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.gasifier_observations`;
    return { missing, rows: n?.n ?? 0 };
  });
  if (pre.missing.length) return { status: "failed", reason: `the migration API lacks ${pre.missing.join(", ")} (renamed or dropped?)` };
  const rows = pre.rows;
  const result: MigrationResult = { status: "measured", table, rows };

  // offline copy (Option B), then back
  progress.step(`migration: offline copy of ${table} (${fmtInt(rows)} rows, table locked against writes)`);
  try {
    const lastLog = async () => (await inSession(url, "bench-migration", (sql) => sql<{ id: number }[]>`
      select coalesce(max(id), 0)::int as id from partition_mgmt.migration_log`))[0]?.id ?? 0;
    const offline = () => inSession(url, "bench-migration-offline", (sql) => sql<{ rows_copied: string; lock_held_ms: string }[]>`
      select * from partition_mgmt.offline_migrate_table(${table})`, long);
    let before = await lastLog();
    let t0 = performance.now();
    let first: string | undefined;
    let r: { rows_copied: string; lock_held_ms: string } | undefined;
    try {
      [r] = await offline();
    } catch (e) {
      // offline_migrate_table prepares in its one transaction; a tree beyond its lock budget is
      // created the online way first (prepare_migration calls, then rolled back: the partitions
      // stay), so that the copy itself is still measured
      if (!/lock budget/.test((e as Error).message)) throw e;
      first = (e as Error).message;
      progress.update("the tree does not fit one transaction's lock budget: prepare_migration calls first, then rollback");
      const pre = await inSession(url, "bench-migration-prepare", (sql) => prepareUntilPrepared(sql, table), long);
      await inSession(url, "bench-migration-rollback", (sql) => driver.rollback(sql, table), long);
      first = `the tree (${fmtInt(pre.leaves)} leaves) was created first by prepare_migration in ${pre.calls} calls and rolled back; offline_migrate_table alone failed: ${first}`;
      before = await lastLog();
      t0 = performance.now();
      [r] = await offline();
    }
    const seconds = (performance.now() - t0) / 1000;
    // the copy alone: from 'prepared' to 'backfilled' in the migration log
    const [c] = await inSession(url, "bench-migration", (sql) => sql<{ copy: number | null }[]>`
      select extract(epoch from max(at) filter (where to_phase = 'backfilled') - max(at) filter (where to_phase = 'prepared'))::float8 as copy
      from partition_mgmt.migration_log where id > ${before} and table_key = 'gasifier'`);
    const copySeconds = c?.copy && c.copy > 0 ? c.copy : seconds;
    result.offline = {
      seconds,
      rowsPerSecond: Number(r?.rows_copied ?? rows) / copySeconds,
      lockHeldMs: Number(r?.lock_held_ms ?? 0),
      note: `writes blocked for the whole ${seconds.toFixed(1)} s call (copy ${copySeconds.toFixed(1)} s, validation, swap); rows/s over the copy alone${first ? `; ${first}` : ""}`,
    };
    progress.update("rollback_migration and finish_rollback (in a new session)");
    await inSession(url, "bench-migration-rollback", (sql) => driver.rollback(sql, table), long);
    progress.done(`${fmtInt(result.offline.rowsPerSecond)} rows/s; window ${seconds.toFixed(1)} s`);
  } catch (e) {
    result.offline = { error: (e as Error).message };
    progress.done(`failed: ${(e as Error).message}`);
    await inSession(url, "bench-migration-rollback", (sql) => driver.rollback(sql, table), long).catch(() => {});
  }

  // online, with the app writing
  progress.step(`migration: online, ${table} with a simulated app writing (4 sessions)`);
  const sessions = 4;
  const tLoad = performance.now();
  const load = startAppLoad({ url, table, sessions, seed: 11 });
  const windows: { name: MigrationPhase["name"]; from: number; to: number }[] = [];
  const phase = async <T>(name: MigrationPhase["name"], fn: () => Promise<T>): Promise<T> => {
    const from = performance.now();
    try {
      return await fn();
    } finally {
      windows.push({ name, from, to: performance.now() });
    }
  };
  const seconds = (name: MigrationPhase["name"]) => {
    const w = windows.find((x) => x.name === name);
    return w ? (w.to - w.from) / 1000 : Number.NaN;
  };
  let tMig = 0;
  try {
    progress.update(`baseline latency, ${o.appBaselineSeconds} s`);
    await sleep(o.appBaselineSeconds * 1000);
    tMig = performance.now();
    const prepared = await phase("prepare", () => inSession(url, "bench-migration-prepare", async (sql) => {
      const blockers = (await driver.preMigrationCheck(sql, table)).filter((c) => c.status === "blocker");
      if (blockers.length) throw new Error(`pre-migration check: ${blockers.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
      return prepareUntilPrepared(sql, table, (call) => progress.update(`prepare_migration, call ${call}`));
    }, long));
    await phase("sync", () => inSession(url, "bench-migration-sync", (sql) => driver.step(sql, table), long));
    const { batches, scanned, slowest } = await phase("backfill", () => inSession(url, "bench-migration-backfill", async (sql) => {
      // the driver reports after every call (one batch each): the gaps are the batches' times
      const marks = [performance.now()];
      const b = await driver.backfill(sql, table, {
        batchSize: 10_000,
        onProgress: (m) => {
          marks.push(performance.now());
          progress.update(`backfill ${driver.progressBar(m, 20)}`);
        },
        progressEveryMs: 0,
      });
      const gaps = marks.slice(1).map((t, i) => (t - marks[i]!) / 1000);
      return { batches: b, scanned: Number((await driver.monitor(sql, table)).rows_scanned), slowest: maxOf(gaps) };
    }, long));
    await phase("validate", () => inSession(url, "bench-migration-validate", async (sql) => {
      progress.update("validation");
      // the validate step raises on any difference, naming the checks that differ
      await driver.step(sql, table);
    }, long));
    const swap = await phase("swap", () => inSession(url, "bench-migration-swap", async (sql) => {
      progress.update("swap");
      const r = await driver.step<{ rows: { attempts: number; lock_held_ms: string }[] }>(sql, table, { swap: true, lockTimeout: "1s", attempts: 10 });
      return r.result?.rows[0];
    }, long));
    result.online = {
      prepareSeconds: seconds("prepare"),
      prepareCalls: prepared.calls,
      treeLeaves: prepared.leaves,
      syncSeconds: seconds("sync"),
      backfillSeconds: seconds("backfill"),
      backfillRowsPerSecond: scanned / seconds("backfill"),
      batches,
      slowestBatchSeconds: slowest,
      validateSeconds: seconds("validate"),
      swapLockMs: Number(swap?.lock_held_ms ?? 0),
      swapAttempts: swap?.attempts ?? 0,
      totalSeconds: (performance.now() - tMig) / 1000,
    };
    await sleep(1000); // the app goes on writing into the swapped-in table
    // then back, the app still writing: rollback_migration swaps the legacy table in again
    const online = result.online;
    try {
      const before = (await inSession(url, "bench-migration", (sql) => sql<{ id: number }[]>`
        select coalesce(max(id), 0)::int as id from partition_mgmt.migration_log`))[0]?.id ?? 0;
      await phase("rollback", () => inSession(url, "bench-migration-rollback", (sql) => {
        progress.update("rollback_migration (the app writing)");
        return driver.rollback(sql, table);
      }, long));
      const [back] = await inSession(url, "bench-migration", (sql) => sql<{ ms: number | null; attempts: number | null }[]>`
        select (detail ->> 'lock_held_ms')::float8 as ms, (detail ->> 'attempts')::int as attempts
        from partition_mgmt.migration_log where id > ${before} and to_phase = 'swapped-back' order by id desc limit 1`);
      online.rollbackLockMs = back?.ms ?? Number.NaN;
      online.rollbackAttempts = back?.attempts ?? 0;
    } catch (e) {
      online.rollbackError = (e as Error).message;
    }
    await sleep(1000); // and on into the legacy table again
  } catch (e) {
    result.online = { error: (e as Error).message };
    result.status = "failed";
  } finally {
    const stats = await load.stop();
    const rel = (t: number) => t - tLoad;
    // app statements overlapping a window: started before its end, finished after its start
    const overlapping = (from: number, to: number) => stats.timeline.filter(([st, ms]) => st < rel(to) && st + ms > rel(from)).map(([, ms]) => ms);
    if (tMig > 0) {
      const phases: MigrationPhase[] = windows.map((w) => {
        const hit = overlapping(w.from, w.to);
        return { name: w.name, seconds: (w.to - w.from) / 1000, appOps: hit.length, appMaxMs: maxOf(hit), appOver1s: hit.filter((ms) => ms > 1000).length };
      });
      const swapW = windows.find((w) => w.name === "swap");
      const end = windows.at(-1)?.to ?? performance.now();
      result.app = {
        sessions,
        baseline: windowStats(stats.timeline, 500, rel(tMig)),
        during: windowStats(stats.timeline, rel(tMig), rel(end)),
        swapWindow: swapW ? (() => {
          const hit = overlapping(swapW.from, swapW.to);
          return { ops: hit.length, max: maxOf(hit) };
        })() : { ops: 0, max: Number.NaN },
        phases,
        maxWaitMs: maxOf(overlapping(tMig, end)),
        errors: stats.errors.length,
        ...(stats.errors[0] ? { firstError: `${stats.errors[0].kind}: ${stats.errors[0].code} ${stats.errors[0].message}` } : {}),
        retried: stats.retried,
      };
    }
    const on = result.online;
    progress.done(on && "backfillRowsPerSecond" in on
      ? `backfill ${fmtInt(on.backfillRowsPerSecond)} rows/s, swap lock ${on.swapLockMs.toFixed(0)} ms, longest app statement ${result.app?.maxWaitMs.toFixed(0)} ms`
      : `failed: ${on && "error" in on ? on.error : "?"}`);
  }
  return result;
}
