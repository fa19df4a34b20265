// Under hosted Micro's limits (the test cluster runs the Micro profile: 60 connections, 64 locks
// per transaction, a lock table of about 4,800 slots for all sessions together). Covers:
//  - the bench's shape in miniature (20 programs x 10 sites x 12 months, 20 rows per site-month):
//    the plan's literal tree of it is refused by the pre-check, with its numbers and the way out;
//    the data-sized tree migrates online (prepare, sync, backfill, validation, swap) while 20
//    sessions send what PostgREST sends for id-only calls (prepared selects and updates by
//    observation_id) and whole-table counts: no error at all, and the tables equal both ways;
//  - 200 sites inserted in one transaction: a sized tree creates nothing; a literal tree creates
//    partitions only up to the transaction's lock budget, the insert succeeds, and what it could not
//    create is recorded, reported by health() and created by maintenance;
//  - a site that crosses the target is promoted online by maintenance while an app writes,
//    reads and moves rows: no error, nothing lost (the legacy table, kept in sync after the swap,
//    equals the tree both ways).
// These suites run after the others (vitest project "micro-limits"): 20 sessions of one test plus
// two other files' connections would not fit in 60.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAppLoad, startKeylessLoad, summarize, percentile } from "../../scripts/lib/app-load.ts";
import { generateDemoData, DEFAULT_DEMO } from "../../scripts/lib/demo-data.ts";
import { migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { compareTables, loadSmallDemo } from "../helpers/migration.ts";
import { sleep } from "../helpers/time.ts";

// the full-scale bench: 20 programs x 10 sites x 12 months, ~2,080 rows per site-month, 100,000
// rows per leaf; here 20 rows per site-month and a target of 1,000: the same tree in miniature
// (every program fills leaves of its own, its sites share the program's leaf)
const BENCH_SHAPE_IN_MINIATURE = {
  ...DEFAULT_DEMO, seed: 31, companies: 4, programsPerCompany: 5, sitesPerProgram: 10, months: 12,
  petriPerSiteMonth: 20, gasifierPerSiteMonth: 10,
};

describe("the bench's shape in miniature under Micro limits", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("micro_shape", { targetRowsPerLeaf: 1000 });
    await generateDemoData(db.sql, BENCH_SHAPE_IN_MINIATURE);
  }, 120_000);
  afterAll(async () => {
    await db?.drop();
  });

  it("the plan's literal tree of this data does not fit: the pre-check refuses it with its numbers", async () => {
    await db.sql`update partition_mgmt.managed_tables set tree_shape = 'literal' where table_key = 'petri'`;
    try {
      const [row] = await db.sql<{ status: string; detail: string }[]>`
        select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'lock budget'`;
      expect(row?.status).toBe("blocker");
      expect(row?.detail).toMatch(/would take \d{4,} locks on the new tree .*the lock table holds \d+ slots \(max_locks_per_transaction 64\), so \d+ such statements fit at once \(minimum 20\)/);
      expect(row?.detail).toMatch(/use the sized tree .*max_locks_per_transaction=\d+/);
      await expect(db.sql`select partition_mgmt.prepare_migration('petri')`).rejects.toThrow(/lock budget: /);
    } finally {
      await db.sql`update partition_mgmt.managed_tables set tree_shape = 'sized' where table_key = 'petri'`;
    }
  });

  it("migrates online while 20 sessions send id-only calls and whole-table counts: no error, equal both ways", async () => {
    const [check] = await db.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'lock budget'`;
    expect(check?.status).toBe("ok");
    const ids = (await db.sql<{ id: string }[]>`select observation_id as id from public.petri_observations order by md5(observation_id::text) limit 2000`).map((r) => r.id);
    const load = startKeylessLoad({ url: db.url, table: "petri_observations", sessions: 20, ids });
    let stats;
    try {
      await sleep(500);
      const res = await migrateOnline(db.sql, "petri", { batchSize: 5000, swap: true });
      expect(res.phase).toBe("swapped");
      await sleep(1500);   // the same calls against the partitioned table
    } finally {
      stats = await load.stop();
    }
    console.log(`[micro] 20 sessions of id-only calls during the migration: ${summarize(stats)}`);
    expect(stats.errors.slice(0, 5)).toEqual([]);
    expect(stats.ops).toBeGreaterThan(1000);
    expect(await compareTables(db.sql, "petri")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
    const [budget] = await db.sql<{ leaves: number; keyless_locks: number; keyless_at_once: number }[]>`
      select leaves::int, keyless_locks::int, keyless_at_once::int from partition_mgmt.lock_budget() where table_key = 'petri'`;
    console.log(`[micro] tree: ${budget?.leaves} leaves, a keyless statement takes ${budget?.keyless_locks} locks, ${budget?.keyless_at_once} fit at once`);
    expect(budget?.keyless_at_once).toBeGreaterThanOrEqual(20);
    // the tree the data asked for: every program has partitions of its own, its sites share them
    const [summary] = await db.sql<{ leaves: number; programs_with_partitions: number; sites_with_partitions: number; rows_estimate: number }[]>`
      select leaves::int, programs_with_partitions::int, sites_with_partitions::int, rows_estimate::int from partition_mgmt.v_tree_summary where table_key = 'petri'`;
    expect(summary).toMatchObject({ leaves: 21, programs_with_partitions: 20, sites_with_partitions: 0 });
    const states = await db.sql<{ state: string; n: number }[]>`
      select state, count(*)::int as n from partition_mgmt.v_site_state where table_key = 'petri' group by 1`;
    expect(states).toEqual([{ state: "shares its program's leaf", n: 200 }]);
    // and one such statement holds what lock_budget() says
    const held = await db.sql.begin(async (tx) => {
      await tx`select * from public.petri_observations where observation_id = ${ids[0]!}`;
      const [n] = await tx<{ n: number }[]>`select count(*)::int as n from pg_locks where pid = pg_backend_pid() and locktype = 'relation' and relation <> 'pg_locks'::regclass`;
      return n?.n ?? 0;
    });
    expect(held).toBe(budget?.keyless_locks);
  });
});

describe("200 sites inserted in one transaction", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("micro_sites");
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  async function insert200Sites(): Promise<{ program: string; heldLocks: number; budget: number }> {
    const [company] = await db.sql<{ id: string }[]>`select company_id as id from public.companies limit 1`;
    return db.sql.begin(async (tx) => {
      // a program of this month only: one period per site (the literal tree's smallest)
      const [p] = await tx<{ id: string }[]>`
        insert into public.pilot_programs (name, start_date, end_date, company_id)
        values ('two hundred sites', date_trunc('month', now())::date, (date_trunc('month', now()) + interval '1 month - 1 day')::date, ${company!.id})
        returning program_id as id`;
      await tx`insert into public.sites (program_id, name) select ${p!.id}, 'site ' || g from generate_series(1, 200) g`;
      const [l] = await tx<{ held: number; budget: number }[]>`
        select partition_mgmt.held_locks() as held, partition_mgmt.ddl_lock_budget() as budget`;
      return { program: p!.id, heldLocks: l!.held, budget: l!.budget };
    });
  }

  it("sized tree: the sites share their program's leaf, nothing is created", async () => {
    const before = (await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.partition_registry`)[0]!.n;
    const r = await insert200Sites();
    expect((await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.partition_registry`)[0]!.n).toBe(before);
    expect(r.heldLocks).toBeLessThan(100);
  });

  it("literal tree: partitions up to the lock budget, the rest recorded, reported and created by maintenance", { timeout: 400_000 }, async () => {
    // (petri only: both tables' partitions of 200 sites take maintenance twice as long)
    await db.sql`update partition_mgmt.managed_tables set tree_shape = 'literal', premake_months = 0 where table_key = 'petri'`;
    const r = await insert200Sites();
    // the budget is checked before each partition: at most one partition's locks over it
    expect(r.heldLocks).toBeLessThan(r.budget + 100);
    const [d] = await db.sql<{ n: number; reasons: string[] }[]>`
      select count(*)::int as n, array_agg(distinct reason) as reasons from partition_mgmt.creation_deferred where program_id = ${r.program}`;
    expect(d!.n).toBeGreaterThan(0);
    expect(d!.reasons.join(" ")).toMatch(/lock budget/);
    const findings = await db.sql<{ finding: string; detail: string }[]>`select finding, detail from partition_mgmt.health() where finding = 'partition creation deferred'`;
    expect(findings.length).toBeGreaterThan(0);
    // rows of a site without partitions wait in its program's DEFAULT meanwhile, and are not lost
    const [site] = await db.sql<{ id: string }[]>`
      select s.site_id as id from public.sites s where s.program_id = ${r.program}
        and not exists (select from partition_mgmt.partition_registry g where g.table_key = 'petri' and g.site_id = s.site_id) limit 1`;
    const [sub] = await db.sql<{ id: string }[]>`insert into public.submissions (site_id, program_id) values (${site!.id}, ${r.program}) returning submission_id as id`;
    await db.sql`insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
                 values (${sub!.id}, ${site!.id}, ${r.program}, 'waiting', now())`;
    // maintenance commits after every step and stops at its time budget (a run is one statement,
    // and hosted ends statements after 2 minutes): runs until nothing is deferred
    await db.sql`update partition_mgmt.maintenance_settings set max_run_seconds = 10`;
    const left: number[] = [];
    for (let run = 1; run <= 30; run++) {
      await runMaintenance(db.sql, "petri");
      left.push((await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.creation_deferred`)[0]!.n);
      if (left.at(-1) === 0) break;
      // a run that stopped at its time budget says so until one finishes
      expect((await db.sql<{ finding: string }[]>`select finding from partition_mgmt.health()`).map((f) => f.finding)).toContain("partition creation deferred");
    }
    console.log(`[micro] sites still deferred after each maintenance run: ${left.join(", ")}`);
    const [after] = await db.sql<{ deferred: number; sites: number; waiting: string }[]>`
      select (select count(*)::int from partition_mgmt.creation_deferred) as deferred,
             (select count(distinct site_id)::int from partition_mgmt.partition_registry where table_key = 'petri' and program_id = ${r.program} and level = 'site' and not is_default) as sites,
             (select tableoid::regclass::text from public.petri_observations_partitioned where petri_code = 'waiting') as waiting`;
    expect(after).toMatchObject({ deferred: 0, sites: 200 });
    expect(after!.waiting).toMatch(/_s_[0-9a-f]{12}_\d{4}_\d{2}$/);
    const errors = await db.sql`select action, error from partition_mgmt.maintenance_log where status = 'error'`;
    expect(errors).toEqual([]);
  });
});

