// Automated maintenance (migration 20250102000600): premake from now(), draining of DEFAULT
// partitions, cleanup, retention, concurrent runs, health findings, and lock hygiene under load.
// Each test gets its own database cloned from the migrated template; the job-scheduling test uses
// the cluster's `postgres` database, the only one pg_cron serves (test/partitions/pg-cron.test.ts waits for
// the jobs to really run).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { asSuperuser, connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { sleep } from "../helpers/time.ts";

const COMPANY = "c0000000-0000-4000-8000-000000000001";

interface Fixture {
  running: string;
  ended: string;
  runningSites: string[];
  endedSites: string[];
}

/** Two programs (one running for a year, one ended last month) with two sites each. */
async function seed(sql: Sql, premakeMonths = 3): Promise<Fixture> {
  await sql`update partition_mgmt.managed_tables set premake_months = ${premakeMonths}`;
  await sql`insert into public.companies (company_id, name) values (${COMPANY}, 'Maint Co')`;
  await sql`
    insert into public.pilot_programs (name, start_date, end_date, company_id)
    values ('running', date_trunc('month', now())::date - interval '2 months', current_date + 365, ${COMPANY}),
           ('ended', date_trunc('month', now())::date - interval '6 months', date_trunc('month', now())::date - 1, ${COMPANY})`;
  const running = (await sql<{ id: string }[]>`select program_id as id from public.pilot_programs where name = 'running'`)[0]!.id;
  const ended = (await sql<{ id: string }[]>`select program_id as id from public.pilot_programs where name = 'ended'`)[0]!.id;
  const runningSites = (await sql<{ id: string }[]>`
    insert into public.sites (program_id, name) values (${running}, 'r1'), (${running}, 'r2') returning site_id as id`).map((r) => r.id);
  const endedSites = (await sql<{ id: string }[]>`
    insert into public.sites (program_id, name) values (${ended}, 'e1'), (${ended}, 'e2') returning site_id as id`).map((r) => r.id);
  return { running, ended, runningSites, endedSites };
}

async function addObservations(sql: Sql, programId: string, siteId: string, at: string, n: number,
  table = "public.petri_observations_partitioned"): Promise<void> {
  const [sub] = await sql<{ id: string }[]>`
    insert into public.submissions (site_id, program_id) values (${siteId}, ${programId}) returning submission_id as id`;
  await sql`
    insert into ${sql(table)} (submission_id, site_id, program_id, petri_code, growth_index, created_at)
    select ${sub!.id}, ${siteId}, ${programId}, 'm-' || g, g, ${at}::timestamptz + make_interval(mins => g)
    from generate_series(1, ${n}) g`;
}

