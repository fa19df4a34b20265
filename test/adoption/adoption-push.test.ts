// `supabase db push` onto a live project (the plan's Phase 1, "No Downtime"): the demo app with
// populated observation tables, the app writing, then the push with the real CLI.
// Covers:
//  - the push reads and writes no row of the observation tables: pg_stat_user_tables shows no
//    sequential scan and no inserted, updated or deleted row on them across the push; what it
//    left (company_id of the existing rows, the index, company isolation, the metrics) is pending
//    in setup_tasks() and a blocker in the pre-check, with the rows it will touch;
//  - the setup steps then run online while the app writes: every row gets its company_id, no app
//    statement waits a second, no app error;
//  - a reader that holds the table for a minute: the push waits in short tries (the app's other
//    statements keep running, none waits a second) and stops with what held the lock and that
//    running the push again continues; it does, once the reader is gone;
//  - a reader that lets go within the push's wait: the push finishes by itself.
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLegacyAppLoad, summarize, type AppLoadStats } from "../../scripts/lib/app-load.ts";
import { migrationFiles } from "../../scripts/lib/released-migrations.ts";
import { pushMigrationsAsync } from "../../scripts/lib/push-migrations.ts";
import { runSetup } from "../../scripts/lib/setup-driver.ts";
import { generateDemoData, DEFAULT_DEMO } from "../../scripts/lib/demo-data.ts";
import { asSuperuser, connect, demoAppDatabase, dropDatabase } from "../helpers/db.ts";
import { sleep } from "../helpers/time.ts";

const OBSERVATION_TABLES = ["petri_observations", "gasifier_observations"] as const;

interface TableStats { relname: string; seq_scan: number; n_tup_ins: number; n_tup_upd: number; n_tup_del: number }

/** The tables' counters, as the statistics collector has them once every backend flushed. */
async function tableStats(sql: Sql): Promise<Map<string, TableStats>> {
  await sql`select pg_stat_clear_snapshot()`;
  const rows = await sql<TableStats[]>`
    select relname::text, seq_scan::int, n_tup_ins::int, n_tup_upd::int, n_tup_del::int
    from pg_stat_user_tables where schemaname = 'public' and relname = any (${[...OBSERVATION_TABLES]})`;
  return new Map(rows.map((r) => [r.relname, r]));
}

function delta(before: Map<string, TableStats>, after: Map<string, TableStats>) {
  return OBSERVATION_TABLES.map((t) => {
    const b = before.get(t)!;
    const a = after.get(t)!;
    return { table: t, seq_scan: a.seq_scan - b.seq_scan, inserted: a.n_tup_ins - b.n_tup_ins, updated: a.n_tup_upd - b.n_tup_upd, deleted: a.n_tup_del - b.n_tup_del };
  });
}

const maxMs = (s: AppLoadStats) => s.latenciesMs.reduce((m, x) => (x > m ? x : m), 0);

/** A database with the demo app and its data, as a project is before it adds the bundle. */
async function populatedProject(name: string, petriPerSiteMonth: number): Promise<{ url: string; sql: Sql }> {
  const { url } = await demoAppDatabase(name);
  const sql = connect(url, 2);
  await generateDemoData(sql, { ...DEFAULT_DEMO, petriPerSiteMonth, gasifierPerSiteMonth: Math.ceil(petriPerSiteMonth / 5) });
  return { url, sql };
}

describe("supabase db push onto a populated project", () => {
  const DB = `t_adopt_push_${process.pid}`;
  let project: { url: string; sql: Sql };

  beforeAll(async () => {
    project = await populatedProject(DB, 400);   // 57,600 petri and 11,520 gasifier rows
  }, 120_000);
  afterAll(async () => {
    await project?.sql.end({ timeout: 5 });
    await dropDatabase(DB);
  });

  it("reads and writes no row of the observation tables; what it leaves is pending, and the pre-check says so", async () => {
    const [{ rows } = { rows: 0 }] = await project.sql<{ rows: number }[]>`select count(*)::int as rows from public.petri_observations`;
    expect(rows).toBe(57_600);
    await sleep(1100);   // the data load's counters are flushed
    const before = await tableStats(project.sql);
    const push = await pushMigrationsAsync(project.url);
    expect(push.status, push.output).toBe(0);
    expect(push.applied).toEqual(migrationFiles());
    await sleep(1100);
    const after = await tableStats(project.sql);
    expect(delta(before, after)).toEqual(OBSERVATION_TABLES.map((table) => ({ table, seq_scan: 0, inserted: 0, updated: 0, deleted: 0 })));

    const pending = await project.sql<{ task: string; progress: string }[]>`select task, progress from partition_mgmt.setup_tasks() where not done order by ord`;
    expect(pending.map((p) => p.task)).toEqual([
      "gasifier:company_id", "gasifier:company_id_index", "gasifier:company_id_check", "gasifier:company_isolation",
      "petri:company_id", "petri:company_id_index", "petri:company_id_check", "petri:company_isolation", "metrics_index", "metrics"]);
    expect(pending.find((p) => p.task === "petri:company_id")?.progress).toMatch(/^not started; about 576\d\d rows$/);
    const [missing] = await project.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations where company_id is null`;
    expect(missing?.n).toBe(57_600);
    const blockers = await project.sql<{ check_name: string }[]>`
      select check_name from partition_mgmt.pre_migration_check('petri') where status = 'blocker' order by check_name`;
    expect(blockers.map((b) => b.check_name)).toEqual([
      "setup step petri:company_id", "setup step petri:company_id_check", "setup step petri:company_id_index", "setup step petri:company_isolation"]);
    const [health] = await project.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.health() where finding = 'setup pending'`;
    expect(health?.n).toBe(10);
  }, 180_000);

  it("the setup steps then run online while the app writes: every row gets its company, no app statement waits a second", async () => {
    const load = startLegacyAppLoad({ url: project.url, table: "petri_observations", sessions: 4, thinkMs: 2 });
    let stats: AppLoadStats;
    try {
      await sleep(300);
      const run = await runSetup(project.sql);
      // (a check step runs only when the app moved rows behind the sweep: it is done as soon as its
      // index shows none, as for gasifier, which the app does not write)
      console.log(`[adoption-push] setup steps taken: ${run.tasks.join(", ")}`);
      expect(run.tasks.filter((t) => !t.endsWith("_check"))).toEqual([
        "gasifier:company_id", "gasifier:company_id_index", "gasifier:company_isolation",
        "petri:company_id", "petri:company_id_index", "petri:company_isolation", "metrics_index", "metrics"]);
      expect(run.steps).toBeGreaterThan(7);   // the batches took more than one call
      await sleep(300);
    } finally {
      stats = await load.stop();
    }
    console.log(`[adoption-push] the app during the setup steps: ${summarize(stats)}`);
    expect(stats.ops).toBeGreaterThan(100);
    expect(stats.errors).toEqual([]);
    expect(maxMs(stats)).toBeLessThan(1000);
    const [missing] = await project.sql<{ petri: number; gasifier: number }[]>`
      select (select count(*)::int from public.petri_observations where company_id is null) as petri,
             (select count(*)::int from public.gasifier_observations where company_id is null) as gasifier`;
    expect(missing).toEqual({ petri: 0, gasifier: 0 });
    const [wrong] = await project.sql<{ n: number }[]>`
      select count(*)::int as n from public.petri_observations o join public.pilot_programs p using (program_id)
      where o.company_id is distinct from p.company_id`;
    expect(wrong?.n).toBe(0);
    expect(await project.sql`select 1 from partition_mgmt.setup_tasks() where not done`).toHaveLength(0);
  }, 240_000);
});

