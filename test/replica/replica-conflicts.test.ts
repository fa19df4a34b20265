// Reads on a hot standby while the primary changes the tree (issue 23, point 3).
// Covers:
//  - readers on a streaming standby with a hosted read replica's settings (max_standby_streaming_delay
//    30 s, hot_standby_feedback off), running the read API's SQL continuously as `authenticated`
//    under RLS (pages and aggregates, with the role's 8 s statement_timeout, through the function's
//    retry of recovery conflicts, supabase/functions/_shared/retry.ts), see no error while the
//    primary runs the online migration, the swap, a rollback, the migration and swap again, then
//    maintenance on the live tree (premake, promotion, metrics, retention drop and detach);
//  - the readers wait for a lock at most the function's lock timeout on the replica (1 s), then read
//    on the primary, as the function does (_shared/replica.ts): replay can hold a replayed lock
//    while it waits for the very readers queued behind it (a cleanup record between the lock and
//    the commit), which without that bound ends only at the readers' 8 s statement_timeout;
//  - the standby's replay lag in each phase, sampled every 50 ms (primary's WAL position against
//    the standby's replayed position), stays under the readers' statement_timeout: replay waits
//    for a reader only as long as that reader runs, never for max_standby_streaming_delay;
//  - a read the replica does cancel (max_standby_streaming_delay 0, a read holding a lock that an
//    ALTER TABLE on the primary replays) fails with 40001 and the retry runs it again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { migrateOnline, rollback, step } from "../../scripts/lib/migration-driver.ts";
import { retryRecoveryConflicts } from "../../supabase/functions/_shared/retry.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { STANDBY_SETTINGS } from "../../scripts/lib/replica.ts";
import { connectReplica, testReplica, waitForReplica } from "../helpers/replica.ts";
import { sleep, waitFor } from "../helpers/time.ts";

/** Longer than any read may run (the role's statement_timeout and the retry's back-off). */
const HUNG_READ_MS = 20_000;

/** The read function's lock timeout on the replica (DB_REPLICA_LOCK_TIMEOUT_MS's default). */
const REPLICA_LOCK_TIMEOUT = "1000ms";

interface ReaderStats { reads: number; retried: number; onPrimary: number; errors: string[]; longestMs: number }
interface LagStats { maxSeconds: number; maxBytes: number; maxReportedSeconds: number; samples: number; lost: number }

/**
 * The read API as the function calls it: one transaction as `authenticated`, RLS on, the role's
 * timeout; on the replica with the function's lock timeout, and on the primary when that ends it.
 */