async function defaultRows(sql: Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select coalesce(sum(row_count), 0)::int as n from partition_mgmt.default_backlog('petri', 100000)`;
  return r?.n ?? -1;
}

async function leafFor(sql: Sql, siteId: string, at: string): Promise<string | null> {
  const [r] = await sql<{ name: string }[]>`
    select partition_name as name from partition_mgmt.partition_registry
    where table_key = 'petri' and site_id = ${siteId} and is_leaf and not is_default
      and range_start <= ${at}::timestamptz and range_end > ${at}::timestamptz`;
  return r?.name ?? null;
}

describe("maintenance", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("maint", { treeShape: "literal" });
  });
  afterAll(async () => {
    await db.drop();
  });

  it("premake follows now(): with no new data, the next months appear", async () => {
    const f = await seed(db.sql, 0);
    const nextMonth = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) + interval '1 month')::text as t`)[0]!.t;
    const inTwoMonths = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) + interval '2 months')::text as t`)[0]!.t;
    expect(await leafFor(db.sql, f.runningSites[0]!, nextMonth)).toBeNull();
    await db.sql`update partition_mgmt.managed_tables set premake_months = 2`;
    await db.sql`select partition_mgmt.schedule_maintenance()`;
    for (const site of f.runningSites) {
      expect(await leafFor(db.sql, site, nextMonth)).not.toBeNull();
      expect(await leafFor(db.sql, site, inTwoMonths)).not.toBeNull();
    }
    // an ended program gets nothing new
    expect(await leafFor(db.sql, f.endedSites[0]!, nextMonth)).toBeNull();
    const log = await db.sql<{ action: string; status: string }[]>`
      select action, status from partition_mgmt.maintenance_log where table_key = 'petri' order by id`;
    expect(log.map((l) => l.action)).toEqual(["premake", "drain_defaults", "retention", "analyze"]);
    expect(new Set(log.map((l) => l.status))).toEqual(new Set(["ok"]));
  });

  it("moves rows out of DEFAULT partitions (unknown month, unknown site): counts equal, defaults empty", async () => {
    const [{ running, site } = { running: "", site: "" }] = await db.sql<{ running: string; site: string }[]>`
      select p.program_id as running, s.site_id as site from public.pilot_programs p join public.sites s using (program_id)
      where p.name = 'running' limit 1`;
    await addObservations(db.sql, running, site, "2023-05-03T10:00:00Z", 40);     // a month with no partition
    await addObservations(db.sql, running, site, "2023-07-20T10:00:00Z", 15);     // another one
    // a site that has no row in public.sites (and so no partition): lands in the program's default
    const strangerSite = "5e000000-0000-4000-8000-00000000abcd";
    await db.sql`insert into public.submissions (submission_id, site_id, program_id)
      select gen_random_uuid(), ${site}, ${running}`;
    await db.sql`
      insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
      select (select submission_id from public.submissions limit 1), ${strangerSite}, ${running}, 's-' || g, now() - make_interval(hours => g)
      from generate_series(1, 25) g`;
    const before = (await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_partitioned`)[0]!.n;
    const checksumBefore = (await db.sql<{ c: string }[]>`
      select md5(string_agg(observation_id::text || created_at::text, ',' order by observation_id)) as c from public.petri_observations_partitioned`)[0]!.c;
    expect(await defaultRows(db.sql)).toBe(80);

    await runMaintenance(db.sql);

    expect(await defaultRows(db.sql)).toBe(0);
    const after = (await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_partitioned`)[0]!.n;
    const checksumAfter = (await db.sql<{ c: string }[]>`
      select md5(string_agg(observation_id::text || created_at::text, ',' order by observation_id)) as c from public.petri_observations_partitioned`)[0]!.c;
    expect(after).toBe(before);
    expect(checksumAfter).toBe(checksumBefore);
    expect(await leafFor(db.sql, site, "2023-05-10T00:00:00Z")).not.toBeNull();
    expect(await leafFor(db.sql, strangerSite, new Date().toISOString())).not.toBeNull();
    const [keys] = await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.observation_keys where table_key = 'petri'`;
    expect(keys?.n).toBe(after);
    const [drain] = await db.sql<{ rows_moved: number; status: string }[]>`
      select rows_moved::int, status from partition_mgmt.maintenance_log
      where table_key = 'petri' and action = 'drain_defaults' order by id desc limit 1`;
    expect(drain).toEqual({ rows_moved: 80, status: "ok" });
    const validation = await db.sql<{ status: string }[]>`select status from partition_mgmt.validate_partitions()`;
    expect(validation.filter((v) => v.status === "error")).toEqual([]);
  });

  it("health() is silent on a healthy tree and reports each finding when provoked", async () => {
    await runMaintenance(db.sql);
    // a healthy tree: no warning, no error; the lock budget is always said (info). (The findings about
    // the cluster's read replicas are the cluster's, not the tree's: test/replica/replica-health.test.ts.)
    const healthy = (await db.sql<{ severity: string; finding: string; detail: string }[]>`select * from partition_mgmt.health()`)
      .filter((h) => !h.finding.startsWith("replica"));
    expect(healthy.filter((h) => h.severity !== "info")).toEqual([]);
    expect(healthy.map((h) => h.finding)).toEqual(["lock budget", "lock budget"]);
    expect(healthy[0]?.detail).toMatch(/^\d+ statements without the partition keys fit in the lock table at once \(each locks \d+ of \d+ slots; minimum 20\)$/);

    const findings = async () => (await db.sql<{ finding: string }[]>`select finding from partition_mgmt.health()`).map((r) => r.finding);
    // rows in a default
    const [{ running, site } = { running: "", site: "" }] = await db.sql<{ running: string; site: string }[]>`
      select p.program_id as running, s.site_id as site from public.pilot_programs p join public.sites s using (program_id)
      where p.name = 'running' limit 1`;
    await addObservations(db.sql, running, site, "2022-01-05T00:00:00Z", 3);
    expect(await findings()).toContain("rows in default partitions");
    // size threshold and leaf budget
    await db.sql`update partition_mgmt.maintenance_settings set size_threshold_bytes = 1`;
    await db.sql`update partition_mgmt.managed_tables set leaf_budget = 1 where table_key = 'petri'`;
    expect(await findings()).toEqual(expect.arrayContaining(["partition over size threshold", "leaf budget exceeded"]));
    await db.sql`update partition_mgmt.maintenance_settings set size_threshold_bytes = 1073741824`;
    await db.sql`update partition_mgmt.managed_tables set leaf_budget = 5000 where table_key = 'petri'`;
    // next period missing: a new running program created with no premake margin
    await db.sql`update partition_mgmt.managed_tables set premake_months = 0`;
    await db.sql`insert into public.pilot_programs (name, start_date, end_date, company_id)
                 values ('fresh', current_date, current_date + 200, ${COMPANY})`;
    await db.sql`insert into public.sites (program_id, name) select program_id, 'f1' from public.pilot_programs where name = 'fresh'`;
    expect(await findings()).toContain("next period partitions missing");
    // stale maintenance
    await db.sql`update partition_mgmt.maintenance_log set finished_at = finished_at - interval '3 days', started_at = started_at - interval '3 days'`;
    expect(await findings()).toContain("maintenance stale");
    // a failing action: a managed table whose parent has gone
    await db.sql`create table public.zz_gone (observation_id uuid primary key, program_id uuid, site_id uuid, created_at timestamptz)`;
    await db.sql`insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix, tree_shape)
                 values ('zzgone', 'zz_gone', 'zz_gone_partitioned', 'zzg', 'literal')`;
    await db.sql`select partition_mgmt.create_partitioned_table('zzgone')`;
    await db.sql`drop table public.zz_gone_partitioned cascade`;   // its partitions vanish behind the registry's back
    // the app's program insert still succeeds (creation failures are logged, never fatal)
    await db.sql`insert into public.pilot_programs (name, start_date, end_date, company_id)
                 values ('after-break', current_date, current_date + 30, ${COMPANY})`;
    await db.sql`select partition_mgmt.schedule_maintenance()`;
    const all = await findings();
    expect(all).toEqual(expect.arrayContaining(["maintenance action failed", "health check failed"]));
    // the failure of one table did not stop the others
    const [petriOk] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.maintenance_log
      where table_key = 'petri' and status = 'ok' and started_at > now() - interval '1 minute' and action = 'drain_defaults'`;
    expect(petriOk?.n).toBeGreaterThan(0);
    await db.sql`delete from partition_mgmt.managed_tables where table_key = 'zzgone'`;
  });
});

describe("cleanup_empty_partitions and retention", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("cleanup", { treeShape: "literal" });
  });
  afterAll(async () => {
    await db.drop();
  });

  it("drops exactly the empty, old leaves of ended programs", async () => {
    const f = await seed(db.sql);
    // ended program: months -6..-1; put data in month -4 of site e1
    const at = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) - interval '4 months' + interval '3 days')::text as t`)[0]!.t;
    await addObservations(db.sql, f.ended, f.endedSites[0]!, at, 5);
    const leaves = async () => db.sql<{ partition_name: string; program_id: string; range_start: Date | null; is_default: boolean }[]>`
      select partition_name, program_id, range_start, is_default from partition_mgmt.partition_registry
      where is_leaf order by partition_name`; // both managed tables: cleanup covers every table
    const before = await leaves();
    const monthStart = (await db.sql<{ t: Date }[]>`select date_trunc('month', now()) as t`)[0]!.t;
    const fortyDaysAgo = new Date(Date.now() - 40 * 86400_000);

    const dropped = (await db.sql<{ n: number }[]>`select partition_mgmt.cleanup_empty_partitions(40) as n`)[0]!.n;
    const after = new Set((await leaves()).map((l) => l.partition_name));

    const cases = before.map((l) => {
      const endedProgram = l.program_id === f.ended;
      const start = l.range_start ? new Date(l.range_start) : null;
      const rangeEnd = start ? new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1)) : null;
      const shouldDrop = endedProgram && !l.is_default && rangeEnd !== null && rangeEnd < fortyDaysAgo && rangeEnd <= monthStart;
      return { name: l.partition_name, shouldDrop };
    });
    // the leaf holding data is never dropped, whatever its age
    const [dataLeaf] = await db.sql<{ name: string }[]>`
      select distinct tableoid::regclass::text as name from public.petri_observations_partitioned`;
    const dataLeafName = dataLeaf!.name.replace(/^partitions\./, "");
    for (const c of cases) {
      const expectDropped = c.shouldDrop && c.name !== dataLeafName;
      expect({ name: c.name, dropped: !after.has(c.name) }).toEqual({ name: c.name, dropped: expectDropped });
    }
    expect(dropped).toBe(cases.filter((c) => c.shouldDrop && c.name !== dataLeafName).length);
    expect(dropped).toBeGreaterThan(0);
    // running program and every default untouched
    expect(before.filter((l) => l.is_default || l.program_id === f.running).every((l) => after.has(l.partition_name))).toBe(true);
    const errors = (await db.sql<{ status: string }[]>`select status from partition_mgmt.validate_partitions()`).filter((r) => r.status === "error");
    expect(errors).toEqual([]);
    await expect(db.sql`select partition_mgmt.cleanup_empty_partitions(-1)`).rejects.toThrow(/p_days must be a non-negative number of days, got -1/);
  });

  it("trims only the change feed a swap created: a table of the project's with the feed's name keeps its rows", async () => {
    await db.sql`create table public.petri_observations_changes (id serial primary key, changed_at timestamptz not null, note text)`;
    try {
      await db.sql`insert into public.petri_observations_changes (changed_at, note) values (now() - interval '2 days', 'the project''s own row')`;
      await runMaintenance(db.sql);
      const [r] = await db.sql<{ n: number; ran: number }[]>`
        select (select count(*)::int from public.petri_observations_changes) as n,
               (select count(*)::int from partition_mgmt.maintenance_log where action = 'retention' and table_key = 'petri' and status = 'ok') as ran`;
      expect(r).toMatchObject({ n: 1 });
      expect(r!.ran).toBeGreaterThan(0);   // the retention step ran
    } finally {
      await db.sql`drop table public.petri_observations_changes`;
    }
  });

  it("retention archives old leaves (kept, hidden) or drops them, only when configured", async () => {
    const [{ running, site } = { running: "", site: "" }] = await db.sql<{ running: string; site: string }[]>`
      select p.program_id as running, s.site_id as site from public.pilot_programs p join public.sites s using (program_id)
      where p.name = 'running' limit 1`;
    const old = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) - interval '2 months' + interval '1 day')::text as t`)[0]!.t;
    const older = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) - interval '1 months' + interval '1 day')::text as t`)[0]!.t;
    await addObservations(db.sql, running, site, old, 7);
    await addObservations(db.sql, running, site, older, 4);
    const oldLeaf = (await leafFor(db.sql, site, old))!;
    expect(oldLeaf).not.toBeNull();

    // off by default: nothing moves
    await db.sql`select partition_mgmt.schedule_maintenance()`;
    expect(await leafFor(db.sql, site, old)).toBe(oldLeaf);

    // archive: leaves ending at or before (this month - 1 month) leave the table, kept in partitions_archive
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'archive' where table_key = 'petri'`;
    await db.sql`select partition_mgmt.schedule_maintenance()`;
    expect(await leafFor(db.sql, site, old)).toBeNull();
    const [archived] = await db.sql<{ n: number }[]>`select count(*)::int as n from partitions_archive.${db.sql(oldLeaf)}`;
    expect(archived?.n).toBe(7);
    const [visible] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.petri_observations_partitioned where created_at >= ${old}::timestamptz and created_at < ${old}::timestamptz + interval '20 days'`;
    expect(visible?.n).toBe(0);
    expect(await leafFor(db.sql, site, older)).not.toBeNull();   // last month is kept
    const [priv] = await db.sql<{ anon: boolean; auth: boolean }[]>`
      select has_schema_privilege('anon', 'partitions_archive', 'usage') as anon,
             has_schema_privilege('authenticated', 'partitions_archive', 'usage') as auth`;
    expect(priv).toEqual({ anon: false, auth: false });
    const [keys] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.observation_keys k
      where not exists (select from public.petri_observations_partitioned t where t.observation_id = k.observation_id) and k.table_key = 'petri'`;
    expect(keys?.n).toBe(0);

    // drop mode
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
    const anotherOld = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) - interval '3 months' + interval '2 day')::text as t`)[0]!.t;
    const [{ endedProgram, endedSite } = { endedProgram: "", endedSite: "" }] = await db.sql<{ endedProgram: string; endedSite: string }[]>`
      select p.program_id as "endedProgram", s.site_id as "endedSite" from public.pilot_programs p join public.sites s using (program_id)
      where p.name = 'ended' limit 1`;
    await addObservations(db.sql, endedProgram, endedSite, anotherOld, 2);
    const dropLeaf = (await leafFor(db.sql, endedSite, anotherOld))!;
    await db.sql`select partition_mgmt.schedule_maintenance()`;
    const [exists] = await db.sql<{ r: string | null }[]>`select to_regclass(${"partitions." + dropLeaf})::text as r`;
    expect(exists?.r).toBeNull();
    const [archivedCopy] = await db.sql<{ r: string | null }[]>`select to_regclass(${"partitions_archive." + dropLeaf})::text as r`;
    expect(archivedCopy?.r).toBeNull();
    await db.sql`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
  });
});

describe("maintenance reads what changed, not every row (analyze_threshold, max_rows_per_value)", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("estimates", { treeShape: "sized", targetRowsPerLeaf: 1000 });
  });
  afterAll(async () => {
    await db.drop();
  });

  /** Inserts in one session, commits, and waits until the other sessions' statistics show the changes. */
  async function insertAndFlush(programId: string, siteId: string, n: number, leaf: string): Promise<void> {
    const before = await modsSinceAnalyze(leaf);
    const one = await db.sql.reserve();
    try {
      await addObservations(one, programId, siteId, new Date(Date.now() - 86400_000).toISOString(), n);
      await one`select pg_stat_force_next_flush()`;   // flushed when this session goes idle
    } finally {
      one.release();
    }
    for (let i = 0; i < 100 && (await modsSinceAnalyze(leaf)) < before + n; i++) await sleep(50);
    expect(await modsSinceAnalyze(leaf)).toBeGreaterThanOrEqual(before + n);
  }
  async function modsSinceAnalyze(leaf: string): Promise<number> {
    const [r] = await db.sql<{ n: number }[]>`select coalesce(pg_stat_get_mod_since_analyze(${leaf}::regclass), 0)::int as n`;
    return r!.n;
  }
  async function rootDefault(): Promise<string> {
    const [r] = await db.sql<{ leaf: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as leaf from partition_mgmt.partition_registry
      where table_key = 'petri' and level = 'program' and is_default`;
    return r!.leaf;
  }

  it("analyzes a leaf only past autovacuum's threshold, and any changed leaf where autovacuum is off", async () => {
    const f = await seed(db.sql);
    const leaf = await rootDefault();
    // autovacuum kept off this leaf first: every change is maintenance's to analyze
    await db.sql`${db.sql.unsafe(`alter table ${leaf} set (autovacuum_enabled = false)`)}`;
    await insertAndFlush(f.running, f.runningSites[0]!, 200, leaf);
    const [t0] = await db.sql<{ t: number }[]>`select partition_mgmt.analyze_threshold(${leaf}::regclass) as t`;
    expect(t0!.t).toBe(0);
    expect((await db.sql<{ n: number }[]>`select partition_mgmt.analyze_all_partitions(false, 'petri') as n`)[0]!.n).toBe(1);
    expect(await modsSinceAnalyze(leaf)).toBe(0);

    // autovacuum on, with a threshold it will not reach here: a few changes are left to it
    await db.sql`${db.sql.unsafe(`alter table ${leaf} set (autovacuum_enabled = true, autovacuum_analyze_threshold = 1000000, autovacuum_analyze_scale_factor = 0.5)`)}`;
    const [t1] = await db.sql<{ t: number; reltuples: number }[]>`
      select partition_mgmt.analyze_threshold(${leaf}::regclass) as t, reltuples from pg_class where oid = ${leaf}::regclass`;
    expect(t1!.t).toBeCloseTo(1000000 + 0.5 * t1!.reltuples, 3);
    await insertAndFlush(f.running, f.runningSites[0]!, 20, leaf);
    expect((await db.sql<{ n: number }[]>`select partition_mgmt.analyze_all_partitions(false, 'petri') as n`)[0]!.n).toBe(0);
    expect(await modsSinceAnalyze(leaf)).toBeGreaterThanOrEqual(20);

    // without storage parameters: the server's settings
    await db.sql`${db.sql.unsafe(`alter table ${leaf} reset (autovacuum_enabled, autovacuum_analyze_threshold, autovacuum_analyze_scale_factor)`)}`;
    const [t2] = await db.sql<{ t: number; expected: number }[]>`
      select partition_mgmt.analyze_threshold(${leaf}::regclass) as t,
             current_setting('autovacuum_analyze_threshold')::float8
             + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(reltuples, 0) as expected
      from pg_class where oid = ${leaf}::regclass`;
    expect(t2!.t).toBeCloseTo(t2!.expected, 3);
  });

  it("counts a shared leaf's programs only when its statistics let one reach the target, and still finds one that grew since", async () => {
    const leaf = await rootDefault();
    await db.sql`${db.sql.unsafe(`alter table ${leaf} set (autovacuum_enabled = false)`)}`;   // statistics as this test leaves them
    await db.sql`delete from public.petri_observations_partitioned`;
    const [f] = await db.sql<{ a: string; b: string }[]>`
      select (select program_id from public.pilot_programs where name = 'running') as a, (select program_id from public.pilot_programs where name = 'ended') as b`;
    const sites = await db.sql<{ program_id: string; site_id: string }[]>`select program_id, site_id from public.sites order by name`;
    const siteOf = (p: string) => sites.find((s) => s.program_id === p)!.site_id;
    // two programs of 550 rows share the root's DEFAULT leaf: 1,100 rows, past 90% of the target of
    // 1,000, but neither program can hold more than about 550
    // (a day in both programs' time: two months ago)
    const [{ at } = { at: "" }] = await db.sql<{ at: string }[]>`select (date_trunc('month', now()) - interval '2 months' + interval '3 days')::text as at`;
    await addObservations(db.sql, f!.a, siteOf(f!.a), at, 550);
    await addObservations(db.sql, f!.b, siteOf(f!.b), at, 550);
    await db.sql`${db.sql.unsafe(`analyze ${leaf}`)}`;
    const scans = async () => {
      const one = await db.sql.reserve();
      try {
        await one`begin`;
        // (the session's counts not yet flushed include its earlier statements: the difference)
        const [b] = await one<{ n: number }[]>`select pg_stat_get_xact_numscans(${leaf}::regclass)::int as n`;
        const c = await one<{ program_id: string }[]>`select program_id from partition_mgmt.promotion_candidates('petri')`;
        const [a] = await one<{ n: number }[]>`select pg_stat_get_xact_numscans(${leaf}::regclass)::int as n`;
        await one`rollback`;
        return { candidates: c.map((x) => x.program_id), scans: a!.n - b!.n };
      } finally {
        one.release();
      }
    };
    const [bound] = await db.sql<{ b: number }[]>`select partition_mgmt.max_rows_per_value(${leaf}::regclass, 'program_id') as b`;
    expect(bound!.b).toBeGreaterThan(500);
    expect(bound!.b).toBeLessThan(900);
    expect(await scans()).toEqual({ candidates: [], scans: 0 });

    // one program grows by 500 rows after the statistics were taken: counted, and found
    await insertAndFlush(f!.a, siteOf(f!.a), 500, leaf);
    const grown = await scans();
    expect(grown.candidates).toEqual([f!.a]);
    expect(grown.scans).toBeGreaterThan(0);
  });

  it("holds a promotion the lock budget does not allow: nothing built, health() says why; it runs once the budget allows", async () => {
    // the program that grew in the test above is due
    const [due] = await db.sql<{ level: string }[]>`select level from partition_mgmt.promotion_candidates('petri')`;
    expect(due?.level).toBe("program");
    const registry = async () =>
      (await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.partition_registry where table_key = 'petri'`)[0]!.n;
    const lastPromote = async () => (await db.sql<{ action: string; detail: string }[]>`
      select detail ->> 'action' as action, detail ->> 'detail' as detail from partition_mgmt.maintenance_log
      where table_key = 'petri' and action = 'promote' order by id desc limit 1`)[0];
    const heldFindings = async () =>
      db.sql<{ severity: string; detail: string }[]>`select severity, detail from partition_mgmt.health() where finding = 'promotion held' and table_key = 'petri'`;
    const before = await registry();
    const [{ min } = { min: 0 }] = await db.sql<{ min: number }[]>`select min_keyless_statements as min from partition_mgmt.managed_tables where table_key = 'petri'`;
    // room in the lock table for one more leaf, not for a program's partition and its DEFAULT leaf
    await db.sql`update partition_mgmt.managed_tables m set min_keyless_statements = partition_mgmt.lock_capacity()
      / (partition_mgmt.keyless_statement_locks(m.parent) + 1 + (select count(*) from pg_catalog.pg_index i where i.indrelid = m.parent))
      where m.table_key = 'petri'`;
    try {
      await runMaintenance(db.sql, "petri");
      const held = await lastPromote();
      expect(held?.action).toBe("held");
      expect(held?.detail).toMatch(/^promoting program .* would take the tree over its lock budget: .* fewer than the minimum of \d+\. .*raise target_rows_per_leaf/);
      expect(await registry()).toBe(before);
      expect(await db.sql`select table_key from partition_mgmt.promotions`).toHaveLength(0);
      const findings = await heldFindings();
      expect(findings.map((f) => f.severity)).toEqual(["warning"]);
      expect(findings[0]!.detail).toMatch(/would take the tree over its lock budget/);
    } finally {
      await db.sql`update partition_mgmt.managed_tables set min_keyless_statements = ${min} where table_key = 'petri'`;
    }
    // within the budget again: maintenance promotes it, and health() no longer warns
    await runMaintenance(db.sql, "petri");
    const [cut] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.maintenance_log where table_key = 'petri' and action = 'promote' and detail ->> 'action' = 'cutover'`;
    expect(cut!.n).toBeGreaterThan(0);
    expect(await registry()).toBeGreaterThan(before);
    expect(await heldFindings()).toHaveLength(0);
  });
});

