// Phases, catalog state and lock behaviour of the online migration (migrations 20250102000400 to 0470, migration_*).
// Covers:
//  - the full cycle start -> rollback -> start -> swap -> finalize for petri_observations, with
//    catalog checks after each step: which table is live, sync triggers, policies and RLS, grants,
//    the app's own view and analytics.mv_daily_metrics reading the right table, the supabase_realtime
//    publication's tables (the change feed instead of the table after the swap), company isolation for an authenticated user, nothing left behind,
//    the routed functions (partition_mgmt.petri_fetch_by_id …) generated again at each swap: by the key table on the partitioned table only;
//  - dry run changes nothing; a pre-check blocker (a two-column foreign key referencing the table,
//    which the swap cannot carry) stops prepare with the offending constraint named;
//  - a long reader holds a lock during the swap: the swap gives up within lock_timeout, retries and
//    succeeds once the reader is done; other readers never wait much longer than lock_timeout;
//    with too few attempts it fails with lock_not_available and changes nothing;
//  - Option B (maintenance window) for gasifier_observations: one call copies, validates, swaps,
//    and rollback_migration undoes it (its routed functions read the legacy table again);
//  - migration_runner's statement and migration_step's batches sized by time; the driver's step
//    with no options takes partition_mgmt.step_defaults() (the most rows per batch, no swap).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backfill, migrateOnline, monitor, nextStep, rollback, startMigration, step } from "../../scripts/lib/migration-driver.ts";
import type { Sql } from "postgres";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { compareTables, leftovers, loadSmallDemo, phaseOf } from "../helpers/migration.ts";

import { sleep, waitFor } from "../helpers/time.ts";