describe("supabase db push while a reader holds the observation table", () => {
  const DB = `t_adopt_lock_${process.pid}`;
  let project: { url: string; sql: Sql };

  beforeAll(async () => {
    project = await populatedProject(DB, 40);
    // the push's lock wait, shortened for the test (the default is 30 s): a database setting, as a
    // user would raise it with alter role postgres set partition_mgmt.push_lock_wait
    await asSuperuser((admin) => admin.unsafe(`alter database ${DB} set partition_mgmt.push_lock_wait = '6s'`));
  }, 120_000);
  afterAll(async () => {
    await project?.sql.end({ timeout: 5 });
    await dropDatabase(DB);
  });

  it("waits in short tries without holding up the app, stops naming the reader, and continues when run again", async () => {
    const reader = connect(project.url, 1, { connection: { application_name: "long report" } });
    const load = startLegacyAppLoad({ url: project.url, table: "petri_observations", sessions: 4, thinkMs: 5 });
    let stats: AppLoadStats;
    let push: Awaited<ReturnType<typeof pushMigrationsAsync>>;
    let releaseReader = () => {};
    const holding = reader.begin(async (tx) => {
      await tx`select count(*) from public.petri_observations`;
      await new Promise<void>((r) => { releaseReader = r; setTimeout(r, 60_000); });
    });
    try {
      await sleep(500);
      const t0 = performance.now();
      push = await pushMigrationsAsync(project.url);
      const seconds = (performance.now() - t0) / 1000;
      expect(seconds).toBeGreaterThan(5);
      expect(seconds).toBeLessThan(40);
      await sleep(500);
    } finally {
      stats = await load.stop();
    }
    console.log(`[adoption-push] the app while the push waited for the reader: ${summarize(stats)}`);
    expect(push.status).not.toBe(0);
    expect(push.applied).toEqual([migrationFiles()[0]]);
    expect(push.output).toMatch(/could not lock public\.petri_observations, public\.gasifier_observations \(access exclusive mode\) for the migration's DDL: \d+ tries of lock_timeout 100ms in 6 s were not enough; held by: pid \d+ \(postgres \/ long report, idle in transaction, transaction open \d+ s, holds AccessShareLock on public\.petri_observations\): select count\(\*\) from public\.petri_observations/);
    expect(stats.ops).toBeGreaterThan(100);
    expect(stats.errors).toEqual([]);
    expect(maxMs(stats)).toBeLessThan(1000);
    const [history] = await project.sql<{ n: number }[]>`
      select count(*)::int as n from supabase_migrations.schema_migrations`.catch(() => [{ n: 0 }]);
    expect(history?.n).toBe(0);   // nothing of the failed migration, nor after it, is applied

    releaseReader();
    await holding;
    await reader.end();
    const again = await pushMigrationsAsync(project.url);
    expect(again.status, again.output).toBe(0);
    expect(again.applied).toEqual(migrationFiles());
  }, 180_000);

  it("a reader that lets go within the wait: the push finishes by itself", async () => {
    const DB2 = `${DB}_b`;
    const p2 = await populatedProject(DB2, 40);
    const reader = connect(p2.url);
    try {
      const holding = reader.begin(async (tx) => {
        await tx`select count(*) from public.gasifier_observations`;
        await sleep(3000);
      });
      await sleep(300);
      const t0 = performance.now();
      const push = await pushMigrationsAsync(p2.url);
      expect(push.status, push.output).toBe(0);
      expect(performance.now() - t0).toBeGreaterThan(2500);   // it waited for the reader
      await holding;
    } finally {
      await reader.end();
      await p2.sql.end({ timeout: 5 });
      await dropDatabase(DB2);
    }
  }, 180_000);
});