describe("promotion takes the rows per program and site of a shared leaf from the daily metrics (the live table)", () => {
  let db: FreshDb;
  let f: Fixture;
  let leaf: string;
  beforeAll(async () => {
    db = await freshDatabase("metrics_counts", { treeShape: "sized", targetRowsPerLeaf: 1000 });
    f = await seed(db.sql);
    expect((await migrateOnline(db.sql, "petri", { swap: true })).phase).toBe("swapped");
    await db.sql`select partition_mgmt.finalize_migration('petri')`;
    const [r] = await db.sql<{ leaf: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as leaf from partition_mgmt.partition_registry
      where table_key = 'petri' and level = 'program' and is_default`;
    leaf = r!.leaf;
    await db.sql`${db.sql.unsafe(`alter table ${leaf} set (autovacuum_enabled = false)`)}`;   // statistics as the tests leave them
    // both programs share the root's DEFAULT leaf: 550 and 880 rows (two months ago), against the
    // target of 1,000 (counted from 900)
    const [{ at } = { at: "" }] = await db.sql<{ at: string }[]>`select (date_trunc('month', now()) - interval '2 months' + interval '3 days')::text as at`;
    await addObservations(db.sql, f.running, f.runningSites[0]!, at, 550, "public.petri_observations");
    await addObservations(db.sql, f.ended, f.endedSites[0]!, at, 440, "public.petri_observations");
    await addObservations(db.sql, f.ended, f.endedSites[1]!, at, 440, "public.petri_observations");
    await db.sql`${db.sql.unsafe(`analyze ${leaf}`)}`;
    await db.sql`select analytics.refresh_daily_metrics()`;
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** promotion_candidates in a transaction of its own, with what it read from the shared leaf. */
  async function candidates(): Promise<{ candidates: string[]; seqScans: number; indexRows: number }> {
    const one = await db.sql.reserve();
    try {
      await one`begin`;
      const read = async () => (await one<{ seq: number; idx: number }[]>`
        select pg_stat_get_xact_numscans(${leaf}::regclass)::int as seq,
               coalesce((select sum(pg_stat_get_xact_tuples_returned(i.indexrelid)) from pg_index i where i.indrelid = ${leaf}::regclass), 0)::int as idx`)[0]!;
      const b = await read();
      const c = await one<{ id: string }[]>`select coalesce(site_id, program_id) as id from partition_mgmt.promotion_candidates('petri')`;
      const a = await read();
      await one`rollback`;
      return { candidates: c.map((x) => x.id), seqScans: a.seq - b.seq, indexRows: a.idx - b.idx };
    } finally {
      one.release();
    }
  }
  /** rows_per_value_from_metrics beside a count of the leaf's rows per value. */
  async function fromMetricsAndCounted(level: "program" | "site", rel: string, program: string | null) {
    const col = level === "program" ? "program_id" : "site_id";
    const [r] = await db.sql<{ metrics: Record<string, number> | null; counted: Record<string, number> | null }[]>`
      select (select jsonb_object_agg(value, rows) from partition_mgmt.rows_per_value_from_metrics('petri', ${rel}::regclass, ${level}, ${program}::uuid)) as metrics,
             (select jsonb_object_agg(v, n) from (select x.${db.sql(col)} as v, count(*) as n from ${db.sql.unsafe(rel)} x group by 1) c) as counted`;
    return r!;
  }

  it("counts nothing while the metrics put no program near the target, where the statistics would have counted the leaf", async () => {
    expect((await db.sql<{ on: boolean }[]>`select partition_mgmt.metrics_count_rows('petri') as on`)[0]!.on).toBe(true);
    // a day of writes: 30 rows of the smaller program, yesterday (its group is written since the refresh)
    await addObservations(db.sql, f.running, f.runningSites[1]!, new Date(Date.now() - 86400_000).toISOString(), 30, "public.petri_observations");
    await db.sql`select pg_stat_force_next_flush()`;
    // the statistics' bound (the larger program's 880 rows plus every row changed since) reaches 900
    for (let i = 0; i < 100; i++) {
      const [b] = await db.sql<{ b: number }[]>`select partition_mgmt.max_rows_per_value(${leaf}::regclass, 'program_id') as b`;
      if (b!.b >= 900) break;
      await sleep(50);
    }
    const [bound] = await db.sql<{ b: number }[]>`select partition_mgmt.max_rows_per_value(${leaf}::regclass, 'program_id') as b`;
    expect(bound!.b).toBeGreaterThanOrEqual(900);
    // the metrics: 580 and 880, exact (the written group counted in the leaf)
    const m = await fromMetricsAndCounted("program", leaf, null);
    expect(m.metrics).toEqual(m.counted);
    expect(m.metrics).toEqual({ [f.running]: 580, [f.ended]: 880 });
    const c = await candidates();
    expect(c.candidates).toEqual([]);
    expect(c.seqScans).toBe(0);
    expect(c.indexRows).toBeLessThanOrEqual(30);   // the written group only, through the site index
  });

  it("counts the program they put near the target, and finds it once it fills a leaf; exact after moves and deletes", async () => {
    const yesterday = new Date(Date.now() - 86400_000).toISOString();
    await addObservations(db.sql, f.ended, f.endedSites[0]!, yesterday, 30, "public.petri_observations");
    expect((await candidates()).candidates).toEqual([]);   // 910 of 1,000
    // a row moved from one program to the other, a row deleted, a day moved: still exact
    await db.sql`update public.petri_observations set program_id = ${f.ended}, site_id = ${f.endedSites[1]!}
                 where observation_id = (select observation_id from public.petri_observations where program_id = ${f.running} limit 1)`;
    await db.sql`delete from public.petri_observations where observation_id = (select observation_id from public.petri_observations where program_id = ${f.running} limit 1)`;
    await db.sql`update public.petri_observations set created_at = created_at - interval '5 days'
                 where observation_id = (select observation_id from public.petri_observations where program_id = ${f.ended} limit 1)`;
    const m = await fromMetricsAndCounted("program", leaf, null);
    expect(m.metrics).toEqual(m.counted);
    expect(m.metrics).toEqual({ [f.running]: 578, [f.ended]: 911 });
    await addObservations(db.sql, f.ended, f.endedSites[1]!, yesterday, 89, "public.petri_observations");
    expect((await candidates()).candidates).toEqual([f.ended]);   // 1,000 rows
  });

  it("a program's DEFAULT leaf: its sites from the metrics too", async () => {
    await runMaintenance(db.sql, "petri");   // promotes the program that filled a leaf
    const [r] = await db.sql<{ leaf: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as leaf from partition_mgmt.partition_registry
      where table_key = 'petri' and level = 'site' and is_default and program_id = ${f.ended}`;
    expect(r?.leaf).toBeTruthy();
    await addObservations(db.sql, f.ended, f.endedSites[1]!, new Date(Date.now() - 2 * 86400_000).toISOString(), 12, "public.petri_observations");
    const m = await fromMetricsAndCounted("site", r!.leaf, f.ended);
    expect(m.metrics).toEqual(m.counted);
    expect(Object.keys(m.metrics ?? {}).sort()).toEqual([...f.endedSites].sort());
    // a level without its program, or one that is not a shared leaf's, is refused with the arguments
    await expect(db.sql`select * from partition_mgmt.rows_per_value_from_metrics('petri', ${r!.leaf}::regclass, 'site', null)`)
      .rejects.toThrow(/^rows_per_value_from_metrics\(petri, .*, site, <NULL>\): the level is 'program' \(the root's DEFAULT leaf, no program\) or 'site' \(a program's DEFAULT leaf, with its program\)$/);
    await expect(db.sql`select * from partition_mgmt.rows_per_value_from_metrics('petri', ${r!.leaf}::regclass, 'month', ${f.ended}::uuid)`)
      .rejects.toThrow(/^rows_per_value_from_metrics\(petri, .*, month, /);
  });

  it("writes the metrics did not see (triggers off): the leaf is counted as without them, and a program that grew is found", async () => {
    // 450 rows of the remaining program written with the table's triggers off (no group marked)
    await asSuperuser(async (admin) => {
      await admin.begin(async (tx) => {
        await tx`set local session_replication_role = replica`;
        await tx`
          insert into public.petri_observations (submission_id, site_id, program_id, company_id, petri_code, growth_index, created_at)
          select (select submission_id from public.submissions where program_id = ${f.running} limit 1), ${f.runningSites[0]!}, ${f.running},
                 ${COMPANY}, 'unseen-' || g, 1, now() - interval '3 days' + make_interval(mins => g)
          from generate_series(1, 450) g`;
      });
    }, db.name);
    // the root's DEFAULT leaf is a new table since the promotion; its statistics see the rows
    const [r] = await db.sql<{ leaf: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as leaf from partition_mgmt.partition_registry
      where table_key = 'petri' and level = 'program' and is_default`;
    leaf = r!.leaf;
    await db.sql`${db.sql.unsafe(`analyze ${leaf}`)}`;
    const m = await fromMetricsAndCounted("program", leaf, null);
    expect(m.metrics).toEqual({ [f.running]: 578 });
    expect(m.counted).toEqual({ [f.running]: 1028 });
    const c = await candidates();
    expect(c.candidates).toEqual([f.running]);
  });
});

describe("maintenance steps end within step_seconds (maintenance_settings.step_seconds)", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("step_time", { treeShape: "literal" });
  });
  afterAll(async () => {
    await db.drop();
  });

  it("premake of many months runs in steps of about a second each, and completes", async () => {
    const f = await seed(db.sql, 0);
    await db.sql`insert into public.sites (program_id, name) select ${f.running}, 'extra ' || g from generate_series(1, 10) g`;
    // every CREATE TABLE 40 ms slower (an event trigger, as a busy server): a step that stopped
    // only at its lock budget (about 50 partitions here) would take over 2 s
    await asSuperuser((admin) => admin.unsafe(`create function public.slow_create_table() returns event_trigger language plpgsql as $f$ begin perform pg_sleep(0.04); end $f$;
                          create event trigger slow_create_table on ddl_command_end when tag in ('CREATE TABLE') execute function public.slow_create_table()`), db.name);
    await db.sql`update partition_mgmt.maintenance_settings set step_seconds = 1`;
    await db.sql`update partition_mgmt.managed_tables set premake_months = 18 where table_key = 'petri'`;
    const [b] = await db.sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.maintenance_log`;
    await runMaintenance(db.sql, "petri");
    const steps = await db.sql<{ seconds: number; partitions: number; more: boolean }[]>`
      select extract(epoch from finished_at - started_at)::float8 as seconds, partitions_touched as partitions,
             coalesce((detail ->> 'more')::boolean, false) as more
      from partition_mgmt.maintenance_log where id > ${b!.id} and action = 'premake' order by id`;
    const total = steps.reduce((a, x) => a + x.partitions, 0);
    console.log(`[maintenance] premake steps (s / partitions): ${steps.map((x) => `${x.seconds.toFixed(2)}/${x.partitions}`).join(", ")}`);
    expect(total).toBeGreaterThan(100);   // 12 sites, the 11 more months to the program's end each
    expect(steps.length).toBeGreaterThan(1);
    // a step stops taking new partitions after 1 s: it ends with the one it was creating
    for (const x of steps) expect(x.seconds).toBeLessThan(1.5);
    // and nothing is left: every site of the running program has its months up to the program's end
    const [missing] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.sites s
      where s.program_id = ${f.running}
        and not exists (select from partition_mgmt.partition_registry r where r.table_key = 'petri' and r.site_id = s.site_id
                          and r.is_leaf and r.range_start <= current_date + 360 and r.range_end > current_date + 360)`;
    expect(missing!.n).toBe(0);
  });
});

describe("drops and the tables the foreign keys reference", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("drop_refs", { treeShape: "literal" });
  });
  afterAll(async () => {
    await db.drop();
  });

  it("drops leaves without waiting for the tables their foreign keys reference (an app transaction reading pilot_programs and sites)", async () => {
    const f = await seed(db.sql);
    // the live table partitioned (its leaves carry the foreign keys the legacy table had)
    expect((await migrateOnline(db.sql, "petri", { swap: true })).phase).toBe("swapped");
    await db.sql`select partition_mgmt.finalize_migration('petri')`;
    const [fks] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_constraint where conrelid = 'public.petri_observations'::regclass and contype = 'f'`;
    expect(fks?.n).toBeGreaterThanOrEqual(2);
    const anotherOld = (await db.sql<{ t: string }[]>`select (date_trunc('month', now()) - interval '5 months' + interval '2 day')::text as t`)[0]!.t;
    await addObservations(db.sql, f.ended, f.endedSites[0]!, anotherOld, 2, "public.petri_observations");
    const dropLeaf = (await leafFor(db.sql, f.endedSites[0]!, anotherOld))!;
    const reader = connect(db.url);
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let readerIn!: () => void;
    const inside = new Promise<void>((r) => { readerIn = r; });
    const tx = reader.begin(async (t) => {
      await t`select count(*) from public.pilot_programs`;
      await t`select count(*) from public.sites`;
      readerIn();
      await held;
    });
    try {
      await inside;
      await db.sql.begin(async (t) => {
        await t`set local statement_timeout = '20s'`;
        // empty leaves first (cleanup), then the leaf with rows (retention)
        const [cleaned] = await t<{ n: number }[]>`select partition_mgmt.cleanup_empty_partitions(40) as n`;
        expect(cleaned?.n).toBeGreaterThan(0);
        await t`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
        const [retained] = await t<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
        expect(retained?.n).toBeGreaterThan(0);
        await t`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
      });
      const [gone] = await db.sql<{ r: string | null }[]>`select to_regclass(${"partitions." + dropLeaf})::text as r`;
      expect(gone?.r).toBeNull();
    } finally {
      release();
      await tx;
      await reader.end();
    }
  });
});

describe("maintenance concurrency and lock hygiene", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("maint_load", { treeShape: "literal" });
  });
  afterAll(async () => {
    await db.drop();
  });

  it("two runs at once: no error, the second skips, no work is doubled", async () => {
    await seed(db.sql);
    const a = connect(db.url);
    const b = connect(db.url);
    try {
      // a holds the maintenance lock in an open transaction while b tries
      await a.begin(async (tx) => {
        await tx`select partition_mgmt.schedule_maintenance()`;
        await b`select partition_mgmt.schedule_maintenance()`;
        await runMaintenance(b);
      });
    } finally {
      await a.end();
      await b.end();
    }
    const runs = await db.sql<{ status: string }[]>`select status from partition_mgmt.maintenance_log where action = 'run' order by id`;
    expect(runs.map((r) => r.status)).toEqual(["ok", "skipped", "skipped"]);
    // and the two entry points really run concurrently without error
    const c = connect(db.url, 2);
    try {
      await Promise.all([runMaintenance(c), c`select partition_mgmt.schedule_maintenance()`]);
    } finally {
      await c.end();
    }
    const statuses = await db.sql<{ status: string }[]>`select status from partition_mgmt.maintenance_log where status = 'error'`;
    expect(statuses).toEqual([]);
  });

  it("under a read/write load, maintenance causes no error, and no app statement waits longer than its lock_timeout plus one step", async () => {
    const [{ running } = { running: "" }] = await db.sql<{ running: string }[]>`
      select program_id as running from public.pilot_programs where name = 'running'`;
    const sites = (await db.sql<{ id: string }[]>`select site_id as id from public.sites where program_id = ${running}`).map((r) => r.id);
    const [sub] = await db.sql<{ id: string }[]>`
      insert into public.submissions (site_id, program_id) values (${sites[0]!}, ${running}) returning submission_id as id`;
    const lockTimeoutMs = 200;
    await db.sql`update partition_mgmt.maintenance_settings set lock_timeout = ${`${lockTimeoutMs}ms`}`;

    // An app statement waits behind a maintenance lock request for at most that request's
    // lock_timeout, plus the time the step holds the lock once granted, because every step commits
    // on its own. So no app statement may wait longer than lock_timeout + the longest step (from
    // maintenance_log) + 1 s of slack for CPU contention on this shared machine, and none as long as
    // a whole run (what a run without commit-per-step would make it wait). The app's own
    // lock_timeout (10 s) is only a safety net: any error fails the test.
    const app = connect(db.url, 6, { connection: { lock_timeout: 10_000 } });
    let stop = false;
    const errors: string[] = [];
    let maxWait = 0;
    let statements = 0;
    const timed = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      try {
        await fn();
      } catch (e) {
        errors.push((e as Error).message);
      }
      maxWait = Math.max(maxWait, performance.now() - t0);
      statements++;
    };
    const writer = async (i: number) => {
      while (!stop) {
        // current month, and also stray old months that land in defaults and get drained
        const when = i % 2 === 0 ? "now()" : `'2021-0${1 + (statements % 9)}-15'::timestamptz`;
        await timed(() => app.unsafe(`insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
          values ('${sub!.id}', '${sites[i % sites.length]}', '${running}', 'load', ${when})`));
      }
    };
    const reader = async () => {
      while (!stop) {
        await timed(() => app`select count(*) from public.petri_observations_partitioned where program_id = ${running} and site_id = ${sites[0]!}`);
      }
    };
    const loops = [writer(0), writer(1), writer(2), reader(), reader()];
    const maintenance = connect(db.url);
    try {
      await sleep(300);
      for (let i = 0; i < 3; i++) {
        await runMaintenance(maintenance);
      }
    } finally {
      stop = true;
      await Promise.all(loops);
      await maintenance.end();
      await app.end();
    }
    const [steps] = await db.sql<{ step: number; run: number }[]>`
      select max(extract(epoch from finished_at - started_at) * 1000) filter (where action <> 'run')::float8 as step,
             min(extract(epoch from finished_at - started_at) * 1000) filter (where action = 'run' and status <> 'skipped')::float8 as run
      from partition_mgmt.maintenance_log`;
    const bound = lockTimeoutMs + (steps?.step ?? 0) + 1000;
    console.log(`maintenance under load: ${statements} app statements, longest ${maxWait.toFixed(1)} ms wall clock ` +
      `(maintenance lock_timeout ${lockTimeoutMs} ms, longest step ${(steps?.step ?? 0).toFixed(1)} ms, shortest run ${(steps?.run ?? 0).toFixed(1)} ms), ${errors.length} errors`);
    expect(errors).toEqual([]);
    expect(statements).toBeGreaterThan(100);
    expect(maxWait).toBeLessThan(bound);
    // (An app statement queues behind a maintenance lock request for at most that request's
    // lock_timeout, plus the milliseconds the step holds the lock once granted; without
    // lock_timeout and commit-per-step the app would wait for whole runs and fail above.)
    const failed = await db.sql`select action, error from partition_mgmt.maintenance_log where status = 'error'`;
    expect(failed).toEqual([]);
  });
});

