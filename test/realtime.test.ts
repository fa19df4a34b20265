// What a Supabase Realtime subscriber receives, before and after the swap, read with the real
// decoder the way Realtime reads it: a logical replication slot with wal2json (format 2, include-pk,
// add-tables built from the supabase_realtime publication's pg_publication_tables), each change
// matched to subscribers by its schema and table name.
// Covers: before the swap a subscriber of public.petri_observations gets an insert, an update, a
// move to another site (an update) and a delete; after the swap wal2json reports nothing under that
// name (the documented trouble), and the change feed public.petri_observations_changes (in the
// publication) carries each of them, the move as one UPDATE with its old and new record; the feed
// has RLS by company; REPLICA IDENTITY FULL is carried to the partitioned table and its leaves;
// after a rollback the legacy table's subscribers are served again.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateOnline, rollback } from "../scripts/lib/migration-driver.ts";
import { freshDatabase, type FreshDb } from "./helpers/db.ts";
import { loadSmallDemo } from "./helpers/migration.ts";

const SLOT = "realtime_probe";

interface Change { action: string; schema: string; table: string; columns: Record<string, unknown>; identity: Record<string, unknown> }

describe("Realtime (wal2json) before and after the swap", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("realtime", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    await db.sql`alter table public.petri_observations replica identity full`;
    await db.sql`alter publication supabase_realtime add table public.petri_observations`;   // the publication exists, empty, as on hosted
    await db.sql`select pg_create_logical_replication_slot(${SLOT}, 'wal2json')`;
  });
  afterAll(async () => {
    if (db) {
      await db.sql`select pg_drop_replication_slot(${SLOT})`.catch(() => {});
      await db.drop();
    }
  });

  /** The changes since the last call, as Realtime decodes them. */
  async function realtimeChanges(): Promise<Change[]> {
    // decoding stops at the flushed WAL, and the test cluster commits asynchronously: one
    // synchronous commit flushes everything before it
    await db.sql.begin(async (tx) => {
      await tx`set local synchronous_commit = on`;
      await tx`create temporary table wal_flush_probe (x int) on commit drop`;   // writes WAL, so the commit flushes
    });
    const rows = await db.sql<{ data: string }[]>`
      select data from pg_logical_slot_get_changes(${SLOT}, null, null,
        'format-version', '2', 'include-pk', '1', 'include-transaction', 'false', 'include-type-oids', 'true',
        'actions', 'insert,update,delete',
        'add-tables', (select coalesce(string_agg(format('%s.%s', schemaname, tablename), ','), 'none.none')
                       from pg_publication_tables where pubname = 'supabase_realtime'))`;
    return rows.map((r) => {
      const j = JSON.parse(r.data) as { action: string; schema: string; table: string; columns?: { name: string; value: unknown }[]; identity?: { name: string; value: unknown }[] };
      const obj = (xs?: { name: string; value: unknown }[]) => Object.fromEntries((xs ?? []).map((c) => [c.name, c.value]));
      return { action: j.action, schema: j.schema, table: j.table, columns: obj(j.columns), identity: obj(j.identity) };
    });
  }

  /** Insert, update, move to another site of the same program, delete: one row's life. */
  async function lifeOfARow(): Promise<string> {
    const [s] = await db.sql<{ site: string; other: string; program: string; sub: string }[]>`
      select a.site_id as site, b.site_id as other, a.program_id as program,
             (select submission_id from public.submissions x where x.site_id = a.site_id limit 1) as sub
      from public.sites a join public.sites b on b.program_id = a.program_id and b.site_id <> a.site_id
      order by a.site_id limit 1`;
    const id = randomUUID();
    await db.sql`insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, created_at)
                 values (${id}, ${s!.sub}, ${s!.site}, ${s!.program}, 'rt', now())`;
    await db.sql`update public.petri_observations set notes = 'seen' where observation_id = ${id}`;
    await db.sql`update public.petri_observations set site_id = ${s!.other} where observation_id = ${id}`;
    await db.sql`delete from public.petri_observations where observation_id = ${id}`;
    return id;
  }

  it("before the swap: a subscriber of petri_observations gets every change", async () => {
    await realtimeChanges();
    const id = await lifeOfARow();
    const changes = (await realtimeChanges()).filter((c) => c.table === "petri_observations");
    expect(changes.map((c) => c.action)).toEqual(["I", "U", "U", "D"]);
    expect(changes.every((c) => c.schema === "public" && (c.columns.observation_id ?? c.identity.observation_id) === id)).toBe(true);
  });

  it("after the swap: nothing under the table's name, every change in the feed, the move as one UPDATE", async () => {
    const pre = await db.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'publications (Realtime)'`;
    expect(pre[0]?.status).toBe("warning");
    expect(pre[0]?.detail).toMatch(/receive nothing .*petri_observations_changes/);
    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
    const [ident] = await db.sql<{ parent: string; leaves: string[] }[]>`
      select (select relreplident::text from pg_class where oid = 'public.petri_observations'::regclass) as parent,
             array(select distinct k.relreplident::text from pg_partition_tree('public.petri_observations') t join pg_class k on k.oid = t.relid where t.isleaf) as leaves`;
    expect(ident).toEqual({ parent: "f", leaves: ["f"] });
    await realtimeChanges();

    const id = await lifeOfARow();
    const changes = await realtimeChanges();
    expect(changes.filter((c) => c.table === "petri_observations")).toEqual([]);
    const feed = changes.filter((c) => c.table === "petri_observations_changes");
    expect(feed.map((c) => [c.action, c.columns.op])).toEqual([["I", "INSERT"], ["I", "UPDATE"], ["I", "UPDATE"], ["I", "DELETE"]]);
    expect(feed.every((c) => c.columns.observation_id === id)).toBe(true);
    const move = JSON.parse(String(feed[2]!.columns.record)) as { site_id: string };
    const before = JSON.parse(String(feed[2]!.columns.old_record)) as { site_id: string; notes: string };
    expect(move.site_id).not.toBe(before.site_id);
    expect(before.notes).toBe("seen");
    expect(feed[3]!.columns.record).toBeNull();
  });

  it("the feed shows a signed-in user only the changes of their company", async () => {
    const users = await db.sql<{ id: string; company_id: string }[]>`select id, company_id from public.users where company_id is not null order by email`;
    const seen = async (u: { id: string }) => db.sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: u.id, role: "authenticated" })}, true)`;
      await tx`set local role authenticated`;
      return tx<{ company_id: string }[]>`select distinct company_id from public.petri_observations_changes`;
    });
    const a = users[0]!;
    const b = users.find((u) => u.company_id !== a.company_id)!;
    const seenByA = await seen(a);
    const seenByB = await seen(b);
    expect(seenByA.every((r) => r.company_id === a.company_id)).toBe(true);
    expect(seenByB.every((r) => r.company_id === b.company_id)).toBe(true);
    const [all] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_changes`;
    expect(all!.n).toBe(4);
  });

  it("after a rollback the legacy table's subscribers are served again", async () => {
    await rollback(db.sql, "petri");
    await realtimeChanges();
    await lifeOfARow();
    const changes = await realtimeChanges();
    expect(changes.filter((c) => c.table === "petri_observations").map((c) => c.action)).toEqual(["I", "U", "U", "D"]);
    expect(changes.filter((c) => c.table === "petri_observations_changes")).toEqual([]);
  });
});
