// Daily metrics kept by what changed (migration 20250102000100): the statement triggers record the
// (program, site, UTC day) groups a write touched, and the refresh recomputes only those. After
// every kind of write (inserts, growth_index updates, a row moved to another day, to another site
// and program, deletes, rows arriving days late), and across the online migration (the swap, a
// rollback, the swap again and finalize), analytics.mv_daily_metrics equals a full GROUP BY over
// public.petri_observations. A write that commits while a refresh is under way stays recorded
// (three sessions, the refresh held at a lock in the middle of its recompute). A refresh after a
// change to one group reads that group's rows only (the transaction's own table statistics).
// Maintenance recomputes changed groups a bounded step at a time, and health() reports a backlog.
// Retention, which drops leaves and deletes rows from shared leaves without the table's triggers,
// records the days it removes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { finalize, migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { waitFor } from "../helpers/time.ts";

/** Rows that differ between the kept metrics and a full recompute (both directions, with duplicates). */
async function differences(sql: Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`
    with full_recompute as (
      select o.company_id, o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date as day, count(*)::bigint as n,
             avg(o.growth_index)::numeric as a, min(o.growth_index)::numeric as lo, max(o.growth_index)::numeric as hi,
             stddev_samp(o.growth_index)::numeric as sd, max(o.created_at) as last
      from public.petri_observations o
      group by 1, 2, 3, 4),
    kept as (
      select company_id, program_id, site_id, day, observation_count, avg_growth_index, min_growth_index, max_growth_index,
             stddev_growth_index, last_observation_at
      from analytics.mv_daily_metrics)
    select ((select count(*) from (select * from full_recompute except all select * from kept) x)
          + (select count(*) from (select * from kept except all select * from full_recompute) y))::int as n`;
  return r!.n;
}

/**
 * Rows a refresh read from the table (its leaves, once partitioned): by sequential scans (counted
 * on the table) and through indexes (counted on each index; bitmap scans on the table). Run in a
 * session of its own: a backend's counters are pending until it reports them, which may be
 * several transactions later.
 */
async function refreshReads(url: string): Promise<{ seq: number; fetched: number }> {
  const session = connect(url, 1);
  try {
    return await session.begin(async (tx) => {
      await tx`select analytics.refresh_daily_metrics()`;
      const [r] = await tx<{ seq: number; fetched: number }[]>`
        with tables as (
          select t.relid from pg_partition_tree('public.petri_observations') t where t.isleaf
          union select 'public.petri_observations'::regclass where (select relkind from pg_class where oid = 'public.petri_observations'::regclass) = 'r')
        select coalesce(sum(pg_stat_get_xact_tuples_returned(t.relid)), 0)::int as seq,
               (coalesce(sum(pg_stat_get_xact_tuples_fetched(t.relid)), 0)
                + coalesce((select sum(pg_stat_get_xact_tuples_fetched(i.indexrelid)) from pg_index i where i.indrelid in (select relid from tables)), 0))::int as fetched
        from tables t`;
      return r!;
    });
  } finally {
    await session.end();
  }
}

async function dirtyGroups(sql: Sql): Promise<string[]> {
  return (await sql<{ g: string }[]>`
    select distinct format('%s/%s/%s', program_id, site_id, day) as g from analytics.metrics_dirty order by 1`).map((r) => r.g);
}

/** The rows of a row's (program, site, UTC day) group. */
async function groupRows(sql: Sql, r: { program_id: string; site_id: string; day: string }): Promise<{ n: number }> {
  const [g] = await sql<{ n: number }[]>`
    select count(*)::int as n from public.petri_observations
    where program_id = ${r.program_id} and site_id = ${r.site_id} and (created_at at time zone 'UTC')::date = ${r.day}::date`;
  return g!;
}

interface Row { id: string; program_id: string; site_id: string; submission_id: string; day: string }

async function someRow(sql: Sql, offset = 0): Promise<Row> {
  const [r] = await sql<Row[]>`
    select observation_id as id, program_id, site_id, submission_id, (created_at at time zone 'UTC')::date::text as day
    from public.petri_observations order by observation_id offset ${offset} limit 1`;
  return r!;
}