describe("maintenance jobs on pg_cron (scheduling only; test/partitions/pg-cron.test.ts waits for a real run)", () => {
  const sql = connect(testEnv.dbUrl);
  afterAll(async () => {
    try {
      await sql`select * from partition_mgmt.set_maintenance_job(null, null, true)`;
    } finally {
      await sql.end();
    }
  });

  it("the migration scheduled the named jobs once; setup replaces, never duplicates; jobs can be paused", async () => {
    const jobs = await sql<{ jobname: string; schedule: string; command: string }[]>`
      select jobname, schedule, command from cron.job where jobname like 'partition-%' order by jobname`;
    const [{ runner } = { runner: "" }] = await sql<{ runner: string }[]>`select partition_mgmt.maintenance_runner() as runner`;
    expect(runner).toMatch(/^do \$run\$ .*partition_mgmt\.maintenance_begin\(null\).*commit.*partition_mgmt\.maintenance_continue/);
    expect(jobs).toEqual([
      { jobname: "partition-cron-history-purge", schedule: "30 3 * * *", command: "select partition_mgmt.purge_cron_history()" },
      { jobname: "partition-maintenance-nightly", schedule: "0 2 * * *", command: runner },
      { jobname: "partition-statistics-weekly", schedule: "0 3 * * 0", command: "select partition_mgmt.weekly_statistics()" },
    ]);
    await sql`select * from partition_mgmt.setup_maintenance_jobs()`;
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from cron.job where jobname like 'partition-%'`;
    expect(n).toBe(3);
    const paused = await sql<{ active: boolean }[]>`select active from partition_mgmt.set_maintenance_job(null, null, false)`;
    expect(paused.map((p) => p.active)).toEqual([false, false, false]);
    const resumed = await sql<{ active: boolean }[]>`select active from partition_mgmt.set_maintenance_job(null, null, true)`;
    expect(resumed.map((p) => p.active)).toEqual([true, true, true]);
    await expect(sql`select * from partition_mgmt.set_maintenance_job('partition-nope')`).rejects.toThrow(/no maintenance job named "partition-nope"/);
  });

  it("the query statistics view is there for operators only", async () => {
    const [v] = await sql<{ svc: boolean; auth: boolean; anon: boolean }[]>`
      select has_table_privilege('service_role', 'partition_mgmt.v_observation_query_stats', 'select') as svc,
             has_table_privilege('authenticated', 'partition_mgmt.v_observation_query_stats', 'select') as auth,
             has_table_privilege('anon', 'partition_mgmt.v_observation_query_stats', 'select') as anon`;
    expect(v).toEqual({ svc: true, auth: false, anon: false });
    await sql`select count(*) from public.petri_observations where program_id = gen_random_uuid()`;
    const rows = await sql<{ calls: number }[]>`
      select calls::int from partition_mgmt.v_observation_query_stats where query ilike '%petri_observations where program_id%'`;
    expect(rows.length).toBeGreaterThan(0);
  });
});