describe("migration phases and catalog", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_cycle", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    await db.sql`create view public.petri_recent with (security_invoker = true) as
                 select observation_id, program_id, growth_index from public.petri_observations`;
    await db.sql`grant select on public.petri_recent to authenticated`;
    await db.sql`alter publication supabase_realtime add table public.petri_observations`;   // the publication exists, empty, as on hosted
    await db.sql`select analytics.refresh_daily_metrics()`;
  });
  afterAll(async () => {
    await db?.drop();
  });

  async function catalog() {
    const [r] = await db.sql<Record<string, unknown>[]>`
      select (select relkind::text from pg_class where oid = 'public.petri_observations'::regclass) as live_kind,
             to_regclass('public.petri_observations_old') is not null as old_exists,
             array(select tgname::text from pg_trigger where tgrelid = 'public.petri_observations'::regclass and not tgisinternal order by 1) as live_triggers,
             array(select polname::text from pg_policy where polrelid = 'public.petri_observations'::regclass order by 1) as live_policies,
             (select relrowsecurity from pg_class where oid = 'public.petri_observations'::regclass) as live_rls,
             has_table_privilege('authenticated', 'public.petri_observations', 'select,insert,update,delete') as auth_grants,
             has_table_privilege('anon', 'public.petri_observations', 'select') as anon_select,
             (select count(*)::int from pg_depend d join pg_rewrite w on w.oid = d.objid
               where w.ev_class = 'public.petri_recent'::regclass and d.refobjid = 'public.petri_observations'::regclass) > 0 as view_on_live,
             array(select r.prrelid::regclass::text from pg_publication_rel r join pg_publication p on p.oid = r.prpubid
                   where p.pubname = 'supabase_realtime' order by 1) as published,
             -- the routed functions install_read_api generates: by the key table on the partitioned table
             array(select p.proname::text from pg_proc p where p.pronamespace = 'partition_mgmt'::regnamespace
                   and p.proname in ('petri_fetch_by_id', 'petri_update_by_id', 'petri_delete_by_id')
                   and p.prosrc like '%partition_mgmt.route(%' order by 1) as routed_by_keys`;
    return r!;
  }

  async function visibleToUserOfCompany1() {
    // act as a user of demo company 1, the way PostgREST does
    return db.sql.begin(async (tx) => {
      const [u] = await tx<{ id: string; company_id: string }[]>`select id, company_id from public.users order by email limit 1`;
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: u!.id, role: "authenticated" })}, true)`;
      await tx`set local role authenticated`;
      const [r] = await tx<{ mine: number; others: number }[]>`
        select count(*) filter (where company_id = ${u!.company_id})::int as mine,
               count(*) filter (where company_id <> ${u!.company_id})::int as others from public.petri_observations`;
      return r!;
    });
  }

  it("dry run changes nothing", async () => {
    const snap = async () => (await db.sql<{ n: number; s: number; t: number }[]>`
      select (select count(*)::int from partition_mgmt.partition_registry) as n,
             (select count(*)::int from partition_mgmt.migration_state) as s,
             (select count(*)::int from pg_trigger where tgname like 'partition_mgmt_sync%') as t`)[0];
    const before = await snap();
    const plan = await db.sql<{ action: string; status: string; detail: string }[]>`select * from partition_mgmt.safe_migrate_table('petri_observations', true)`;
    expect(plan.map((p) => p.action)).toEqual(expect.arrayContaining(["prepare", "sync", "backfill", "validate", "swap", "verdict"]));
    expect(plan.find((p) => p.action === "verdict")?.status).toBe("ok");
    expect(plan.find((p) => p.action === "backfill")?.detail).toMatch(/^2160 rows/);
    expect(await snap()).toEqual(before);
  });

  it("start -> rollback -> start -> swap -> finalize, checking the catalog after each step", async () => {
    const initial = await catalog();
    expect(initial).toMatchObject({ live_kind: "r", old_exists: false, view_on_live: true, published: ["petri_observations"], live_rls: true,
      routed_by_keys: [] });
    const isolation = await visibleToUserOfCompany1();
    expect(isolation.mine).toBeGreaterThan(0);
    expect(isolation.others).toBe(0);

    // start: prepare + sync + part of the backfill
    await startMigration(db.sql, "petri");
    expect(await phaseOf(db.sql, "petri")).toBe("syncing");
    expect((await catalog()).live_triggers).toContain("partition_mgmt_sync_to_partitioned");
    await backfill(db.sql, "petri", { batchSize: 100, maxBatches: 5 });
    expect(await phaseOf(db.sql, "petri")).toBe("backfilling");
    const m = await monitor(db.sql, "petri");
    expect(Number(m.rows_scanned)).toBe(500);
    expect(Number(m.percent)).toBeGreaterThan(20);

    // rollback before the swap: legacy untouched, copy emptied, nothing left
    const [rb] = await db.sql<{ r: string }[]>`select partition_mgmt.rollback_migration('petri') as r`;
    expect(rb?.r).toMatch(/rolled back from phase backfilling/);
    expect(await phaseOf(db.sql, "petri")).toBe("rolled_back");
    await db.sql`select partition_mgmt.finish_rollback('petri')`;
    expect(await catalog()).toEqual(initial);
    expect(await leftovers(db.sql, "petri")).toEqual({ triggers: [], functions: [], state: 0, shadows: [] });
    const [empty] = await db.sql<{ n: number; k: number }[]>`
      select (select count(*)::int from public.petri_observations_partitioned) as n,
             (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri') as k`;
    expect(empty).toEqual({ n: 0, k: 0 });

    // start again and go through the swap
    const res = await migrateOnline(db.sql, "petri", { batchSize: 500, swap: true });
    expect(res.phase).toBe("swapped");
    const swapped = await catalog();
    expect(swapped).toMatchObject({
      // supabase_realtime (publish_via_partition_root false) gets the change feed, not the partitioned table
      live_kind: "p", old_exists: true, view_on_live: true, published: ["petri_observations_changes"], live_rls: true,
      auth_grants: initial.auth_grants, anon_select: initial.anon_select, live_policies: initial.live_policies,
      routed_by_keys: ["petri_delete_by_id", "petri_fetch_by_id", "petri_update_by_id"],
    });
    // (the table is in supabase_realtime: the change feed's triggers come along, see test/migration/realtime.test.ts)
    // the daily metrics: inserts and deletes recorded by the key trigger, updates by the statement trigger
    expect(swapped.live_triggers).toEqual(["metrics_changed_update",
      "partition_mgmt_realtime_delete", "partition_mgmt_realtime_insert", "partition_mgmt_realtime_update",
      "partition_mgmt_require_keys", "partition_mgmt_sync_to_legacy", "set_company_id_from_program", "touch_updated_at", "zz_maintain_observation_keys", "zz_move_observation_keys"]);
    const [oldTriggers] = await db.sql<{ t: string[] }[]>`
      select array(select tgname::text from pg_trigger where tgrelid = 'public.petri_observations_old'::regclass and not tgisinternal order by 1) as t`;
    expect(oldTriggers?.t).toEqual(["metrics_changed_delete", "metrics_changed_insert", "metrics_changed_update", "set_company_id_from_program", "touch_updated_at"]);
    expect(await visibleToUserOfCompany1()).toEqual(isolation);
    const [metrics] = await db.sql<{ n: number }[]>`select count(*)::int as n from analytics.mv_daily_metrics`;
    expect(metrics?.n).toBeGreaterThan(0);
    const [refresh] = await db.sql<{ r: string }[]>`select analytics.refresh_daily_metrics() as r`;
    expect(refresh?.r).toBe("changed");
    // a write after the swap reaches _old
    const [one] = await db.sql<{ id: string }[]>`select observation_id as id from public.petri_observations_old order by 1 limit 1`;
    await db.sql`select public.update_observation_by_id('petri_observations', ${one!.id}::uuid, '{"notes": "after swap"}'::jsonb)`;
    const [synced] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_old where notes = 'after swap'`;
    expect(synced?.n).toBe(1);
    expect(await compareTables(db.sql, "petri")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });

    // finalize: _old and every helper gone; the view and the MV stay on the live table, the feed in the publication
    const [fin] = await db.sql<{ r: string }[]>`select partition_mgmt.finalize_migration('petri') as r`;
    expect(fin?.r).toMatch(/finalized/);
    const done = await catalog();
    expect(done).toMatchObject({ live_kind: "p", old_exists: false, view_on_live: true, published: ["petri_observations_changes"],
      routed_by_keys: ["petri_delete_by_id", "petri_fetch_by_id", "petri_update_by_id"] });
    expect(done.live_triggers).toEqual(["metrics_changed_update",
      "partition_mgmt_realtime_delete", "partition_mgmt_realtime_insert", "partition_mgmt_realtime_update",
      "partition_mgmt_require_keys", "set_company_id_from_program", "touch_updated_at", "zz_maintain_observation_keys", "zz_move_observation_keys"]);
    expect(await leftovers(db.sql, "petri")).toEqual({ triggers: [], functions: [], state: 0, shadows: [] });
    expect(await visibleToUserOfCompany1()).toEqual(isolation);
    const log = await db.sql<{ to_phase: string }[]>`select to_phase from partition_mgmt.migration_log
      where table_key = 'petri' and to_phase <> 'swap-wait' and to_phase is distinct from from_phase order by id`;
    expect(log.map((l) => l.to_phase)).toEqual(["preparing", "prepared", "syncing", "backfilling", "rolled_back", "idle", "preparing", "prepared", "syncing", "backfilling", "backfilled", "validated", "swapped", "finalized"]);
  });

  it("Option B: a maintenance-window migration of gasifier, then its rollback", async () => {
    const [r] = await db.sql<{ phase: string; rows_copied: string }[]>`select * from partition_mgmt.offline_migrate_table('gasifier_observations')`;
    expect(r?.phase).toBe("swapped");
    expect(Number(r?.rows_copied)).toBe(1080);
    expect(await compareTables(db.sql, "gasifier")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
    const routedByKeys = async () => (await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_proc where pronamespace = 'partition_mgmt'::regnamespace
        and proname in ('gasifier_fetch_by_id', 'gasifier_update_by_id', 'gasifier_delete_by_id') and prosrc like '%partition_mgmt.route(%'`)[0]!.n;
    expect(await routedByKeys()).toBe(3);
    await rollback(db.sql, "gasifier");
    const [k] = await db.sql<{ kind: string }[]>`select relkind::text as kind from pg_class where oid = 'public.gasifier_observations'::regclass`;
    expect(k?.kind).toBe("r");
    // the swap back generated them again for the legacy table: its primary key finds the id
    expect(await routedByKeys()).toBe(0);
    expect(await leftovers(db.sql, "gasifier")).toEqual({ triggers: [], functions: [], state: 0, shadows: [] });
  });

  it("a foreign key that cannot be carried (two columns) is a blocker that stops prepare", async () => {
    await db.sql`create unique index gasifier_observations_id_site_key on public.gasifier_observations (observation_id, site_id)`;
    await db.sql`create table public.petri_annotations (id serial primary key, observation_id uuid, site_id uuid,
                 foreign key (observation_id, site_id) references public.gasifier_observations (observation_id, site_id))`;
    try {
      const checks = await db.sql<{ check_name: string; status: string; detail: string }[]>`select * from partition_mgmt.pre_migration_check('gasifier')`;
      expect(checks.find((c) => c.check_name === "foreign keys to the table")).toMatchObject({ status: "blocker" });
      expect(checks.find((c) => c.check_name === "foreign key petri_annotations_observation_id_site_id_fkey")?.detail).toMatch(/2 columns/);
      await expect(db.sql`select partition_mgmt.prepare_migration('gasifier')`).rejects.toThrow(/petri_annotations_observation_id_site_id_fkey/);
      expect(await phaseOf(db.sql, "gasifier")).toBe("idle");
    } finally {
      await db.sql`drop table public.petri_annotations`;
      await db.sql`drop index public.gasifier_observations_id_site_key`;
    }
  });
});