describe("a site promoted online while the app writes", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("micro_promote", { targetRowsPerLeaf: 500 });
    await loadSmallDemo(db.sql);
    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("maintenance moves the site's rows into partitions of its own: no app error, nothing lost", async () => {
    // one site grows past the target (its program has a partition of its own; the site shares it)
    const [s] = await db.sql<{ site_id: string; program_id: string; sub: string }[]>`
      select s.site_id, s.program_id, (select b.submission_id from public.submissions b where b.site_id = s.site_id limit 1) as sub
      from public.sites s
      where exists (select from partition_mgmt.partition_registry g where g.table_key = 'petri' and g.level = 'program' and not g.is_default and g.program_id = s.program_id)
        and not exists (select from partition_mgmt.partition_registry g where g.table_key = 'petri' and g.level = 'site' and not g.is_default and g.site_id = s.site_id)
      order by s.site_id limit 1`;
    expect(s).toBeDefined();
    await db.sql`insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
                 select ${s!.sub}, ${s!.site_id}, ${s!.program_id}, 'grown-' || g, now() - make_interval(hours => g)
                 from generate_series(1, 600) g`;
    await db.sql`analyze public.petri_observations`;
    const [cand] = await db.sql<{ level: string; site_id: string }[]>`select level, site_id from partition_mgmt.promotion_candidates('petri') limit 1`;
    expect(cand).toMatchObject({ level: "site", site_id: s!.site_id });

    const load = startAppLoad({ url: db.url, table: "petri_observations", sessions: 4, seed: 9, thinkMs: 5 });
    let stats;
    try {
      await sleep(300);
      // small steps, so that the copy runs in several committed batches while the app writes
      await db.sql`update partition_mgmt.maintenance_settings set promote_batch_rows = 200, promote_step_seconds = 0.001`;
      await runMaintenance(db.sql, "petri");
      await sleep(300);
    } finally {
      stats = await load.stop();
    }
    console.log(`[micro] app during the promotion: ${summarize(stats)}`);
    expect(stats.errors.slice(0, 5)).toEqual([]);
    const steps = await db.sql<{ action: string; detail: string; error: string | null }[]>`
      select detail ->> 'action' as action, detail ->> 'detail' as detail, error from partition_mgmt.maintenance_log
      where action = 'promote' order by id`;
    expect(steps.filter((x) => x.error !== null)).toEqual([]);
    expect(steps.map((x) => x.action)).toEqual(expect.arrayContaining(["start", "copy", "cutover"]));
    expect(steps.filter((x) => x.action === "copy").length).toBeGreaterThan(1);
    const cutover = steps.find((x) => x.action === "cutover")!.detail;
    console.log(`[micro] ${cutover}; longest app statement ${percentile(stats.latenciesMs, 100).toFixed(1)} ms`);
    const [own] = await db.sql<{ n: number; periods: number; in_own: number; total: number }[]>`
      select (select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and level = 'site' and not is_default and site_id = ${s!.site_id}) as n,
             (select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and level = 'period' and site_id = ${s!.site_id}) as periods,
             (select count(*)::int from public.petri_observations o where o.site_id = ${s!.site_id}
                and o.tableoid::regclass::text like '%\\_s\\_%') as in_own,
             (select count(*)::int from public.petri_observations o where o.site_id = ${s!.site_id}) as total`;
    expect(own!.n).toBe(1);
    const [state] = await db.sql<{ state: string; granularity: string }[]>`
      select state, granularity from partition_mgmt.v_site_state where table_key = 'petri' and site_id = ${s!.site_id}`;
    expect(state?.state).toBe("own partitions");
    expect(own!.periods).toBeGreaterThan(0);
    expect(own!.in_own).toBe(own!.total);
    expect(await compareTables(db.sql, "petri")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
    const problems = await db.sql<{ check_name: string; status: string }[]>`select check_name, status from partition_mgmt.validate_partitions() where status = 'error'`;
    expect(problems).toEqual([]);
    const [keys] = await db.sql<{ n: number; rows: number }[]>`
      select (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri') as n, (select count(*)::int from public.petri_observations) as rows`;
    expect(keys!.n).toBe(keys!.rows);
    expect(await db.sql`select * from partition_mgmt.promotions`).toEqual([]);
  });
});
