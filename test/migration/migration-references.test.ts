// Foreign keys from other tables to petri_observations (migration 20250102000250): the swap carries
// them as trigger-enforced references, rollback declares them again, and the rules hold after the
// swap exactly as the declared constraints did before it, for every ON DELETE / ON UPDATE action,
// for rows moved between partitions, across concurrent transactions, for deferred constraints,
// TRUNCATE and retention.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { leftovers, loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { sleep } from "../helpers/time.ts";

interface PgError {
  code?: string;
  message: string;
  detail?: string;
}

/** Inserts a copy of observation src under a new id (columns as the live table has them). */
async function cloneObservation(sql: Sql, src: string, nid: string): Promise<void> {
  await sql`insert into public.petri_observations
            select (jsonb_populate_record(null::public.petri_observations, to_jsonb(o) || jsonb_build_object('observation_id', ${nid}::text))).*
            from public.petri_observations o where o.observation_id = ${src}`;
}

async function pgError(p: Promise<unknown>): Promise<PgError> {
  try {
    await p;
  } catch (e) {
    return e as PgError;
  }
  throw new Error("expected the statement to fail, and it succeeded");
}

describe("foreign keys that reference the migrated table", () => {
  let db: FreshDb;
  // observations picked per test, so no test depends on another's deletes
  let ids: string[] = [];

  beforeAll(async () => {
    db = await freshDatabase("mig_refs", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    await db.sql.unsafe(`
      create table public.observation_notes (
        note_id uuid primary key default gen_random_uuid(),
        observation_id uuid not null references public.petri_observations (observation_id) on delete cascade on update cascade,
        body text);
      create index on public.observation_notes (observation_id);
      create table public.observation_reviews (
        review_id uuid primary key default gen_random_uuid(),
        observation_id uuid references public.petri_observations (observation_id));
      create index on public.observation_reviews (observation_id);
      create table public.observation_flags (
        flag_id uuid primary key default gen_random_uuid(),
        observation_id uuid references public.petri_observations (observation_id) on delete set null);
      create table public.observation_drafts (
        draft_id uuid primary key default gen_random_uuid(),
        observation_id uuid references public.petri_observations (observation_id) deferrable initially deferred);`);
    const rows = await db.sql<{ observation_id: string }[]>`
      select observation_id from public.petri_observations order by observation_id limit 40`;
    ids = rows.map((r) => r.observation_id);
    // every observation in ids[0..19] is referenced by a note and a flag; 10..14 also by a review
    for (const id of ids.slice(0, 20)) {
      await db.sql`insert into public.observation_notes (observation_id, body) values (${id}, 'note')`;
      await db.sql`insert into public.observation_flags (observation_id) values (${id})`;
    }
    for (const id of ids.slice(10, 15)) await db.sql`insert into public.observation_reviews (observation_id) values (${id})`;
  });
  afterAll(async () => {
    await db?.drop();
  });

  const declared = async () =>
    (await db.sql<{ name: string; valid: boolean }[]>`
      select conname::text as name, convalidated as valid from pg_constraint
      where contype = 'f' and confrelid = 'public.petri_observations'::regclass order by 1`);
  const carried = async () =>
    (await db.sql<{ name: string }[]>`select constraint_name as name from partition_mgmt.carried_references order by 1`).map((r) => r.name);
  const count = async (table: string, id: string) =>
    Number((await db.sql.unsafe(`select count(*)::int as n from public.${table} where observation_id = $1`, [id]))[0]?.n);

  it("pre_migration_check lists each one as carried (ok), and warns about a missing index", async () => {
    const checks = await db.sql<{ check_name: string; status: string; detail: string }[]>`
      select check_name, status, detail from partition_mgmt.pre_migration_check('petri')`;
    expect(checks.find((c) => c.check_name === "foreign keys to the table")).toMatchObject({ status: "ok" });
    expect(checks.find((c) => c.check_name === "foreign key observation_notes_observation_id_fkey")).toMatchObject({ status: "ok" });
    const flags = checks.find((c) => c.check_name === "foreign key observation_flags_observation_id_fkey");
    expect(flags?.status).toBe("warning");
    expect(flags?.detail).toMatch(/has no index/);
  });

  it("the swap replaces the declared constraints with triggers and records them", async () => {
    await migrateOnline(db.sql, "petri", { batchSize: 500, swap: true });
    expect(await phaseOf(db.sql, "petri")).toBe("swapped");
    expect(await declared()).toEqual([]);
    expect(await carried()).toEqual([
      "observation_drafts_observation_id_fkey",
      "observation_flags_observation_id_fkey",
      "observation_notes_observation_id_fkey",
      "observation_reviews_observation_id_fkey",
    ]);
    const [t] = await db.sql<{ live: string[]; notes: string[] }[]>`
      select array(select tgname::text from pg_trigger where tgrelid = 'public.petri_observations'::regclass and tgname like 'zzz_ref%' order by 1) as live,
             array(select tgname::text from pg_trigger where tgrelid = 'public.observation_notes'::regclass and not tgisinternal) as notes`;
    expect(t!.live).toHaveLength(4 * 2 + 1); // delete + update trigger per reference, one TRUNCATE guard
    expect(t!.notes).toHaveLength(1);
  });

  it("refuses a reference to an observation that does not exist, with the constraint's name", async () => {
    const err = await pgError(db.sql`insert into public.observation_notes (observation_id) values (gen_random_uuid())`);
    expect(err.code).toBe("23503");
    expect(err.message).toMatch(/violates foreign key constraint "observation_notes_observation_id_fkey"/);
    expect(err.detail).toMatch(/is not present in table/);
    const err2 = await pgError(db.sql`update public.observation_reviews set observation_id = gen_random_uuid() where observation_id = ${ids[10]!}`);
    expect(err2.code).toBe("23503");
    // a NULL reference is allowed, as with a declared constraint
    await db.sql`insert into public.observation_reviews (observation_id) values (null)`;
  });

  it("a row moved to another site, month and program keeps every reference (no cascade, no SET NULL)", async () => {
    const id = ids[0]!;
    const [target] = await db.sql<{ program_id: string; site_id: string }[]>`
      select s.program_id, s.site_id from public.sites s
      where s.program_id <> (select program_id from public.petri_observations where observation_id = ${id})
      order by s.site_id limit 1`;
    await db.sql`update public.petri_observations set program_id = ${target!.program_id}, site_id = ${target!.site_id},
                 created_at = created_at - interval '20 days' where observation_id = ${id}`;
    expect(await count("observation_notes", id)).toBe(1);
    expect(await count("observation_flags", id)).toBe(1);
    const [o] = await db.sql<{ site_id: string }[]>`select site_id from public.petri_observations where observation_id = ${id}`;
    expect(o!.site_id).toBe(target!.site_id);
  });

  it("ON DELETE CASCADE deletes the notes, SET NULL clears the flags", async () => {
    const id = ids[1]!;
    await db.sql`delete from public.petri_observations where observation_id = ${id}`;
    expect(await count("observation_notes", id)).toBe(0);
    expect(await count("observation_flags", id)).toBe(0);
    expect(Number((await db.sql`select count(*)::int as n from public.observation_flags where observation_id is null`)[0]?.n)).toBeGreaterThanOrEqual(1);
  });

  it("NO ACTION refuses to delete an observation that a review references, and changes nothing", async () => {
    const id = ids[10]!;
    const err = await pgError(db.sql`delete from public.petri_observations where observation_id = ${id}`);
    expect(err.code).toBe("23503");
    expect(err.message).toMatch(/violates foreign key constraint "observation_reviews_observation_id_fkey" on table/);
    expect(await count("petri_observations", id)).toBe(1);
    expect(await count("observation_notes", id)).toBe(1);
    // through the routed delete too
    const err2 = await pgError(db.sql`select public.delete_observation_by_id('petri_observations', ${id})`);
    expect(err2.code).toBe("23503");
  });

  it("ON UPDATE CASCADE follows an id change, within a partition and together with a move", async () => {
    const id = ids[2]!;
    // its flag (ON UPDATE NO ACTION) would pin the id: see the last statement of this test
    await db.sql`delete from public.observation_flags where observation_id = ${id}`;
    const nid = randomUUID();
    await db.sql`update public.petri_observations set observation_id = ${nid} where observation_id = ${id}`;
    expect(await count("observation_notes", id)).toBe(0);
    expect(await count("observation_notes", nid)).toBe(1);
    // id change and a move to another month in one statement (arrives as a delete + insert)
    const nid2 = randomUUID();
    await db.sql`update public.petri_observations set observation_id = ${nid2}, created_at = created_at - interval '35 days' where observation_id = ${nid}`;
    expect(await count("observation_notes", nid)).toBe(0);
    expect(await count("observation_notes", nid2)).toBe(1);
    // NO ACTION on update: a review pins its observation's id
    const err = await pgError(db.sql`update public.petri_observations set observation_id = gen_random_uuid() where observation_id = ${ids[11]!}`);
    expect(err.code).toBe("23503");
  });

  it("a deferred constraint is checked at commit", async () => {
    const nid = randomUUID();
    // the draft first, its observation later in the same transaction
    await db.sql.begin(async (tx) => {
      await tx`insert into public.observation_drafts (observation_id) values (${nid})`;
      await cloneObservation(tx as unknown as Sql, ids[3]!, nid);
    });
    expect(await count("observation_drafts", nid)).toBe(1);
    const err = await pgError(db.sql.begin(async (tx) => {
      await tx`insert into public.observation_drafts (observation_id) values (gen_random_uuid())`;
    }));
    expect(err.code).toBe("23503");
    // a draft that is gone again by commit time is not checked
    await db.sql.begin(async (tx) => {
      await tx`insert into public.observation_drafts (draft_id, observation_id) values ('00000000-0000-4000-8000-00000000d1af', gen_random_uuid())`;
      await tx`delete from public.observation_drafts where draft_id = '00000000-0000-4000-8000-00000000d1af'`;
    });
  });

  it("a delete waits for a concurrent transaction that adds a reference, then refuses", async () => {
    const id = ids[25]!;
    const other = connect(db.url);
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let inserted!: () => void;
      const insertedP = new Promise<void>((r) => (inserted = r));
      const writer = other.begin(async (tx) => {
        await tx`insert into public.observation_reviews (observation_id) values (${id})`;
        inserted();
        await held;
      });
      await insertedP;
      const started = performance.now();
      const deleting = pgError(db.sql`delete from public.petri_observations where observation_id = ${id}`);
      await sleep(400);
      release();
      await writer;
      const err = await deleting;
      expect(performance.now() - started).toBeGreaterThanOrEqual(350);
      expect(err.code).toBe("23503");
      expect(await count("petri_observations", id)).toBe(1);
    } finally {
      await other.end();
    }
  });

  it("TRUNCATE is refused while references exist", async () => {
    const err = await pgError(db.sql`truncate public.petri_observations`);
    expect(err.message).toMatch(/cannot truncate a table referenced in a foreign key constraint/);
    expect(Number((await db.sql`select count(*)::int as n from public.petri_observations`)[0]?.n)).toBeGreaterThan(0);
  });

  it("rollback declares the constraints again on the legacy table, with every write made since the swap", async () => {
    const nid = randomUUID();
    await cloneObservation(db.sql, ids[4]!, nid);
    await db.sql`insert into public.observation_notes (observation_id) values (${nid})`;
    const msg = await rollback(db.sql, "petri");
    expect(msg).toMatch(/validate_restored_references/);
    expect(await carried()).toEqual([]);
    expect((await declared()).map((d) => d.valid)).toEqual([false, false, false, false]);
    // through the operator API (what the partition-admin function and npm run admin call)
    const [v] = await db.sql<{ r: { status: string; result: { validated: string[] } } }[]>`
      select partition_mgmt.admin_run('validate-references', 'petri', '{}'::jsonb) as r`;
    expect(v!.r.status).toBe("ok");
    expect(v!.r.result.validated).toHaveLength(4);
    expect((await declared()).every((d) => d.valid)).toBe(true);
    const [t] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_trigger where tgname like 'zzz_ref%'`;
    expect(t!.n).toBe(0);
    expect(await leftovers(db.sql, "petri")).toEqual({ triggers: [], functions: [], state: 0, shadows: [] });
    // the declared constraint is what enforces it now
    const err = await pgError(db.sql`delete from public.petri_observations where observation_id = ${ids[10]!}`);
    expect(err.message).toMatch(/observation_reviews_observation_id_fkey/);
    await db.sql`delete from public.petri_observations where observation_id = ${nid}`;
    expect(await count("observation_notes", nid)).toBe(0);
  });

  it("swap again and finalize: the references outlive the legacy table", async () => {
    await migrateOnline(db.sql, "petri", { batchSize: 500, swap: true });
    await db.sql`select partition_mgmt.finalize_migration('petri')`;
    expect(await db.sql`select to_regclass('public.petri_observations_old') as t`).toEqual([{ t: null }]);
    expect(await carried()).toHaveLength(4);
    const err = await pgError(db.sql`insert into public.observation_reviews (observation_id) values (gen_random_uuid())`);
    expect(err.code).toBe("23503");
    const id = ids[5]!;
    await db.sql`delete from public.petri_observations where observation_id = ${id}`;
    expect(await count("observation_notes", id)).toBe(0);
  });

});

/** Two tables referencing petri_observations (notes ON DELETE CASCADE, reviews NO ACTION), then the online migration and swap. */
async function referencesAndSwap(sql: Sql): Promise<void> {
  await sql.unsafe(`
    create table public.observation_notes (
      note_id uuid primary key default gen_random_uuid(),
      observation_id uuid not null references public.petri_observations (observation_id) on delete cascade, body text);
    create index on public.observation_notes (observation_id);
    create table public.observation_reviews (
      review_id uuid primary key default gen_random_uuid(),
      observation_id uuid references public.petri_observations (observation_id));
    create index on public.observation_reviews (observation_id);`);
  await migrateOnline(sql, "petri", { batchSize: 1000, swap: true });
}

/** Rows of public.<table> that reference observation `id`. */
async function referencesTo(sql: Sql, table: string, id: string): Promise<number> {
  return (await sql<{ n: number }[]>`select count(*)::int as n from ${sql("public")}.${sql(table)} where observation_id = ${id}`)[0]!.n;
}

describe("references and row retention (sized tree: old rows leave shared leaves one by one)", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_refs_rows");
    await loadSmallDemo(db.sql);
    await referencesAndSwap(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });
  const count = (table: string, id: string) => referencesTo(db.sql, table, id);

  it("retention in shared leaves keeps the rows a NO ACTION reference points to, and cascades for the rest", async () => {
    // the demo's sites are too small for leaves of their own: retention deletes old rows one by one
    expect((await db.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.partition_registry where table_key = 'petri' and level = 'period'`)[0]!.n).toBe(0);
    const cutoff = "date_trunc('month', now()) - interval '1 month'";
    const [reviewed] = await db.sql<{ id: string }[]>`
      select o.observation_id::text as id from public.petri_observations o
      where o.created_at < ${db.sql.unsafe(cutoff)} order by o.observation_id limit 1`;
    await db.sql`insert into public.observation_reviews (observation_id) values (${reviewed!.id})`;
    const reviews = await count("observation_reviews", reviewed!.id);
    const [noted] = await db.sql<{ id: string }[]>`
      select o.observation_id::text as id from public.petri_observations o
      where o.created_at < ${db.sql.unsafe(cutoff)}
        and not exists (select from public.observation_reviews r where r.observation_id = o.observation_id)
      order by o.observation_id desc limit 1`;
    await db.sql`insert into public.observation_notes (observation_id, body) values (${noted!.id}, 'goes with its row')`;
    const pinned = (await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.petri_observations o where o.created_at < ${db.sql.unsafe(cutoff)}
        and exists (select from public.observation_reviews r where r.observation_id = o.observation_id)`)[0]!.n;
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
    try {
      // in batches, as maintenance runs it
      while ((await db.sql<{ n: number }[]>`select partition_mgmt.apply_row_retention('petri', 500)::int as n`)[0]!.n === 500);
    } finally {
      await db.sql`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
    }
    const [left] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.petri_observations where created_at < ${db.sql.unsafe(cutoff)}`;
    expect(left!.n).toBe(pinned);
    expect(await count("petri_observations", reviewed!.id)).toBe(1);
    expect(await count("observation_reviews", reviewed!.id)).toBe(reviews);
    expect(await count("petri_observations", noted!.id)).toBe(0);
    expect(await count("observation_notes", noted!.id)).toBe(0);
    // no note points at an observation that is gone, and the key table lost exactly the deleted rows
    const [dangling] = await db.sql<{ notes: number; keys: number; rows: number }[]>`
      select (select count(*)::int from public.observation_notes n
              where not exists (select from partition_mgmt.observation_keys k where k.table_key = 'petri' and k.observation_id = n.observation_id)) as notes,
             (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri') as keys,
             (select count(*)::int from public.petri_observations) as rows`;
    expect(dangling).toEqual({ notes: 0, keys: dangling!.rows, rows: dangling!.rows });
  });
});

describe("references and leaf retention (the plan's literal tree)", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_refs_literal", { treeShape: "literal" });
    // even this small demo's literal tree fits fewer than 20 statements without the keys in
    // Micro's lock table (pre_migration_check would refuse it): lower the bar for this test
    await db.sql`update partition_mgmt.managed_tables set min_keyless_statements = 5`;
    await loadSmallDemo(db.sql);
    await referencesAndSwap(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });
  const count = (table: string, id: string) => referencesTo(db.sql, table, id);

  it("retention keeps a month that a NO ACTION reference points into, and cascades for the rest", async () => {
    // retention of 1 month drops the months that ended before last month began: one old
    // observation gets a review (NO ACTION), one in another leaf a note (CASCADE)
    const [reviewed] = await db.sql<{ id: string; leaf: string }[]>`
      select o.observation_id::text as id, o.tableoid::regclass::text as leaf from public.petri_observations o
      where o.created_at < date_trunc('month', now()) - interval '1 month' order by o.observation_id limit 1`;
    await db.sql`insert into public.observation_reviews (observation_id) values (${reviewed!.id})`;
    const [noted] = await db.sql<{ id: string; leaf: string }[]>`
      select o.observation_id::text as id, o.tableoid::regclass::text as leaf from public.petri_observations o
      where o.created_at < date_trunc('month', now()) - interval '1 month' and o.tableoid <> ${reviewed!.leaf}::regclass
      order by o.observation_id limit 1`;
    await db.sql`insert into public.observation_notes (observation_id, body) values (${noted!.id}, 'goes with its month')`;
    await db.sql`update partition_mgmt.managed_tables set retention_months = 1, retention_action = 'drop' where table_key = 'petri'`;
    try {
      await db.sql`select partition_mgmt.apply_retention('petri')`;
    } finally {
      await db.sql`update partition_mgmt.managed_tables set retention_months = null where table_key = 'petri'`;
    }
    const [r] = await db.sql<{ reviewed: string | null; noted: string | null }[]>`
      select to_regclass(${reviewed!.leaf})::text as reviewed, to_regclass(${noted!.leaf})::text as noted`;
    expect(r!.reviewed).not.toBeNull();
    expect(r!.noted).toBeNull();
    expect(await count("observation_notes", noted!.id)).toBe(0);
    expect(await count("observation_reviews", reviewed!.id)).toBe(1);
    expect(await count("petri_observations", reviewed!.id)).toBe(1);
    const [dangling] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from public.observation_notes n
      where not exists (select from partition_mgmt.observation_keys k where k.table_key = 'petri' and k.observation_id = n.observation_id)`;
    expect(dangling!.n).toBe(0);
  });
});

