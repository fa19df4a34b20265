// The guards of the online migration and of maintenance, each provoked once (each of these
// survived a hand-injected defect before it had a test here):
//  - validation compares contents, not only counts: a copy whose contents differ with equal counts
//    per program/site/month fails the checksum, names the differing id, and stays `backfilled`;
//  - the swap re-checks the two tables right before it swaps: tables that diverged between the
//    validation and the swap are refused, nothing swapped;
//  - cleanup and retention leave a table alone while it is being migrated (its copy's leaves are
//    empty or filling), and work again once it is not;
//  - partition DDL gives up after its lock_timeout and attempts when another session holds a lock
//    on the DEFAULT it must attach next to: maintenance logs the failure instead of waiting.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backfill, validate, startMigration, rollback } from "../../scripts/lib/migration-driver.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { sleep } from "../helpers/time.ts";

describe("validation and swap guards", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_guards", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("a copy whose contents differ with equal counts per group fails the checksum and stays backfilled", async () => {
    await startMigration(db.sql, "petri");
    await backfill(db.sql, "petri", { batchSize: 1000 });
    expect(await phaseOf(db.sql, "petri")).toBe("backfilled");
    // a change that bypasses the sync trigger: same keys, same counts everywhere, other content
    const [victim] = await db.sql<{ id: string }[]>`
      select observation_id as id from public.petri_observations order by observation_id limit 1`;
    await db.sql`update public.petri_observations_partitioned set growth_index = coalesce(growth_index, 0) + 1
                 where observation_id = ${victim!.id}`;

    const rows = await validate(db.sql, "petri");
    const byCheck = Object.fromEntries(rows.map((r) => [r.check_name, r]));
    expect(byCheck["row count"]?.status).toBe("ok");
    expect(byCheck["counts per program/site/month"]?.status).toBe("ok");
    expect(byCheck["content checksum"]?.status).toBe("mismatch");
    expect(byCheck["first differing rows"]?.detail).toContain(victim!.id);
    expect(await phaseOf(db.sql, "petri")).toBe("backfilled");
    await expect(db.sql`select * from partition_mgmt.swap_tables('petri')`).rejects.toThrow(/not validated/);

    // put it back: the same validation then passes
    await db.sql`update public.petri_observations_partitioned p set growth_index = l.growth_index
                 from public.petri_observations l where l.observation_id = p.observation_id and p.observation_id = ${victim!.id}`;
    expect((await validate(db.sql, "petri")).filter((r) => r.status !== "ok")).toEqual([]);
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
  });

  it("the pre-check warns about a view that reads the table with its owner's rights (it bypasses RLS)", async () => {
    await db.sql`create view public.petri_everything as select observation_id, company_id from public.petri_observations`;
    await db.sql`grant select on public.petri_everything to authenticated`;
    await db.sql`create view public.petri_mine with (security_invoker = true) as select observation_id from public.petri_observations`;
    await db.sql`grant select on public.petri_mine to authenticated`;
    try {
      const rows = await db.sql<{ check_name: string; status: string; detail: string }[]>`
        select check_name, status, detail from partition_mgmt.pre_migration_check('petri') where check_name like 'view %'`;
      expect(rows).toEqual([{ check_name: "view public.petri_everything", status: "warning",
        detail: expect.stringMatching(/no security_invoker.*RLS does not apply.*lint 0010.*alter view public.petri_everything set \(security_invoker = true\)/) }]);
    } finally {
      await db.sql`drop view public.petri_everything, public.petri_mine`;
    }
  });

  it("tables that diverged between validation and the swap are refused, nothing swapped", async () => {
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
    const [victim] = await db.sql<{ id: string }[]>`
      select observation_id as id from public.petri_observations order by observation_id desc limit 1`;
    await db.sql`delete from public.petri_observations_partitioned where observation_id = ${victim!.id}`;

    await expect(db.sql`select * from partition_mgmt.swap_tables('petri', '1s', 2)`)
      .rejects.toThrow(/final check .*failed for "petri": .* has 2160 rows, .* has 2159/);
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
    const [live] = await db.sql<{ kind: string; old: string | null }[]>`
      select (select relkind::text from pg_class where oid = 'public.petri_observations'::regclass) as kind,
             to_regclass('public.petri_observations_old')::text as old`;
    expect(live).toEqual({ kind: "r", old: null });
    await rollback(db.sql, "petri");
  });
});

