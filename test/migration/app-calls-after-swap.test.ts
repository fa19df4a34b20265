// What changes for an app's supabase-js calls when the observation tables are swapped for the
// partitioned ones (docs/your-app.md: each row there names the test here that
// backs it). Every call is sent as the SQL PostgREST 12 sends for it (test/helpers/postgrest.ts:
// its transaction, role, claims and settings, its `WITH pgrst_source AS (…)` statement) as a
// signed-in user of demo company 1, to two databases with the same demo data: `legacy`, as the app
// has it before the migration, and `swapped`, after migrateOnline(…, { swap: true }) of both tables.
// Covers, per call: the same answer before and after (or the exact error after), how many
// partitions it locks (every leaf and every index of every leaf for a call without the partition
// keys: "slower"), the routed replacement where one is needed and that it answers the same; and that
// a user sees only their company's rows through each of these statements; the routed calls still
// lock one leaf on the tenth call of a session (no generic plan over the whole tree).
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import {
  deleteStatement, insertStatement, readStatement, relationships, rpcStatement, send, updateStatement, userCaller,
  type Caller, type Filter, type Row,
} from "../helpers/postgrest.ts";

interface Observation extends Row {
  observation_id: string;
  company_id: string;
  program_id: string;
  site_id: string;
  submission_id: string;
  created_at: string;
  growth_index: number | null;
  notes: string | null;
}

interface Picks {
  companyId: string;
  otherCompanyId: string;
  programId: string;
  siteId: string;
  submissionId: string;
  /** [from, to) inside the data's middle month */
  from: string;
  to: string;
  /** company 1's observations, one per test that changes one */
  mine: string[];
  /** an observation of company 2 */
  theirs: string;
}

const KEYS = ["observation_id", "program_id", "site_id", "created_at"] as const;
/**
 * The demo app's own trigger sets updated_at to now() on every update: the same call sent to the
 * two databases a few milliseconds apart answers different updated_at, and nothing else.
 */
function withoutUpdatedAt<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutUpdatedAt) as T;
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== "updated_at").map(([k, x]) => [k, withoutUpdatedAt(x)])) as T;
  }
  return v;
}
const eq = (column: string, value: string): Filter => ({ column, op: "eq", value });
const byId = (id: string): Filter[] => [eq("observation_id", id)];

// The app's own table with a foreign key to the observations (what the swap carries as triggers).
const APP_NOTES_TABLE = `
  create table public.observation_notes (
    note_id uuid primary key default gen_random_uuid(),
    observation_id uuid not null references public.petri_observations (observation_id) on delete cascade,
    body text not null);
  create index on public.observation_notes (observation_id);
  alter table public.observation_notes enable row level security;
  -- the notes' own policy is not the subject: the embedded observation is read under its own RLS
  create policy notes_read on public.observation_notes for select to authenticated using (true);
  grant select on public.observation_notes to authenticated;`;

// The replacement for embedding through it after the swap, as docs/your-app.md
// gives it: computed relationships (PostgREST finds a one-argument function from a table's row type
// to a table's row type; `rows 1` makes it to-one). The to-one side goes through the routed fetch.
const COMPUTED_RELATIONSHIPS = `
  create function public.petri_observations(n public.observation_notes)
  returns setof public.petri_observations rows 1
  language sql stable
  as $$
    select r.* from jsonb_populate_record(null::public.petri_observations,
                                          public.get_observation_by_id('petri_observations', n.observation_id)) r
    where r.observation_id is not null
  $$;
  create function public.observation_notes(o public.petri_observations)
  returns setof public.observation_notes
  language sql stable
  as $$ select * from public.observation_notes n where n.observation_id = o.observation_id $$;`;