function startReaders(
  sql: Sql, primary: Sql, who: { userId: string; companyId: string; programId: string; timeout: string }, sessions: number,
) {
  const stats: ReaderStats = { reads: 0, retried: 0, onPrimary: 0, errors: [], longestMs: 0 };
  let running = true;
  const claims = JSON.stringify({ sub: who.userId, role: "authenticated" });
  const readOn = (on: Sql, kind: number) => on.begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('statement_timeout', ${who.timeout}, true),
                    set_config('lock_timeout', ${on === sql ? REPLICA_LOCK_TIMEOUT : "0"}, true)`;
    await tx`set local role authenticated`;
    if (kind % 2 === 0) {
      return tx`select count(*)::int as n from public.get_observations_optimized(
        p_company_id => ${who.companyId}::uuid, p_program_id => ${who.programId}::uuid, p_limit => 200)`;
    }
    return tx`select count(*)::int as n from public.get_observation_aggregates(
      p_company_id => ${who.companyId}::uuid, p_program_id => ${who.programId}::uuid, p_group_by => ${kind % 4 === 1 ? "day" : "site"})`;
  });
  const readOnce = async (kind: number) => {
    try {
      return await readOn(sql, kind);
    } catch (err) {
      if ((err as { code?: string }).code !== "55P03") throw err;
      stats.onPrimary++;
      return await readOn(primary, kind);
    }
  };
  const loops = Array.from({ length: sessions }, async (_, i) => {
    for (let n = i; running; n++) {
      const t0 = performance.now();
      let hung: ReturnType<typeof setTimeout> | undefined;
      try {
        // a read the server no longer answers is an error the app sees too (its request times out)
        await Promise.race([
          retryRecoveryConflicts(() => readOnce(n), { onRetry: () => { stats.retried++; } }),
          new Promise((_, reject) => { hung = setTimeout(() => reject(new Error(`no answer in ${HUNG_READ_MS} ms`)), HUNG_READ_MS); }),
        ]);
        stats.reads++;
      } catch (e) {
        const err = e as { code?: string; message?: string };
        stats.errors.push(`${err.code ?? "?"} ${err.message ?? String(e)}`);
      } finally {
        clearTimeout(hung);
      }
      stats.longestMs = Math.max(stats.longestMs, performance.now() - t0);
    }
  });
  return {
    stats,
    /** the figures since the last call, and a fresh count */
    take: (): ReaderStats => {
      const s = { ...stats, errors: [...stats.errors] };
      Object.assign(stats, { reads: 0, retried: 0, onPrimary: 0, errors: [], longestMs: 0 });
      return s;
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/**
 * Replay lag, sampled: each sample of the primary's WAL position is replayed on the standby some
 * seconds later; the largest such delay, the largest distance in bytes, and pg_stat_replication's
 * replay_lag (the primary's own estimate) for comparison.
 */
function startLagSampler(primary: Sql, standby: Sql, slot: string, everyMs = 50) {
  let lag: LagStats = { maxSeconds: 0, maxBytes: 0, maxReportedSeconds: 0, samples: 0, lost: 0 };
  const pending: { at: number; lsn: string }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      // a sample the replica cancels for recovery is lost, not an error of the readers'
      await retryRecoveryConflicts(() => sample()).catch(() => { lag.lost++; });
      await sleep(everyMs);
    }
  })();
  async function sample(): Promise<void> {
    const [p] = await primary<{ lsn: string; reported: number | null }[]>`
      select pg_current_wal_insert_lsn()::text as lsn,
             (select extract(epoch from replay_lag)::float8 from pg_stat_replication where application_name = ${slot}) as reported`;
    pending.push({ at: performance.now(), lsn: p!.lsn });
    const [s] = await standby<{ replayed: string }[]>`select pg_last_wal_replay_lsn()::text as replayed`;
    const now = performance.now();
    const [d] = await primary<{ behind: string; done: boolean[] }[]>`
      select pg_wal_lsn_diff(${p!.lsn}::pg_lsn, ${s!.replayed}::pg_lsn)::text as behind,
             array(select ${s!.replayed}::pg_lsn >= x::pg_lsn from unnest(${pending.map((x) => x.lsn)}::text[]) x) as done`;
    lag.maxBytes = Math.max(lag.maxBytes, Number(d!.behind));
    lag.maxReportedSeconds = Math.max(lag.maxReportedSeconds, p!.reported ?? 0);
    lag.samples++;
    // a position replayed by now was at most now - at behind; one still waiting is that far behind already
    for (const x of pending) lag.maxSeconds = Math.max(lag.maxSeconds, (now - x.at) / 1000);
    for (let i = d!.done.length - 1; i >= 0; i--) if (d!.done[i]) pending.splice(i, 1);
  }
  return {
    take: (): LagStats => {
      const l = lag;
      lag = { maxSeconds: 0, maxBytes: 0, maxReportedSeconds: 0, samples: 0, lost: 0 };
      return l;
    },
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

describe("reads on a hot standby while the primary changes the tree", () => {
  let db: FreshDb;
  let onStandby: Sql;
  /** the readers' fallback, as the function's (its pooled connection to the primary) */
  let onPrimary: Sql | undefined;
  let replicaOpen = false;
  let readers: ReturnType<typeof startReaders>;
  let sampler: ReturnType<typeof startLagSampler>;
  let timeoutSeconds = 0;
  const phases: { phase: string; readers: ReaderStats; lag: LagStats; conflicts: Record<string, number> }[] = [];

  /** max_standby_streaming_delay on the test replica (ALTER SYSTEM there); null: back to its own setting. */
  async function setStreamingDelay(value: string | null): Promise<void> {
    const admin = connect(testReplica().adminUrl());
    try {
      await (value === null ? admin`alter system reset max_standby_streaming_delay` : admin`alter system set max_standby_streaming_delay = ${admin.unsafe(`'${value}'`)}`);
      await admin`select pg_reload_conf()`;
    } finally {
      await admin.end();
    }
    const want = value === null ? STANDBY_SETTINGS.max_standby_streaming_delay : value;
    await waitFor(`the replica's max_standby_streaming_delay is ${want}`, async () =>
      (await onStandby<{ s: string }[]>`select current_setting('max_standby_streaming_delay') as s`)[0]!.s === want, 10_000, 50);
  }

  async function conflicts(): Promise<Record<string, number>> {
    const [c] = await retryRecoveryConflicts(() => onStandby<Record<string, number>[]>`
      select confl_lock::int as lock, confl_snapshot::int as snapshot, confl_bufferpin::int as bufferpin, confl_deadlock::int as deadlock
      from pg_stat_database_conflicts where datname = current_database()`);
    return c!;
  }

  /** Runs one phase on the primary while the readers run, and records what the readers and the standby saw. */
  async function phase(name: string, work: () => Promise<unknown>): Promise<void> {
    readers.take();
    sampler.take();
    const before = await conflicts();
    await sleep(200);
    await work();
    // the phase is over on the standby once it has replayed the primary's position
    const [p] = await db.sql<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`;
    await waitFor(`the standby replays ${name}`, async () =>
      (await retryRecoveryConflicts(() => onStandby<{ ok: boolean }[]>`select pg_last_wal_replay_lsn() >= ${p!.lsn}::pg_lsn as ok`))[0]!.ok, 60_000, 50);
    await sleep(200);
    const after = await conflicts();
    const delta = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
    const entry = { phase: name, readers: readers.take(), lag: sampler.take(), conflicts: delta };
    phases.push(entry);
    const r = entry.readers;
    console.log(`[replica] ${name}: ${r.reads} reads, ${r.retried} retried, ${r.onPrimary} past the lock timeout (read on the primary), ` +
      `${r.errors.length} errors, longest read ${r.longestMs.toFixed(0)} ms; ` +
      `replay lag max ${entry.lag.maxSeconds.toFixed(2)} s / ${entry.lag.maxBytes} bytes (pg_stat_replication ${entry.lag.maxReportedSeconds.toFixed(2)} s, ${entry.lag.samples} samples, ${entry.lag.lost} lost); ` +
      `standby conflicts ${JSON.stringify(delta)}${r.errors.length ? `; first errors: ${r.errors.slice(0, 3).join(" | ")}` : ""}`);
  }

  beforeAll(async () => {
    db = await freshDatabase("replica_conflicts", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql, { months: 7 });
    await db.sql`select analytics.refresh_daily_metrics()`;
    await waitForReplica();
    onStandby = connectReplica(db.name, 6);
    replicaOpen = true;
    const [t] = await db.sql<{ s: string }[]>`
      select split_part(c, '=', 2) as s from pg_db_role_setting s cross join lateral unnest(s.setconfig) c
      where s.setrole = 'authenticated'::regrole and c like 'statement_timeout=%'`;
    timeoutSeconds = Number.parseFloat(t!.s);
    const [u] = await db.sql<{ id: string; company_id: string; program_id: string }[]>`
      select u.id, u.company_id, (select p.program_id from public.pilot_programs p where p.company_id = u.company_id order by p.program_id limit 1) as program_id
      from public.users u order by u.email limit 1`;
    onPrimary = connect(db.url, 4);
    readers = startReaders(onStandby, onPrimary, { userId: u!.id, companyId: u!.company_id, programId: u!.program_id, timeout: t!.s }, 4);
    sampler = startLagSampler(db.sql, onStandby, testReplica().slot);
  });

  afterAll(async () => {
    await readers?.stop();
    await sampler?.stop();
    await onPrimary?.end({ timeout: 5 });
    if (replicaOpen) {
      await setStreamingDelay(null);
      await onStandby.end({ timeout: 5 });
    }
    await db?.drop();
  });

  it("with hosted settings: no reader error through migration, swap, maintenance and rollback; lag under the readers' timeout", async () => {
    expect(timeoutSeconds).toBe(8);
    await phase("online migration (prepare, sync, backfill, validate)", () => migrateOnline(db.sql, "petri_observations", { batchSize: 200 }));
    await phase("swap", () => step(db.sql, "petri_observations", { swap: true }));
    expect(await phaseOf(db.sql, "petri")).toBe("swapped");
    // back before maintenance changes the tree: once retention removed months from the live tree,
    // the rollback refuses (the legacy table still has them)
    await phase("rollback", () => rollback(db.sql, "petri_observations"));
    await phase("online migration and swap again", () => migrateOnline(db.sql, "petri_observations", { batchSize: 200, swap: true }));
    expect(await phaseOf(db.sql, "petri")).toBe("swapped");
    await phase("premake", async () => {
      const leaves = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.partition_registry where table_key = 'petri'`)[0]!.n;
      const before = await leaves();
      await db.sql`update partition_mgmt.managed_tables set premake_months = 6 where table_key = 'petri'`;
      await runMaintenance(db.sql, "petri");
      expect(await leaves()).toBeGreaterThan(before);
    });
    await phase("promotion", async () => {
      // a new site of a program with a partition of its own: its rows wait in the program's DEFAULT
      // leaf until they are enough for partitions of their own
      const [site] = await db.sql<{ site_id: string; program_id: string }[]>`
        insert into public.sites (program_id, name)
        select g.program_id, 'grown on the replica test' from partition_mgmt.partition_registry g
        where g.table_key = 'petri' and g.level = 'program' and not g.is_default order by g.program_id limit 1
        returning site_id, program_id`;
      const [sub] = await db.sql<{ id: string }[]>`
        insert into public.submissions (site_id, program_id) values (${site!.site_id}, ${site!.program_id}) returning submission_id as id`;
      await db.sql`insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
                   select ${sub!.id}, ${site!.site_id}, ${site!.program_id}, 'grown-' || g, now() - make_interval(hours => g)
                   from generate_series(1, 600) g`;
      await db.sql`analyze public.petri_observations`;
      await db.sql`update partition_mgmt.maintenance_settings set promote_batch_rows = 200, promote_step_seconds = 0.001`;
      await runMaintenance(db.sql, "petri");
      const [c] = await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.maintenance_log where action = 'promote' and detail ->> 'action' = 'cutover' and error is null`;
      expect(c!.n).toBeGreaterThan(0);
    });
    await phase("metrics refresh", () => db.sql`select * from partition_mgmt.refresh_metrics()`);
    // retention to the end of the oldest period, then of the next: the first is dropped, the second detached
    const retentionTo = async (nth: number) => (await db.sql<{ months: number }[]>`
      select (date_part('year', a) * 12 + date_part('month', a))::int as months
      from (select age(date_trunc('month', now() at time zone 'UTC'), e.range_end at time zone 'UTC') as a
            from (select distinct range_end from partition_mgmt.partition_registry
                  where table_key = 'petri' and level = 'period' and not is_default order by range_end offset ${nth} limit 1) e) x`)[0]!.months;
    await phase("retention: drop", async () => {
      await db.sql`update partition_mgmt.managed_tables set retention_months = ${await retentionTo(0)}, retention_action = 'drop' where table_key = 'petri'`;
      const [r] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
      expect(r!.n).toBeGreaterThan(0);
    });
    await phase("retention: detach to the archive", async () => {
      await db.sql`update partition_mgmt.managed_tables set retention_months = ${await retentionTo(0)}, retention_action = 'archive' where table_key = 'petri'`;
      const [r] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
      expect(r!.n).toBeGreaterThan(0);
      await db.sql`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
    });

    for (const p of phases) {
      expect({ phase: p.phase, errors: p.readers.errors.slice(0, 3) }).toEqual({ phase: p.phase, errors: [] });
      // the readers did read while the phase ran
      expect(p.readers.reads, p.phase).toBeGreaterThan(0);
      // replay waits for a reader at most as long as the reader may run
      expect(p.lag.maxSeconds, p.phase).toBeLessThan(timeoutSeconds);
    }
  });

  it("a read the replica cancels for recovery is run again by the function's retry", async () => {
    await readers.stop();
    await sampler.stop();
    // the replica cancels at once: a read that holds a lock the primary's DDL takes is cancelled
    await setStreamingDelay("0");
    try {
      await db.sql`create table public.replica_conflict_probe (id int primary key)`;
      await db.sql`insert into public.replica_conflict_probe select generate_series(1, 10)`;
      await waitForReplica();
      let attempts = 0;
      const retried: string[] = [];
      const read = () => retryRecoveryConflicts(async () => {
        attempts++;
        // the first attempt reads for 3 s: long enough for the primary's ALTER TABLE to replay
        const [r] = await onStandby<{ n: number }[]>`
          select count(*)::int as n, pg_sleep(${attempts === 1 ? 3 : 0}) from public.replica_conflict_probe`;
        return r!.n;
      }, { onRetry: (_, err) => { retried.push(`${(err as { code?: string }).code} ${(err as Error).message}`); } });
      const reading = read();
      await sleep(500);
      await db.sql`alter table public.replica_conflict_probe add column note text`;
      expect(await reading).toBe(10);
      expect(retried).toEqual(["40001 canceling statement due to conflict with recovery"]);
      expect(attempts).toBe(2);
    } finally {
      await db.sql`drop table if exists public.replica_conflict_probe`;
      await setStreamingDelay(null);
    }
  });
});