/**
 * A reader that holds ACCESS SHARE on public.petri_observations for ms after its first statement;
 * resolves `held` once the lock is granted (a fixed pause let a loaded machine start the swap first).
 */
async function holdPetri(reader: Sql, observer: Sql, ms: number): Promise<{ held: Promise<void>; done: Promise<unknown> }> {
  const [me] = await reader<{ pid: number }[]>`select pg_backend_pid() as pid`;
  const done = reader.begin(async (tx) => {
    await tx`select count(*) from public.petri_observations`;
    await sleep(ms);
  });
  const held = waitFor("the reader holds public.petri_observations", async () => {
    const [row] = await observer<{ n: number }[]>`
      select count(*)::int as n from pg_locks
      where pid = ${me!.pid} and granted and relation = 'public.petri_observations'::regclass`;
    return (row?.n ?? 0) > 0;
  }, 10_000, 10);
  return { held, done };
}

describe("swap against a long-running reader", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_lockwait");
    await loadSmallDemo(db.sql, { petriPerSiteMonth: 20, gasifierPerSiteMonth: 5 });
    await migrateOnline(db.sql, "petri", { batchSize: 1000 });
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("gives up within lock_timeout and changes nothing when the reader outlasts every attempt", async () => {
    const reader = connect(db.url);
    try {
      const { held, done: holding } = await holdPetri(reader, db.sql, 2500);
      await held;
      const t0 = performance.now();
      await expect(db.sql`select * from partition_mgmt.swap_tables('petri', '100ms', 3)`).rejects.toMatchObject({ code: "55P03" });
      expect(performance.now() - t0).toBeLessThan(2000);
      await holding;
    } finally {
      await reader.end();
    }
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
    const [k] = await db.sql<{ kind: string }[]>`select relkind::text as kind from pg_class where oid = 'public.petri_observations'::regclass`;
    expect(k?.kind).toBe("r");
  });

  it("retries until the reader is done; other readers never wait much longer than lock_timeout", async () => {
    const reader = connect(db.url);
    const prober = connect(db.url);
    const waits: number[] = [];
    let probing = true;
    try {
      const { held, done: holding } = await holdPetri(reader, db.sql, 2000);
      await held;
      const probe = (async () => {
        while (probing) {
          const t = performance.now();
          await prober`select count(*) from public.petri_observations where site_id = '00000000-0000-0000-0000-000000000000'`;
          waits.push(performance.now() - t);
          await sleep(20);
        }
      })();
      const t0 = performance.now();
      const [s] = await db.sql<{ phase: string; attempts: number; lock_held_ms: string }[]>`select * from partition_mgmt.swap_tables('petri', '200ms', 30)`;
      const elapsed = performance.now() - t0;
      probing = false;
      await probe;
      await holding;
      console.log(`[lock-wait] swap after ${s?.attempts} attempts in ${elapsed.toFixed(0)} ms, ACCESS EXCLUSIVE held ${s?.lock_held_ms} ms; ` +
        `reader probes: ${waits.length}, max wait ${Math.max(...waits).toFixed(0)} ms`);
      expect(s?.phase).toBe("swapped");
      expect(s?.attempts).toBeGreaterThan(1);
      expect(elapsed).toBeGreaterThan(1500);
      expect(Math.max(...waits)).toBeLessThan(200 + 400);
    } finally {
      probing = false;
      await reader.end();
      await prober.end();
    }
  });
});