async function insertRow(sql: Sql, like: Row, createdAt: string, growth = 42): Promise<string> {
  const [r] = await sql<{ id: string }[]>`
    insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
    values (${like.submission_id}, ${like.site_id}, ${like.program_id}, 'metrics-test', ${growth}, ${createdAt}::timestamptz)
    returning observation_id as id`;
  return r!.id;
}

/** Every kind of write the app makes, through the live table (whichever it is). */
async function writeEverything(sql: Sql, tag: number): Promise<void> {
  const a = await someRow(sql, 3 * tag);
  const b = await someRow(sql, 3 * tag + 1);
  const c = await someRow(sql, 3 * tag + 2);
  await insertRow(sql, a, `${a.day} 12:00+00`, 7 + tag);                       // a group that has rows
  await insertRow(sql, a, `${a.day} 23:30-05`, 9);                              // New York evening: the next UTC day
  // (late-arriving rows: days in the past, one of them a day no row had yet)
  await sql`
    insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
    select ${b.submission_id}, ${b.site_id}, ${b.program_id}, 'late', g, now() - make_interval(days => 40 + g)
    from generate_series(1, 3) g`;
  await sql`update public.petri_observations set growth_index = growth_index + 1 where observation_id = ${a.id}`;
  await sql`update public.petri_observations set created_at = created_at - interval '3 days' where observation_id = ${b.id}`;
  // to another site of another program (the row's submission stays)
  const [other] = await sql<{ site_id: string; program_id: string }[]>`
    select s.site_id, s.program_id from public.sites s where s.program_id <> ${c.program_id} order by s.site_id limit 1`;
  await sql`update public.petri_observations set site_id = ${other!.site_id}, program_id = ${other!.program_id} where observation_id = ${c.id}`;
  await sql`delete from public.petri_observations where observation_id = ${b.id}`;
  // a statement over many rows and groups at once
  await sql`update public.petri_observations set growth_index = growth_index * 2 where petri_code = 'late'`;
}