describe("supabase-js calls before and after the swap, as PostgREST sends them", () => {
  let legacy: FreshDb;
  let swapped: FreshDb;
  let me: Caller;
  let picks: Picks;
  /** leaves of the petri tree, and what a statement without the keys locks in schema partitions */
  let petriLeaves: number;
  let keylessLocks: number;

  beforeAll(async () => {
    const asOf = new Date();
    [legacy, swapped] = await Promise.all([
      freshDatabase("app_calls_legacy", { targetRowsPerLeaf: 100 }),
      freshDatabase("app_calls_swapped", { targetRowsPerLeaf: 100 }),
    ]);
    for (const db of [legacy, swapped]) {
      await loadSmallDemo(db.sql, { asOf, gasifierNullProgramShare: 0 });
      await db.sql.unsafe(APP_NOTES_TABLE);
    }
    // picks (the same ids in both databases: the demo data is a function of its options)
    const [c] = await legacy.sql<{ user_id: string; email: string; company_id: string; other: string }[]>`
      select u.id as user_id, u.email, u.company_id,
             (select company_id from public.companies where name = 'Demo Company 2') as other
      from public.users u join public.companies c on c.company_id = u.company_id
      where c.name = 'Demo Company 1' order by u.email limit 1`;
    const [s] = await legacy.sql<{ program_id: string; site_id: string; submission_id: string; from: string; to: string }[]>`
      select p.program_id, s.site_id,
             (select submission_id from public.submissions b where b.site_id = s.site_id order by b.created_at limit 1) as submission_id,
             (date_trunc('month', ${asOf.toISOString()}::timestamptz) - interval '1 month')::text as from,
             date_trunc('month', ${asOf.toISOString()}::timestamptz)::text as to
      from public.pilot_programs p join public.sites s on s.program_id = p.program_id
      where p.company_id = ${c!.company_id} order by p.name, s.name limit 1`;
    const mine = await legacy.sql<{ id: string }[]>`
      select observation_id as id from public.petri_observations where company_id = ${c!.company_id} order by observation_id limit 12`;
    const [theirs] = await legacy.sql<{ id: string }[]>`
      select observation_id as id from public.petri_observations where company_id = ${c!.other} order by observation_id limit 1`;
    picks = { companyId: c!.company_id, otherCompanyId: c!.other, programId: s!.program_id, siteId: s!.site_id, submissionId: s!.submission_id,
              from: s!.from, to: s!.to, mine: mine.map((r) => r.id), theirs: theirs!.id };
    me = userCaller(c!.user_id, c!.email);
    for (const db of [legacy, swapped]) {
      // the demo app lets a user delete only the observations they wrote: these are the user's (the
      // app's own trigger would stamp updated_at with this instant, different in each database)
      await db.sql.begin(async (tx) => {
        await tx`alter table public.petri_observations disable trigger touch_updated_at`;
        await tx`update public.petri_observations set created_by = ${c!.user_id} where observation_id = any (${picks.mine}::uuid[])`;
        await tx`alter table public.petri_observations enable trigger touch_updated_at`;
      });
      await db.sql`insert into public.observation_notes (note_id, observation_id, body)
                   select md5('note' || observation_id)::uuid, observation_id, 'note ' || observation_id from public.petri_observations
                   where observation_id = any (${[...picks.mine.slice(0, 3), picks.theirs]}::uuid[])`;
    }

    await migrateOnline(swapped.sql, "petri", { batchSize: 1000, swap: true });
    await migrateOnline(swapped.sql, "gasifier", { batchSize: 1000, swap: true });
    const [t] = await swapped.sql<{ leaves: number; locks: number }[]>`
      select (select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and is_leaf) as leaves,
             partition_mgmt.keyless_statement_locks('public.petri_observations')::int - 1 as locks`;
    petriLeaves = t!.leaves;
    keylessLocks = t!.locks;
  });
  afterAll(async () => {
    await legacy?.drop();
    await swapped?.drop();
  });

  /** Locks a fully keyed statement takes: the one leaf, its indexes, and the partitioned tables above it. */
  async function oneLeafLocks(id: string): Promise<number> {
    const [r] = await swapped.sql<{ n: number }[]>`
      with leaf as (select tableoid as oid from public.petri_observations where observation_id = ${id})
      select (select count(*)::int from pg_partition_ancestors((select oid from leaf)) a where a.relid <> 'public.petri_observations'::regclass)
           + (select count(*)::int from pg_index i where i.indrelid = (select oid from leaf)) as n`;
    return r!.n;
  }

  it("select by program, site and date: the same rows; the swapped table locks only that site's leaves", async () => {
    const call = readStatement({
      table: "petri_observations",
      filters: [eq("program_id", picks.programId), eq("site_id", picks.siteId),
                { column: "created_at", op: "gte", value: picks.from }, { column: "created_at", op: "lt", value: picks.to }],
      order: [{ column: "created_at", ascending: false }, { column: "observation_id", ascending: false }],
      limit: 50,
    });
    const before = await send<Observation[]>(legacy.sql, me, call);
    const after = await send<Observation[]>(swapped.sql, me, call);
    expect(before.error).toBeNull();
    expect(before.data!.length).toBeGreaterThan(10);
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    const [site] = await swapped.sql<{ locks: number }[]>`
      select count(*)::int + (select count(*)::int from pg_index i join partition_mgmt.partition_registry g
                              on i.indrelid = format('%I.%I', g.partition_schema, g.partition_name)::regclass
                              where g.table_key = 'petri' and g.is_leaf and g.site_id = ${picks.siteId}) as locks
      from partition_mgmt.partition_registry g where g.table_key = 'petri' and g.site_id = ${picks.siteId}`;
    expect(after.partitionLocks).toBeGreaterThan(0);
    // the program's and the site's partitioned tables, the site's leaves and their indexes at most
    expect(after.partitionLocks).toBeLessThanOrEqual(site!.locks + 2);
    expect(after.partitionLocks).toBeLessThan(keylessLocks / 4);

    // a program page (the program filter alone) reads that program's leaves only
    const programPage = readStatement({ table: "petri_observations", filters: [eq("program_id", picks.programId)],
      order: [{ column: "created_at", ascending: false }], limit: 100 });
    const p0 = await send<Observation[]>(legacy.sql, me, programPage);
    const p1 = await send<Observation[]>(swapped.sql, me, programPage);
    expect(withoutUpdatedAt(p1)).toMatchObject({ error: null, data: withoutUpdatedAt(p0.data) });
    expect(p1.partitionLocks).toBeLessThan(keylessLocks / 2);
  });

  it("select .eq('observation_id'): the same row, but the swapped table plans and locks every leaf; get_observation_by_id locks one", async () => {
    const id = picks.mine[0]!;
    const call = readStatement({ table: "petri_observations", filters: byId(id) });
    const before = await send<Observation[]>(legacy.sql, me, call);
    const after = await send<Observation[]>(swapped.sql, me, call);
    expect(before.data).toHaveLength(1);
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    expect(after.partitionLocks).toBe(keylessLocks);
    expect(keylessLocks).toBeGreaterThan(2 * petriLeaves);

    const routed = await send<Observation>(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "get_observation_by_id", args: { p_table: "petri_observations", p_observation_id: id } }));
    expect(routed.error).toBeNull();
    expect(routed.data).toEqual(before.data![0]);
    expect(routed.partitionLocks).toBe(await oneLeafLocks(id));
    console.log(`[app-calls] petri tree of ${petriLeaves} leaves: .eq('observation_id') locks ${after.partitionLocks} relations, get_observation_by_id ${routed.partitionLocks}`);
  });

  it("update .eq('observation_id'): works, locking every leaf; update_observation_by_id routes to one leaf", async () => {
    const id = picks.mine[1]!;
    const call = await updateStatement(legacy.sql, { table: "petri_observations", set: { notes: "updated by id" }, filters: byId(id) });
    const before = await send<Observation[]>(legacy.sql, me, call);
    const after = await send<Observation[]>(swapped.sql, me, call);
    expect(before.error).toBeNull();
    expect(before.data).toMatchObject([{ observation_id: id, notes: "updated by id" }]);
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    expect(after.partitionLocks).toBe(keylessLocks);

    const routed = await send<Observation>(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "update_observation_by_id",
      args: { p_table: "petri_observations", p_observation_id: id, p_changes: { notes: "routed" } } }));
    expect(routed.error).toBeNull();
    expect(routed.data).toMatchObject({ observation_id: id, notes: "routed" });
    expect(routed.partitionLocks).toBe(await oneLeafLocks(id));
    await send(legacy.sql, me, await updateStatement(legacy.sql, { table: "petri_observations", set: { notes: "routed" }, filters: byId(id) }));
  });

  it("delete .eq('observation_id'): works, locking every leaf; delete_observation_by_id routes to one leaf", async () => {
    const [plain, viaRpc] = [picks.mine[4]!, picks.mine[5]!];
    const call = deleteStatement({ table: "petri_observations", filters: byId(plain) });
    const before = await send<Observation[]>(legacy.sql, me, call);
    const after = await send<Observation[]>(swapped.sql, me, call);
    expect(before.data).toMatchObject([{ observation_id: plain }]);
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    expect(after.partitionLocks).toBe(keylessLocks);

    const leafLocks = await oneLeafLocks(viaRpc);
    const routed = await send<boolean>(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "delete_observation_by_id",
      args: { p_table: "petri_observations", p_observation_id: viaRpc } }));
    expect(routed).toMatchObject({ error: null, data: true });
    expect(routed.partitionLocks).toBe(leafLocks);
    await send(legacy.sql, me, deleteStatement({ table: "petri_observations", filters: byId(viaRpc) }));
  });

  it("select .eq('submission_id'): the same rows, locking every leaf; petri_observations_by_submission reads the submission's site", async () => {
    const call = readStatement({ table: "petri_observations", filters: [eq("submission_id", picks.submissionId)], order: [{ column: "observation_id", ascending: true }] });
    const before = await send<Observation[]>(legacy.sql, me, call);
    const after = await send<Observation[]>(swapped.sql, me, call);
    expect(before.data!.length).toBeGreaterThan(0);
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    expect(after.partitionLocks).toBe(keylessLocks);

    const view = readStatement({ table: "petri_observations_by_submission", filters: [eq("submission_id", picks.submissionId)], order: [{ column: "observation_id", ascending: true }] });
    const routed = await send<Observation[]>(swapped.sql, me, view);
    expect(routed.error).toBeNull();
    expect(routed.data!.map((r) => r.observation_id)).toEqual(before.data!.map((r) => r.observation_id));
    expect(routed.partitionLocks).toBeLessThan(keylessLocks / 4);
  });

  it("the routed calls lock one leaf (the view: one site's) on every call of a session, after PostgreSQL's first five plans too", async () => {
    // Their statements are static, so PL/pgSQL keeps them prepared: five custom plans, then a generic
    // plan when PostgreSQL judges it cheaper. A generic plan of the partitioned table holds every
    // leaf (pruned only at run time, locked before), so the tenth call is checked like the first.
    const session = connect(swapped.url, 1);
    try {
      const ids = [picks.mine[2]!, picks.mine[3]!, picks.mine[10]!, picks.mine[11]!];
      const view = readStatement({ table: "petri_observations_by_submission", filters: [eq("submission_id", picks.submissionId)] });
      const siteLocks: number[] = [];
      for (let call = 0; call < 10; call++) {
        const id = ids[call % ids.length]!;
        const fetched = await send<Observation>(session, me, await rpcStatement(session, { fn: "get_observation_by_id", args: { p_table: "petri_observations", p_observation_id: id } }));
        expect(fetched.data).toMatchObject({ observation_id: id });
        expect(fetched.partitionLocks, `fetch, call ${call + 1}`).toBe(await oneLeafLocks(id));
        const updated = await send<Observation>(session, me, await rpcStatement(session, { fn: "update_observation_by_id",
          args: { p_table: "petri_observations", p_observation_id: id, p_changes: { notes: `call ${call}` } } }), { rollback: true });
        expect(updated.data).toMatchObject({ observation_id: id, notes: `call ${call}` });
        expect(updated.partitionLocks, `update, call ${call + 1}`).toBe(await oneLeafLocks(id));
        const rows = await send<Observation[]>(session, me, view);
        expect(rows.data!.length).toBeGreaterThan(0);
        siteLocks.push(rows.partitionLocks);
      }
      expect(siteLocks[0]).toBeLessThan(keylessLocks / 4);
      expect(siteLocks).toEqual(siteLocks.map(() => siteLocks[0]));
    } finally {
      await session.end();
    }
  });

  it("upsert with onConflict 'observation_id': 42P10 after the swap; onConflict on the whole primary key works for rows that carry their keys", async () => {
    const id = picks.mine[6]!;
    const [row] = await legacy.sql<Observation[]>`select * from public.petri_observations where observation_id = ${id}`;
    // supabase-js sends the row as JSON: what the app read back from the API
    const [json] = await legacy.sql<{ row: Row }[]>`select to_jsonb(o) - 'company_id' as row from public.petri_observations o where observation_id = ${id}`;
    const changed = { ...json!.row, growth_index: 12.5 };
    const byId = await insertStatement(legacy.sql, { table: "petri_observations", rows: [changed], onConflict: ["observation_id"] });
    const before = await send<Observation[]>(legacy.sql, me, byId);
    expect(before.error).toBeNull();
    expect(before.data).toMatchObject([{ observation_id: id, growth_index: 12.5 }]);

    const after = await send<Observation[]>(swapped.sql, me, byId);
    expect(after.data).toBeNull();
    expect(after.error).toEqual({ code: "42P10", message: "there is no unique or exclusion constraint matching the ON CONFLICT specification", details: null, hint: null });
    // the pre-check says so before the swap, from what the app sent (pg_stat_statements)
    const [warned] = await legacy.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'upserts on observation_id'`;
    expect(warned).toMatchObject({ status: "warning", detail: expect.stringMatching(/the app sent \d+ statement\(s\) upserting petri_observations with ON CONFLICT \(observation_id\) .* 42P10/) });

    // replacement: the whole primary key as the conflict target
    const byKey = await insertStatement(swapped.sql, { table: "petri_observations", rows: [changed], onConflict: [...KEYS] });
    const replaced = await send<Observation[]>(swapped.sql, me, byKey);
    expect(replaced.error).toBeNull();
    expect(withoutUpdatedAt(replaced.data)).toEqual(withoutUpdatedAt(before.data));
    const fresh = { ...changed, observation_id: randomUUID(), petri_code: "upserted" };
    const inserted = await send<Observation[]>(swapped.sql, me, await insertStatement(swapped.sql, { table: "petri_observations", rows: [fresh], onConflict: [...KEYS] }));
    expect(inserted.error).toBeNull();
    expect(inserted.data).toMatchObject([{ observation_id: fresh.observation_id, program_id: row!.program_id }]);

    // a row whose keys changed since it was read is no conflict on the whole key: an insert, refused
    const [otherSite] = await swapped.sql<{ site_id: string }[]>`
      select site_id from public.sites where program_id = ${row!.program_id} and site_id <> ${row!.site_id} limit 1`;
    const moved = { ...changed, site_id: otherSite!.site_id };
    const refused = await send(swapped.sql, me, await insertStatement(swapped.sql, { table: "petri_observations", rows: [moved], onConflict: [...KEYS] }));
    expect(refused.error).toMatchObject({ code: "23505", hint: "Use a new id, or update the existing row." });
    expect(refused.error?.message).toContain(`duplicate observation_id ${id}`);
    // ...and the routed update moves it
    const routed = await send<Observation>(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "update_observation_by_id",
      args: { p_table: "petri_observations", p_observation_id: id, p_changes: { site_id: otherSite!.site_id } } }));
    expect(routed.data).toMatchObject({ observation_id: id, site_id: otherSite!.site_id });

    // the legacy database gets the same rows, so that the calls after this one compare equal data
    expect((await send(legacy.sql, me, await insertStatement(legacy.sql, { table: "petri_observations", rows: [fresh], onConflict: ["observation_id"] }))).error).toBeNull();
    expect((await send(legacy.sql, me, await insertStatement(legacy.sql, { table: "petri_observations", rows: [moved], onConflict: ["observation_id"] }))).error).toBeNull();
  });

  it("embedding through the foreign key the swap carried: no relationship after it (PGRST200); computed relationships answer the same", async () => {
    // what PostgREST's schema cache finds between the two tables
    const fk = [{ kind: "foreign-key", name: "observation_notes_observation_id_fkey", table: "observation_notes", target: "petri_observations" }];
    expect(await relationships(legacy.sql, "observation_notes", "petri_observations")).toEqual(fk);
    expect(await relationships(swapped.sql, "observation_notes", "petri_observations")).toEqual([]);
    const [carried] = await swapped.sql<{ n: number }[]>`
      select count(*)::int as n from partition_mgmt.carried_references where constraint_name = 'observation_notes_observation_id_fkey'`;
    expect(carried?.n).toBe(1);

    const notesWithObservation = readStatement({ table: "observation_notes", order: [{ column: "body", ascending: true }],
      embeds: [{ kind: "foreign-key", target: "petri_observations", toOne: true, column: "observation_id", targetColumn: "observation_id" }] });
    const observationWithNotes = readStatement({ table: "petri_observations", filters: [{ column: "observation_id", op: "in", value: picks.mine.slice(0, 3) }],
      order: [{ column: "observation_id", ascending: true }],
      embeds: [{ kind: "foreign-key", target: "observation_notes", toOne: false, column: "observation_id", targetColumn: "observation_id" }] });
    const before = await send<(Row & { petri_observations: Observation | null })[]>(legacy.sql, me, notesWithObservation);
    const beforeMany = await send<(Observation & { observation_notes: Row[] })[]>(legacy.sql, me, observationWithNotes);
    expect(before.error).toBeNull();
    expect(before.data).toHaveLength(4);
    // company 2's observation stays hidden behind its note
    expect(before.data!.filter((n) => n.petri_observations === null)).toHaveLength(1);
    expect(beforeMany.data!.map((o) => o.observation_notes.length)).toEqual([1, 1, 1]);

    await swapped.sql.unsafe(COMPUTED_RELATIONSHIPS);
    expect(await relationships(swapped.sql, "observation_notes", "petri_observations")).toEqual([
      { kind: "computed", name: "petri_observations", table: "observation_notes", target: "petri_observations" }]);
    expect(await relationships(swapped.sql, "petri_observations", "observation_notes")).toEqual([
      { kind: "computed", name: "observation_notes", table: "petri_observations", target: "observation_notes" }]);
    const after = await send(swapped.sql, me, readStatement({ table: "observation_notes", order: [{ column: "body", ascending: true }],
      embeds: [{ kind: "computed", fn: "petri_observations", target: "petri_observations", toOne: true }] }));
    expect(withoutUpdatedAt(after)).toMatchObject({ error: null, data: withoutUpdatedAt(before.data) });
    const afterMany = await send(swapped.sql, me, readStatement({ table: "petri_observations", filters: [{ column: "observation_id", op: "in", value: picks.mine.slice(0, 3) }],
      order: [{ column: "observation_id", ascending: true }],
      embeds: [{ kind: "computed", fn: "observation_notes", target: "observation_notes", toOne: false }] }));
    expect(withoutUpdatedAt(afterMany)).toMatchObject({ error: null, data: withoutUpdatedAt(beforeMany.data) });
  });

  it("embedding through the foreign keys the observation table declares (sites, programs, submissions): unchanged", async () => {
    for (const target of ["sites", "pilot_programs", "submissions"]) {
      expect((await relationships(swapped.sql, "petri_observations", target)).map((r) => r.kind), target).toEqual(["foreign-key"]);
    }
    const call = readStatement({ table: "petri_observations", filters: [eq("program_id", picks.programId), eq("site_id", picks.siteId)],
      order: [{ column: "observation_id", ascending: true }], limit: 20,
      embeds: [{ kind: "foreign-key", target: "sites", toOne: true, column: "site_id", targetColumn: "site_id" }] });
    type WithSite = Observation & { sites: { site_id: string; name: string } };
    const before = await send<WithSite[]>(legacy.sql, me, call);
    const after = await send<WithSite[]>(swapped.sql, me, call);
    expect(after.error).toBeNull();
    // (the sites' own timestamps differ between the two databases: they were loaded at different instants)
    const shown = (rows: WithSite[] | null) => (rows ?? []).map((r) => ({ ...r, sites: { site_id: r.sites.site_id, name: r.sites.name } }));
    expect(shown(before.data)[0]?.sites.name).toMatch(/^Site /);
    expect(withoutUpdatedAt(shown(after.data))).toEqual(withoutUpdatedAt(shown(before.data)));
  });

  it("count: 'exact': the same totals; with the program filter it counts that program's leaves, without it every leaf", async () => {
    const byProgram = readStatement({ table: "petri_observations", filters: [eq("program_id", picks.programId)], limit: 10, countExact: true });
    const p0 = await send<Observation[]>(legacy.sql, me, byProgram);
    const p1 = await send<Observation[]>(swapped.sql, me, byProgram);
    expect(p0.count).toBeGreaterThan(100);
    expect(p1).toMatchObject({ error: null, count: p0.count });
    expect(p1.partitionLocks).toBeLessThan(keylessLocks / 2);

    const whole = readStatement({ table: "petri_observations", limit: 1, countExact: true });
    const w0 = await send<Observation[]>(legacy.sql, me, whole);
    const w1 = await send<Observation[]>(swapped.sql, me, whole);
    const [mine] = await legacy.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations where company_id = ${picks.companyId}`;
    expect(w0.count).toBe(mine!.n);
    expect(w1).toMatchObject({ error: null, count: w0.count });
    expect(w1.partitionLocks).toBe(keylessLocks);
  });

  it("a user sees and changes only their company's rows through each of these statements, before and after", async () => {
    const theirs = picks.theirs;
    for (const db of [legacy, swapped]) {
      const all = await send<Observation[]>(db.sql, me, readStatement({ table: "petri_observations", countExact: true }));
      expect(all.error).toBeNull();
      expect(new Set(all.data!.map((r) => r.company_id))).toEqual(new Set([picks.companyId]));
      expect(all.count).toBe(all.data!.length);
      expect((await send(db.sql, me, readStatement({ table: "petri_observations", filters: byId(theirs) }))).data).toEqual([]);
      expect((await send(db.sql, me, await updateStatement(db.sql, { table: "petri_observations", set: { notes: "not mine" }, filters: byId(theirs) }))).data).toEqual([]);
      expect((await send(db.sql, me, deleteStatement({ table: "petri_observations", filters: byId(theirs) }))).data).toEqual([]);
      const gas = await send<Row[]>(db.sql, me, readStatement({ table: "gasifier_observations", filters: [eq("company_id", picks.otherCompanyId)], countExact: true }));
      expect(gas).toMatchObject({ error: null, data: [], count: 0 });
    }
    const args = { p_table: "petri_observations", p_observation_id: theirs };
    expect((await send(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "get_observation_by_id", args }))).data).toBeNull();
    expect((await send(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "update_observation_by_id", args: { ...args, p_changes: { notes: "not mine" } } }))).data).toBeNull();
    expect((await send(swapped.sql, me, await rpcStatement(swapped.sql, { fn: "delete_observation_by_id", args }))).data).toBe(false);
    const [still] = await swapped.sql<{ notes: string | null }[]>`select notes from public.petri_observations where observation_id = ${theirs}`;
    expect(still).toEqual({ notes: null });
  });

  describe("errors that would name an internal partition", () => {
    async function gasifierRowWithoutProgram(db: FreshDb): Promise<Row> {
      const [g] = await db.sql<{ submission_id: string; site_id: string }[]>`
        select submission_id, site_id from public.submissions where site_id = ${picks.siteId} order by submission_id limit 1`;
      return { submission_id: g!.submission_id, site_id: g!.site_id, gasifier_code: "no-program" };
    }

    it("a gasifier row without program_id: accepted before and after the swap, and after it holds its site's program; returned only where that program shares the root's DEFAULT leaf", async () => {
      const at = new Date().toISOString();
      const row = { ...(await gasifierRowWithoutProgram(legacy)), observation_id: randomUUID(), created_at: at, updated_at: at };
      const before = await send<Row[]>(legacy.sql, me, await insertStatement(legacy.sql, { table: "gasifier_observations", rows: [row] }));
      expect(before.error).toBeNull();
      expect(before.data).toMatchObject([{ observation_id: row.observation_id, program_id: null, company_id: picks.companyId }]);

      // the site's program has partitions of its own here: the row is stored, but not returned
      const [own] = await swapped.sql<{ n: number }[]>`
        select count(*)::int as n from partition_mgmt.partition_registry where table_key = 'gasifier' and level = 'program' and not is_default and program_id = ${picks.programId}`;
      expect(own!.n).toBe(1);
      const after = await send(swapped.sql, me, await insertStatement(swapped.sql, { table: "gasifier_observations", rows: [row] }));
      expect(after).toMatchObject({ error: null, data: [] });
      const read = await send<Row[]>(swapped.sql, me, readStatement({ table: "gasifier_observations", filters: byId(String(row.observation_id)) }));
      expect(read.data).toEqual([{ ...before.data![0], program_id: picks.programId }]);
      // sending program_id returns the row everywhere
      const keyed = { ...row, observation_id: randomUUID(), program_id: picks.programId };
      const fixed = await send<Row[]>(swapped.sql, me, await insertStatement(swapped.sql, { table: "gasifier_observations", rows: [keyed] }));
      expect(fixed.error).toBeNull();
      expect(fixed.data).toMatchObject([{ program_id: picks.programId, company_id: picks.companyId }]);

      // without a site too: refused before and after (23502), after the swap naming site_id and the app's table
      const noSite = { ...row, observation_id: randomUUID(), site_id: null };
      const refusedBefore = await send(legacy.sql, me, await insertStatement(legacy.sql, { table: "gasifier_observations", rows: [noSite] }));
      const refusedAfter = await send(swapped.sql, me, await insertStatement(swapped.sql, { table: "gasifier_observations", rows: [noSite] }));
      expect(refusedBefore.error?.code).toBe("23502");
      expect(refusedAfter.error).toMatchObject({
        code: "23502",
        message: 'null value in column "site_id" of relation "gasifier_observations" violates not-null constraint',
        hint: "Send site_id with the row.",
      });
    });

    it("a petri row without site_id or created_at, or an update to a NULL key: 23502 naming petri_observations, as before the swap", async () => {
      const [json] = await legacy.sql<{ row: Row }[]>`
        select to_jsonb(o) - 'company_id' - 'observation_id' as row from public.petri_observations o where observation_id = ${picks.mine[7]!}`;
      for (const key of ["site_id", "created_at"] as const) {
        const row = { ...json!.row, [key]: null };
        const before = await send(legacy.sql, me, await insertStatement(legacy.sql, { table: "petri_observations", rows: [row] }));
        const after = await send(swapped.sql, me, await insertStatement(swapped.sql, { table: "petri_observations", rows: [row] }));
        const message = `null value in column "${key}" of relation "petri_observations" violates not-null constraint`;
        expect(before.error).toMatchObject({ code: "23502", message });
        expect(after.error).toMatchObject({ code: "23502", message });
        expect(after.error?.details).toContain(`${key} is a partition key of public.petri_observations`);
        expect(after.error?.hint).toBe(key === "created_at"
          ? "Leave created_at out of the row to take its default (now()), or send a value."
          : "Send site_id with the row.");
      }
      const update = await updateStatement(swapped.sql, { table: "petri_observations", set: { site_id: null }, filters: byId(picks.mine[8]!) });
      expect((await send(swapped.sql, me, update)).error).toMatchObject({
        code: "23502", message: 'null value in column "site_id" of relation "petri_observations" violates not-null constraint' });
    });

    it("a CHECK violation keeps its SQLSTATE and constraint name; the message names the leaf that checked it", async () => {
      const [json] = await legacy.sql<{ row: Row }[]>`
        select to_jsonb(o) - 'company_id' - 'observation_id' || '{"growth_index": 5000}' as row
        from public.petri_observations o where observation_id = ${picks.mine[9]!}`;
      const before = await send(legacy.sql, me, await insertStatement(legacy.sql, { table: "petri_observations", rows: [json!.row] }));
      const after = await send(swapped.sql, me, await insertStatement(swapped.sql, { table: "petri_observations", rows: [json!.row] }));
      expect(before.error).toMatchObject({ code: "23514", message: 'new row for relation "petri_observations" violates check constraint "petri_observations_growth_index_range"' });
      expect(after.error?.code).toBe("23514");
      expect(after.error?.message).toMatch(/^new row for relation "petri_p_[0-9a-f]{12}_s_[0-9a-f]{12}_\w+" violates check constraint "petri_observations_growth_index_range"$/);
      // (no "Failing row contains": PostgreSQL shows no values of a table with RLS, before or after)
      expect(after.error).toMatchObject({ details: null, hint: null });
      expect(before.error).toMatchObject({ details: null, hint: null });
    });
  });
});