describe("maintenance leaves a table being migrated alone", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_maint", { treeShape: "literal" });
    // the literal tree of the demo fits fewer than 20 statements without the keys in Micro's lock
    // table (pre_migration_check would refuse it): lower the bar for this test
    await db.sql`update partition_mgmt.managed_tables set min_keyless_statements = 5`;
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("cleanup and retention change nothing while a migration runs, and act once it is rolled back", async () => {
    // an ended program whose months lie well in the past: every leaf of it is empty
    const [company] = await db.sql<{ id: string }[]>`select company_id as id from public.companies limit 1`;
    const [ended] = await db.sql<{ id: string }[]>`
      insert into public.pilot_programs (name, start_date, end_date, company_id)
      values ('long ended', date_trunc('month', now())::date - interval '10 months', date_trunc('month', now())::date - interval '6 months', ${company!.id})
      returning program_id as id`;
    await db.sql`insert into public.sites (program_id, name) values (${ended!.id}, 'gone 1'), (${ended!.id}, 'gone 2')`;

    await startMigration(db.sql, "petri");
    await backfill(db.sql, "petri", { batchSize: 500, maxBatches: 2 });
    expect(await phaseOf(db.sql, "petri")).toBe("backfilling");
    const leaves = async (table: string) => (await db.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.partition_registry where table_key = ${table} and is_leaf`)[0]!.n;
    const copied = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_partitioned`)[0]!.n;
    const petriBefore = await leaves("petri");
    const gasifierBefore = await leaves("gasifier");
    // two batches of at most 500 (the orchestrator sizes each by the time the last one took)
    const copiedBefore = await copied();
    expect(copiedBefore).toBeGreaterThanOrEqual(200);
    expect(copiedBefore).toBeLessThanOrEqual(1000);

    // gasifier is not being migrated: its empty leaves of the ended program go; petri's stay
    const [cleaned] = await db.sql<{ n: number }[]>`select partition_mgmt.cleanup_empty_partitions(0) as n`;
    expect(cleaned?.n).toBeGreaterThan(0);
    expect(await leaves("gasifier")).toBe(gasifierBefore - cleaned!.n);
    expect(await leaves("petri")).toBe(petriBefore);
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
    const [retained] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
    expect(retained?.n).toBe(0);
    expect(await leaves("petri")).toBe(petriBefore);
    expect(await copied()).toBe(copiedBefore);

    // not migrating any more: the same calls act on the same tree
    await rollback(db.sql, "petri");
    const [cleanedAfter] = await db.sql<{ n: number }[]>`select partition_mgmt.cleanup_empty_partitions(0) as n`;
    expect(cleanedAfter?.n).toBeGreaterThan(0);
    expect(await leaves("petri")).toBe(petriBefore - cleanedAfter!.n);
    const [retainedAfter] = await db.sql<{ n: number }[]>`select partition_mgmt.apply_retention('petri') as n`;
    expect(retainedAfter?.n).toBeGreaterThan(0);
    await db.sql`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
  });
});

describe("partition DDL against a long-held lock", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("ddl_lock", { treeShape: "literal" });
    await loadSmallDemo(db.sql, { companies: 1, programsPerCompany: 1, sitesPerProgram: 1, months: 2 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("maintenance gives up after its lock_timeout and attempts, logs it, and the holder never waited", async () => {
    const [site] = await db.sql<{ program_id: string; site_id: string }[]>`select program_id, site_id from public.sites limit 1`;
    const [sub] = await db.sql<{ id: string }[]>`select submission_id as id from public.submissions where site_id = ${site!.site_id} limit 1`;
    // rows of a month without a partition wait in the site's DEFAULT until maintenance creates it
    await db.sql`insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
                 select ${sub!.id}, ${site!.site_id}, ${site!.program_id}, 'old-' || g, '2021-03-10'::timestamptz + make_interval(hours => g)
                 from generate_series(1, 5) g`;
    const [dflt] = await db.sql<{ name: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as name from partition_mgmt.partition_registry
      where table_key = 'petri' and site_id = ${site!.site_id} and level = 'period' and is_default`;
    await db.sql`update partition_mgmt.maintenance_settings set lock_timeout = '100ms', ddl_attempts = 2`;

    // another session reads the DEFAULT in a transaction that stays open far longer than the budget
    const holder = connect(db.url);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const holding = holder.begin(async (tx) => {
      await tx.unsafe(`select count(*) from ${dflt!.name}`);
      await released;
    });
    try {
      await sleep(200);
      const t0 = performance.now();
      // (bounded, so that DDL waiting without a timeout fails this test instead of hanging it)
      await db.sql.begin(async (tx) => {
        await tx`set local statement_timeout = '20s'`;
        await tx`select partition_mgmt.schedule_maintenance('petri')`;
      });
      const elapsed = performance.now() - t0;
      const [drain] = await db.sql<{ status: string; error: string | null }[]>`
        select status, error from partition_mgmt.maintenance_log where table_key = 'petri' and action = 'drain_defaults' order by id desc limit 1`;
      expect(drain?.status).toBe("error");
      expect(drain?.error).toMatch(/could not get the lock for DDL after 2 attempts of lock_timeout 100ms/);
      // 2 x 100 ms plus one backoff: far below the holder's hold; a DDL waiting without a timeout
      // would still be waiting here (the holder releases only below)
      expect(elapsed).toBeLessThan(5_000);
      expect((await db.sql<{ n: number }[]>`select coalesce(sum(row_count), 0)::int as n from partition_mgmt.default_backlog('petri')`)[0]!.n).toBe(5);
      const findings = await db.sql<{ finding: string }[]>`select finding from partition_mgmt.health()`;
      expect(findings.map((f) => f.finding)).toEqual(expect.arrayContaining(["maintenance action failed", "rows in default partitions"]));
    } finally {
      release();
      await holding;
      await holder.end();
    }
    // once the lock is gone, the next run moves the rows
    await db.sql`select partition_mgmt.schedule_maintenance('petri')`;
    expect((await db.sql<{ n: number }[]>`select coalesce(sum(row_count), 0)::int as n from partition_mgmt.default_backlog('petri')`)[0]!.n).toBe(0);
  });
});