describe("daily metrics kept by what changed", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("metrics", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("the demo data's writes were recorded; one refresh makes the metrics equal a full recompute", async () => {
    expect((await dirtyGroups(db.sql)).length).toBeGreaterThan(0);
    expect(await differences(db.sql)).toBeGreaterThan(0);
    const [r] = await db.sql<{ r: string }[]>`select analytics.refresh_daily_metrics() as r`;
    expect(r?.r).toBe("changed");
    expect(await dirtyGroups(db.sql)).toEqual([]);
    expect(await differences(db.sql)).toBe(0);
  });

  it("inserts, updates, moves to another day, site and program, deletes and late rows: equal after a refresh", async () => {
    const a = await someRow(db.sql, 0);
    await insertRow(db.sql, a, `${a.day} 13:00+00`);
    expect(await dirtyGroups(db.sql)).toEqual([`${a.program_id}/${a.site_id}/${a.day}`]);
    await writeEverything(db.sql, 0);
    expect(await differences(db.sql)).toBeGreaterThan(0);
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);
    // a group whose last row went away leaves no row behind
    const lone = await someRow(db.sql, 5);
    const id = await insertRow(db.sql, lone, "2020-01-01 00:00+00");
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect((await db.sql`select 1 from analytics.mv_daily_metrics where day = '2020-01-01'`).length).toBe(1);
    await db.sql`delete from public.petri_observations where observation_id = ${id}`;
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect((await db.sql`select 1 from analytics.mv_daily_metrics where day = '2020-01-01'`).length).toBe(0);
    expect(await differences(db.sql)).toBe(0);
  });

  it("a refresh after a change to one group reads that group's rows only", async () => {
    const a = await someRow(db.sql, 10);
    await db.sql`update public.petri_observations set growth_index = growth_index + 1 where observation_id = ${a.id}`;
    const group = await groupRows(db.sql, a);
    const [total] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations`;
    const reads = await refreshReads(db.url);
    expect(group.n).toBeGreaterThan(0);
    expect(reads.seq).toBe(0);
    expect(reads.fetched).toBe(group.n);
    expect(total!.n).toBeGreaterThan(10 * group.n);
    expect(await differences(db.sql)).toBe(0);
  });

  it("a write that commits while the refresh recomputes its group stays recorded", async () => {
    // the group: a day no row had, so the refresh inserts its metrics row where a third session
    // holds an uncommitted one, and waits there, after its SELECT of the day's rows
    const a = await someRow(db.sql, 20);
    const first = await insertRow(db.sql, a, "2021-06-01 10:00+00", 10);
    const [company] = await db.sql<{ c: string | null }[]>`select company_id as c from public.petri_observations where observation_id = ${first}`;
    const refresher = connect(db.url, 1);
    const blocker = connect(db.url, 1);
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => { release = resolve; });
      let holding!: () => void;
      const held = new Promise<void>((resolve) => { holding = resolve; });
      const blocking = blocker.begin(async (tx) => {
        await tx`insert into analytics.daily_metrics (company_id, program_id, site_id, day, observation_count, last_observation_at)
                 values (${company!.c}, ${a.program_id}, ${a.site_id}, '2021-06-01', 0, now())`;
        holding();
        await released;
        throw new Error("rolled back on purpose");
      }).catch((e: Error) => { if (e.message !== "rolled back on purpose") throw e; });
      await held;
      const [pid] = await refresher<{ pid: number }[]>`select pg_backend_pid() as pid`;
      const refreshing = refresher`select analytics.refresh_daily_metrics()`.then(() => "done");
      await waitFor("the refresh waits for the third session", async () => {
        const [w] = await db.sql<{ waiting: boolean }[]>`
          select coalesce(wait_event_type = 'Lock', false) as waiting from pg_stat_activity where pid = ${pid!.pid}`;
        return w?.waiting ?? false;
      });
      await insertRow(db.sql, a, "2021-06-01 11:00+00", 20);   // commits while the refresh waits
      release();
      await blocking;
      expect(await refreshing).toBe("done");
    } finally {
      await refresher.end();
      await blocker.end();
    }
    // the second row's group was recorded after the refresh had taken the first one's: it is
    // recomputed by the same refresh's next batch, or by the next refresh, never forgotten
    await db.sql`select analytics.refresh_daily_metrics()`;
    const [seen] = await db.sql<{ n: number }[]>`select observation_count::int as n from analytics.mv_daily_metrics where day = '2021-06-01'`;
    expect(seen?.n).toBe(2);
    expect(await differences(db.sql)).toBe(0);
  });

  it("holds across the swap, a rollback, the swap again and finalize", async () => {
    const res = await migrateOnline(db.sql, "petri", { batchSize: 500, swap: true });
    expect(res.phase).toBe("swapped");
    // the backfill and the sync wrote the copy: nothing recorded for it
    expect(await dirtyGroups(db.sql)).toEqual([]);
    await writeEverything(db.sql, 1);
    // the reverse sync wrote every change into petri_observations_old: only the live table counts
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);

    await writeEverything(db.sql, 2);   // recorded on the partitioned table, recomputed after the rollback
    await rollback(db.sql, "petri");
    expect((await db.sql<{ k: string }[]>`select relkind::text as k from pg_class where oid = 'public.petri_observations'::regclass`)[0]?.k).toBe("r");
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);
    await writeEverything(db.sql, 3);
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);

    await migrateOnline(db.sql, "petri", { batchSize: 500, swap: true });
    await writeEverything(db.sql, 4);
    await finalize(db.sql, "petri");
    await writeEverything(db.sql, 5);
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);
    // a full rebuild on the partitioned table gives the same
    await db.sql`select analytics.rebuild_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);
  });

  it("on the partitioned table too, a refresh after a change to one group reads that group's rows only", async () => {
    const a = await someRow(db.sql, 30);
    await db.sql`update public.petri_observations set growth_index = growth_index + 1 where observation_id = ${a.id}`;
    const group = await groupRows(db.sql, a);
    // at most the leaves of the group's site (the keys prune the others while planning; the site's
    // DEFAULT leaf stays in the plan), whole or through an index: on this small tree the planner
    // reads a leaf of a few hundred rows whole rather than through its time index
    const [leaves] = await db.sql<{ n: number; total: number }[]>`
      select (select count(*)::int from public.petri_observations where program_id = ${a.program_id} and site_id = ${a.site_id}) as n,
             (select count(*)::int from public.petri_observations) as total`;
    const reads = await refreshReads(db.url);
    expect(reads.seq + reads.fetched).toBeGreaterThanOrEqual(group.n);
    expect(reads.seq + reads.fetched).toBeLessThanOrEqual(leaves!.n + group.n);
    expect(leaves!.total).toBeGreaterThan(5 * leaves!.n);
    expect(await differences(db.sql)).toBe(0);
  });

  it("maintenance recomputes the changed groups a bounded step at a time; health() reports a backlog", async () => {
    await db.sql`update partition_mgmt.maintenance_settings set step_seconds = 1`;
    // 3,000 changed groups on days without rows: each recompute finds nothing and writes nothing
    await db.sql`
      insert into analytics.metrics_dirty (program_id, site_id, day)
      select s.program_id, s.site_id, date '2000-01-01' + g from public.sites s cross join generate_series(1, 3000 / (select count(*)::int from public.sites)) g`;
    await writeEverything(db.sql, 6);
    await db.sql`update analytics.metrics_dirty set marked_at = now() - interval '3 days'`;
    const backlog = await db.sql<{ finding: string; detail: string }[]>`select finding, detail from partition_mgmt.health() where finding = 'metrics backlog'`;
    expect(backlog).toHaveLength(1);
    expect(backlog[0]!.detail).toMatch(/^\d+ changed group\(s\) of analytics\.mv_daily_metrics wait for their recompute/);

    await runMaintenance(db.sql);
    const steps = await db.sql<{ secs: number; groups: number; status: string }[]>`
      select extract(epoch from finished_at - started_at)::float8 as secs, (detail ->> 'groups')::int as groups, status
      from partition_mgmt.maintenance_log where action = 'refresh_metrics' order by id`;
    expect(steps.every((s) => s.status === "ok")).toBe(true);
    expect(steps.reduce((n, s) => n + s.groups, 0)).toBeGreaterThanOrEqual(3000);
    // each step stops taking batches after step_seconds (a batch of 100 groups is always finished)
    expect(steps.length).toBeGreaterThan(0);
    expect(Math.max(...steps.map((s) => s.secs))).toBeLessThan(1 + 2);
    expect(await dirtyGroups(db.sql)).toEqual([]);
    expect(await differences(db.sql)).toBe(0);
    expect(await db.sql`select 1 from partition_mgmt.health() where finding = 'metrics backlog'`).toHaveLength(0);
  });
  it("retention, which removes leaves and rows without the table's triggers, records the days it removes", async () => {
    // June 2021 in leaves of their own (the drain makes them), July 2021 in the sites' DEFAULT leaves
    const oldRows = (at: string) => db.sql`
      insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
      select b.submission_id, s.site_id, s.program_id, 'old', 5, ${at}::timestamptz
      from public.sites s cross join lateral (select x.submission_id from public.submissions x limit 1) b`;
    await oldRows("2021-06-10 08:00+00");
    await db.sql`select * from partition_mgmt.drain_defaults('petri', 50)`;
    await oldRows("2021-07-10 08:00+00");
    await db.sql`select analytics.refresh_daily_metrics()`;
    const [before] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations`;
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
    const [leaves] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
    const [rows] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_row_retention('petri', 100000)::int as n`;
    const [after] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations`;
    // both kinds ran: whole period leaves dropped, and rows deleted from shared leaves
    expect(leaves!.n).toBeGreaterThan(0);
    expect(rows!.n).toBeGreaterThan(0);
    expect(after!.n).toBeLessThan(before!.n - rows!.n);
    expect(await differences(db.sql)).toBeGreaterThan(0);
    await db.sql`select analytics.refresh_daily_metrics()`;
    expect(await differences(db.sql)).toBe(0);
  });
});