describe("the psql / pg_cron driver: one DO block that commits after every step", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_runner", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db.drop();
  });

  it("migration_runner's statement takes the table to validated in committed steps, and a second run (a new session) swaps; nothing differs", async () => {
    const [{ statement } = { statement: "" }] = await db.sql<{ statement: string }[]>`
      select partition_mgmt.migration_runner('petri_observations', p_swap => true, p_batch_size => 500) as statement`;
    expect(statement).toMatch(/^do \$run\$[\s\S]*partition_mgmt\.migration_step\('petri', true, 500\);\s+commit;[\s\S]*\$run\$\s*$/);
    await db.sql.unsafe(statement);
    expect(await phaseOf(db.sql, "petri")).toBe("validated");
    await db.sql.unsafe(statement);
    expect(await phaseOf(db.sql, "petri")).toBe("swapped");
    expect(await compareTables(db.sql, "petri")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
    const [state] = await db.sql<{ copied: number; legacy: number }[]>`
      select (select rows_copied::int from partition_mgmt.migration_state where table_key = 'petri') as copied,
             (select count(*)::int from public.petri_observations_old) as legacy`;
    expect(state?.copied).toBe(state?.legacy);
    expect(state?.legacy).toBeGreaterThan(500);   // more than one batch
    // without p_swap it stops at validated, and running it again changes nothing
    const [{ stop } = { stop: "" }] = await db.sql<{ stop: string }[]>`select partition_mgmt.migration_runner('gasifier', p_batch_size => 1000) as stop`;
    await db.sql.unsafe(stop);
    await db.sql.unsafe(stop);
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
    await expect(db.sql`select partition_mgmt.migration_runner('petri', p_batch_size => 0)`).rejects.toThrow(/batch size must be positive and throttle a non-negative number of milliseconds, got 0 and 0/);
    await expect(db.sql`select * from partition_mgmt.migration_step('gasifier', p_batch_size => 0)`).rejects.toThrow(/batch size and batches per step must be positive, got 0 and 1/);
  });
});