describe("gasifier rows the app writes without program_id during the migration", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_nullprog");
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("are copied with the site's program and listed; the validation checks the list; a rollback gives the NULL back", async () => {
    await db.sql`select * from partition_mgmt.safe_migrate_table('gasifier', false, true)`;
    // the app, still on the legacy table, inserts a row without program_id (allowed there)
    const [src] = await db.sql<{ id: string; program_id: string }[]>`
      select observation_id::text as id, program_id::text from public.gasifier_observations where program_id is not null order by observation_id limit 1`;
    const nid = randomUUID();
    await db.sql`insert into public.gasifier_observations
                 select (jsonb_populate_record(null::public.gasifier_observations,
                         to_jsonb(o) || jsonb_build_object('observation_id', ${nid}::text, 'program_id', null))).*
                 from public.gasifier_observations o where o.observation_id = ${src!.id}`;
    const [copy] = await db.sql<{ program_id: string; listed: boolean }[]>`
      select program_id::text, exists (select from partition_mgmt.rows_without_program w where w.table_key = 'gasifier' and w.observation_id = p.observation_id) as listed
      from public.gasifier_observations_partitioned p where observation_id = ${nid}`;
    expect(copy).toEqual({ program_id: src!.program_id, listed: true });

    await migrateOnline(db.sql, "gasifier", { batchSize: 1000 });
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
    const listCheck = async () => {
      const [v] = await db.sql<{ status: string; legacy_value: string; partitioned_value: string; detail: string }[]>`
        select status, legacy_value, partitioned_value, detail from partition_mgmt.post_migration_validation('gasifier') where check_name = 'rows without program_id'`;
      return v!;
    };
    const [nulls] = await db.sql<{ n: string }[]>`select count(*)::text as n from public.gasifier_observations where program_id is null`;
    expect(await listCheck()).toMatchObject({ status: "ok", legacy_value: nulls!.n, partitioned_value: nulls!.n });
    // the check sees a row missing from the list
    await db.sql`delete from partition_mgmt.rows_without_program where table_key = 'gasifier' and observation_id = ${nid}`;
    const broken = await listCheck();
    expect(broken.status).toBe("mismatch");
    expect(broken.detail).toContain(`not listed: ${nid}`);
    await db.sql`insert into partition_mgmt.rows_without_program (table_key, observation_id) values ('gasifier', ${nid})`;
    expect((await listCheck()).status).toBe("ok");

    // the swap goes through; the app edits the row; the rollback gives it back without program_id
    const [s] = await db.sql<{ phase: string }[]>`select * from partition_mgmt.swap_tables('gasifier')`;
    expect(s!.phase).toBe("swapped");
    await db.sql`update public.gasifier_observations set notes = 'after the swap', site_id = site_id where observation_id = ${nid}`;
    const [old] = await db.sql<{ program_id: string | null; notes: string }[]>`
      select program_id::text, notes from public.gasifier_observations_old where observation_id = ${nid}`;
    expect(old).toEqual({ program_id: null, notes: "after the swap" });
    await rollback(db.sql, "gasifier");
    const [back] = await db.sql<{ program_id: string | null; notes: string }[]>`
      select program_id::text, notes from public.gasifier_observations where observation_id = ${nid}`;
    expect(back).toEqual({ program_id: null, notes: "after the swap" });
    const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.rows_without_program where table_key = 'gasifier'`;
    expect(left!.n).toBe(0);
  });
});