describe("a backfill batch on a legacy table of some size", () => {
  // At 3.9M rows the copy was planned with its upper bound unknown (it came from a CTE), expected a
  // third of the table in the range, and read the whole legacy table for every batch: 1.07 s of a
  // 100-row batch (the 20M scale bench's cluster). At 72,000 rows the planner still took the primary
  // key for that statement, because random page reads of a table that fits in the cache it assumes
  // cost little; so the batch here runs with random reads priced as on a table far larger than the
  // cache (random_page_cost 40, effective_cache_size 64 kB). A batch planned with both bounds known
  // (20 rows expected) keeps to the index whatever the price; a third of the table does not.
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_batch_range");
    await loadSmallDemo(db.sql, { petriPerSiteMonth: 2000, gasifierPerSiteMonth: 10 });
    await db.sql`analyze public.petri_observations`;
    while ((await db.sql<{ s: string }[]>`select partition_mgmt.migration_next_step('petri', false) as s`)[0]!.s !== "backfill") {
      await db.sql`select * from partition_mgmt.migration_step('petri', false)`;
    }
    // a few batches in: the copy has a mark to start from
    for (let i = 0; i < 3; i++) await db.sql`select * from partition_mgmt.backfill_batch('petri', 20)`;
  }, 300_000);
  afterAll(async () => {
    await db?.drop();
  });

  it("a batch reads its own rows of the legacy table through the primary key, not the whole table", async () => {
    const [{ legacy, name } = { legacy: "", name: "" }] = await db.sql<{ legacy: string; name: string }[]>`
      select m.legacy_table::oid::text as legacy, c.relname as name
      from partition_mgmt.migration_state m join pg_class c on c.oid = m.legacy_table where m.table_key = 'petri'`;
    const [{ rows } = { rows: 0 }] = await db.sql<{ rows: number }[]>`select count(*)::int as rows from ${db.sql(name)}`;
    expect(rows).toBeGreaterThan(50 * 20);
    const one = await db.sql.reserve();
    try {
      await one`begin`;
      await one`set local random_page_cost = 40`;
      await one`set local effective_cache_size = '64kB'`;
      const read = async () => (await one<{ seq: number; seqRows: number; idxRows: number }[]>`
        select pg_stat_get_xact_numscans(${legacy}::oid)::int as seq, pg_stat_get_xact_tuples_returned(${legacy}::oid)::int as "seqRows",
               coalesce((select sum(pg_stat_get_xact_tuples_returned(i.indexrelid)) from pg_index i where i.indrelid = ${legacy}::oid), 0)::int as "idxRows"`)[0]!;
      const before = await read();
      const [b] = await one<{ rows_scanned: number }[]>`select rows_scanned::int from partition_mgmt.backfill_batch('petri', 20)`;
      const after = await read();
      expect(b!.rows_scanned).toBe(20);
      // no sequential scan of the legacy table: the two statements read the batch's range through
      // the primary key, its 20 ids and then its 20 rows
      expect({ seq: after.seq - before.seq, seqRows: after.seqRows - before.seqRows }).toEqual({ seq: 0, seqRows: 0 });
      expect(after.idxRows - before.idxRows).toBeGreaterThanOrEqual(20);
      expect(after.idxRows - before.idxRows).toBeLessThanOrEqual(3 * 20);
      await one`rollback`;
    } finally {
      one.release();
    }
  });

});

describe("backfill batches sized by time", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_batch_time", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db.drop();
  });

  it("each backfill step sizes its batch from the last one toward partition_mgmt.backfill_batch_ms, within 100 rows and the caller's maximum", async () => {
    const sizes = async (targetMs: number, steps: number, max: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < steps; i++) {
        const [r] = await db.sql<{ step: string; result: { batch_size: number } | null }[]>`
          select step, result from (select set_config('partition_mgmt.backfill_batch_ms', ${String(targetMs)}, true)) g,
            partition_mgmt.migration_step('petri', false, ${max})`;
        if (r?.step !== "backfill") break;
        out.push(r.result!.batch_size);
      }
      return out;
    };
    while (!["backfill"].includes((await db.sql<{ s: string }[]>`select partition_mgmt.migration_next_step('petri', false) as s`)[0]!.s)) {
      await db.sql`select * from partition_mgmt.migration_step('petri', false)`;
    }
    // a target far below a batch's time: the first batch is 1,000 rows, then the floor of 100
    const small = await sizes(0.001, 3, 5000);
    expect(small).toEqual([1000, 100, 100]);
    // a target far above it: each batch at most doubles, up to the caller's maximum
    const large = await sizes(60_000, 3, 300);
    expect(large).toEqual([200, 300, 300]);
  });

  it("the driver's step with no options takes step_defaults(): batches of at most its batch_size, and no swap", async () => {
    const [defaults] = await db.sql<{ d: { swap: boolean; batch_size: number } }[]>`select partition_mgmt.step_defaults() as d`;
    expect(defaults?.d.swap).toBe(false);
    expect(await nextStep(db.sql, "petri")).toBe("backfill");
    // the last batch as if it had taken no time: the next one is as large as the maximum allows
    await db.sql`update partition_mgmt.migration_state set last_batch_rows = 1000000, last_batch_ms = 1 where table_key = 'petri'`;
    const first = await step<{ batch_size: number }>(db.sql, "petri");
    expect({ step: first.step, batch_size: first.result?.batch_size }).toEqual({ step: "backfill", batch_size: defaults?.d.batch_size });
    let last = first;
    for (let i = 0; i < 20 && last.next_step !== "done"; i++) last = await step(db.sql, "petri");
    expect({ phase: last.phase, next_step: last.next_step }).toEqual({ phase: "validated", next_step: "done" });
    expect(await nextStep(db.sql, "petri")).toBe("done");
  });
});
