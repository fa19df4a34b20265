// What a Supabase Realtime subscriber receives, before and after the swap, read with the real
// decoder the way Realtime reads it and delivered the way Realtime delivers it
// (test/helpers/realtime.ts: a wal2json format-2 slot filtered to the supabase_realtime
// publication's tables, each change matched to subscribers by its schema and table name and checked
// against the subscriber's grants and RLS as their JWT).
// Covers: before the swap a subscriber of public.petri_observations gets an insert, an update, a
// move to another site (an update) and a delete, and a user of another company only the delete
// (Realtime cannot check RLS on a deleted row); after the swap wal2json reports nothing under that
// name (the documented trouble), supabase_realtime holds the change feed
// public.petri_observations_changes instead of the table and keeps its options (the feed: select
// for authenticated under RLS, nothing for anon, its sequence closed), and the feed carries each change, the move as one UPDATE with its old and new record; each company's
// signed-in user receives exactly the feed rows of their company's changes and nothing of the
// other's, anon nothing; REPLICA IDENTITY FULL is carried to the partitioned table and its leaves;
// after a rollback the publication is as it was, the legacy table's subscribers are served again,
// and finish_rollback drops the feed.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { createRealtimeSlot, deliveredTo, dropRealtimeSlot, realtimeChanges, type RealtimeChange, type Subscriber } from "../helpers/realtime.ts";

const SLOT = "realtime_probe";

describe("Realtime (wal2json) before and after the swap", () => {
  let db: FreshDb;
  let userA: { id: string; company_id: string };
  let userB: { id: string; company_id: string };
  let publicationBefore: Record<string, unknown>;
  beforeAll(async () => {
    db = await freshDatabase("realtime", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    await db.sql`alter table public.petri_observations replica identity full`;
    await db.sql`alter publication supabase_realtime add table public.petri_observations`;   // the publication exists, empty, as on hosted
    await createRealtimeSlot(db.sql, SLOT);
    const users = await db.sql<{ id: string; company_id: string }[]>`
      select id, company_id from public.users where company_id is not null and is_active order by email`;
    userA = users[0]!;
    userB = users.find((u) => u.company_id !== userA.company_id)!;
    expect(userB).toBeDefined();
    publicationBefore = await publication();
    expect(publicationBefore.tables).toEqual(["public.petri_observations"]);
  });
  afterAll(async () => {
    if (db) {
      await dropRealtimeSlot(db.sql, SLOT);
      await db.drop();
    }
  });

  /** supabase_realtime's options and the tables it names */
  async function publication(): Promise<Record<string, unknown>> {
    const [p] = await db.sql<Record<string, unknown>[]>`
      select p.pubowner::regrole::text as owner, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot,
             array(select format('%I.%I', n.nspname, c.relname) from pg_publication_rel r join pg_class c on c.oid = r.prrelid
                   join pg_namespace n on n.oid = c.relnamespace where r.prpubid = p.oid order by 1) as tables
      from pg_publication p where p.pubname = 'supabase_realtime'`;
    return p!;
  }

  const signedIn = (u: { id: string }, table: string, event: Subscriber["event"]): Subscriber =>
    ({ label: u.id, role: "authenticated", claims: { sub: u.id, role: "authenticated" }, table, event });
  const anon = (table: string, event: Subscriber["event"]): Subscriber => ({ label: "anon", role: "anon", claims: { role: "anon" }, table, event });

  /**
   * Insert, update, move to another site of the same program, delete: one row's life, in a site of
   * the company; poll() after each statement (Realtime reads the slot as the writes go on, and checks
   * RLS against the row as it is then).
   */
  async function lifeOfARow(companyId: string, poll: () => Promise<void> = async () => {}): Promise<string> {
    const [s] = await db.sql<{ site: string; other: string; program: string; sub: string }[]>`
      select a.site_id as site, b.site_id as other, a.program_id as program,
             (select submission_id from public.submissions x where x.site_id = a.site_id limit 1) as sub
      from public.sites a join public.sites b on b.program_id = a.program_id and b.site_id <> a.site_id
      join public.pilot_programs p on p.program_id = a.program_id
      where p.company_id = ${companyId}
      order by a.site_id limit 1`;
    expect(s, `a site with a sibling in company ${companyId}`).toBeDefined();
    const id = randomUUID();
    await db.sql`insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, created_at)
                 values (${id}, ${s!.sub}, ${s!.site}, ${s!.program}, 'rt', now())`;
    await poll();
    await db.sql`update public.petri_observations set notes = 'seen' where observation_id = ${id}`;
    await poll();
    await db.sql`update public.petri_observations set site_id = ${s!.other} where observation_id = ${id}`;
    await poll();
    await db.sql`delete from public.petri_observations where observation_id = ${id}`;
    await poll();
    return id;
  }

  /** What Realtime decodes while run() writes, and what it delivers to each subscriber, polled by run(). */
  async function realtimeDuring(subscribers: Subscriber[], run: (poll: () => Promise<void>) => Promise<void>) {
    await realtimeChanges(db.sql, SLOT);   // what came before is not ours
    const all: RealtimeChange[] = [];
    const received: RealtimeChange[][] = subscribers.map(() => []);
    const poll = async () => {
      const changes = await realtimeChanges(db.sql, SLOT);
      all.push(...changes);
      for (const [i, s] of subscribers.entries()) received[i]!.push(...await deliveredTo(db.sql, changes, s));
    };
    await run(poll);
    await poll();
    return { all, received };
  }
  const idOf = (c: RealtimeChange) => c.columns.observation_id ?? c.identity.observation_id;

  it("before the swap: a subscriber of petri_observations gets every change, a user of another company only the delete", async () => {
    const table = "public.petri_observations";
    let id = "";
    const { received } = await realtimeDuring([signedIn(userA, table, "*"), signedIn(userB, table, "*"), anon(table, "*")],
      async (poll) => { id = await lifeOfARow(userA.company_id, poll); });
    expect(received[0]!.map((c) => [c.action, idOf(c)])).toEqual([["I", id], ["U", id], ["U", id], ["D", id]]);
    // Realtime delivers a delete to every subscriber of the table (with RLS, its primary key only)
    expect(received[1]!.map((c) => [c.action, idOf(c)])).toEqual([["D", id]]);
    expect(received[2]!.map((c) => [c.action, idOf(c)])).toEqual([["D", id]]);
  });

  it("after the swap: nothing under the table's name, the feed in the publication instead of the table, every change in the feed, the move as one UPDATE", async () => {
    const pre = await db.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'publications (Realtime)'`;
    expect(pre[0]?.status).toBe("warning");
    expect(pre[0]?.detail).toMatch(/receive nothing .*petri_observations_changes/);
    expect(pre[0]?.detail).toContain("publication supabase_realtime: table public.petri_observations: removed");
    expect(pre[0]?.detail).toContain("publication supabase_realtime: table public.petri_observations_changes: added");
    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
    // the table's membership changed, none of the publication's options
    expect(await publication()).toEqual({ ...publicationBefore, tables: ["public.petri_observations_changes"] });
    // the feed is read-only for signed-in users (RLS), closed to anon, its identity sequence to both
    const [access] = await db.sql<Record<string, boolean>[]>`
      select has_table_privilege('anon', 'public.petri_observations_changes', 'select,insert,update,delete,truncate') as anon_table,
             has_table_privilege('authenticated', 'public.petri_observations_changes', 'insert,update,delete,truncate') as authenticated_writes,
             has_table_privilege('authenticated', 'public.petri_observations_changes', 'select') as authenticated_select,
             has_sequence_privilege('anon', pg_get_serial_sequence('public.petri_observations_changes', 'change_id'), 'select,usage,update') as anon_sequence,
             has_sequence_privilege('authenticated', pg_get_serial_sequence('public.petri_observations_changes', 'change_id'), 'select,usage,update') as authenticated_sequence`;
    expect(access).toEqual({ anon_table: false, authenticated_writes: false, authenticated_select: true, anon_sequence: false, authenticated_sequence: false });
    const [ident] = await db.sql<{ parent: string; leaves: string[] }[]>`
      select (select relreplident::text from pg_class where oid = 'public.petri_observations'::regclass) as parent,
             array(select distinct k.relreplident::text from pg_partition_tree('public.petri_observations') t join pg_class k on k.oid = t.relid where t.isleaf) as leaves`;
    expect(ident).toEqual({ parent: "f", leaves: ["f"] });
    let id = "";
    const { all: changes } = await realtimeDuring([], async (poll) => { id = await lifeOfARow(userA.company_id, poll); });
    expect(changes.filter((c) => c.table === "petri_observations")).toEqual([]);
    const feed = changes.filter((c) => c.table === "petri_observations_changes");
    expect(feed.map((c) => [c.action, c.columns.op, c.columns.observation_id])).toEqual([["I", "INSERT", id], ["I", "UPDATE", id], ["I", "UPDATE", id], ["I", "DELETE", id]]);
    const move = JSON.parse(String(feed[2]!.columns.record)) as { site_id: string };
    const before = JSON.parse(String(feed[2]!.columns.old_record)) as { site_id: string; notes: string };
    expect(move.site_id).not.toBe(before.site_id);
    expect(before.notes).toBe("seen");
    expect(feed[3]!.columns.record).toBeNull();
  });

  it("the feed delivers each company's signed-in user exactly their company's changes, nothing of the other company's, and anon nothing", async () => {
    const feed = "public.petri_observations_changes";
    let idA = "";
    let idB = "";
    const { received } = await realtimeDuring(
      [signedIn(userA, feed, "INSERT"), signedIn(userB, feed, "INSERT"), anon(feed, "INSERT"), anon(feed, "*")],
      async (poll) => {
        idA = await lifeOfARow(userA.company_id, poll);
        idB = await lifeOfARow(userB.company_id, poll);
      });
    const rows = (cs: RealtimeChange[]) => cs.map((c) => [c.columns.op, c.columns.observation_id, c.columns.company_id]);
    const life = (id: string, company: string) => ["INSERT", "UPDATE", "UPDATE", "DELETE"].map((op) => [op, id, company]);
    expect(rows(received[0]!)).toEqual(life(idA, userA.company_id));
    expect(rows(received[1]!)).toEqual(life(idB, userB.company_id));
    expect(rows(received[2]!)).toEqual([]);
    expect(rows(received[3]!)).toEqual([]);
  });

  it("maintenance keeps an hour of the feed", async () => {
    await db.sql`update public.petri_observations_changes set changed_at = now() - interval '2 hours'
                 where change_id in (select change_id from public.petri_observations_changes order by change_id limit 2)`;
    const [before] = await db.sql<{ n: number; old: number }[]>`
      select count(*)::int as n, count(*) filter (where changed_at < now() - interval '1 hour')::int as old from public.petri_observations_changes`;
    expect(before!.old).toBe(2);
    expect(before!.n).toBeGreaterThan(2);
    await runMaintenance(db.sql, "petri");
    const [after] = await db.sql<{ n: number; old: number }[]>`
      select count(*)::int as n, count(*) filter (where changed_at < now() - interval '1 hour')::int as old from public.petri_observations_changes`;
    expect(after).toEqual({ n: before!.n - 2, old: 0 });
  });

  it("after a rollback the publication is as it was and the legacy table's subscribers are served again; finish_rollback drops the feed", async () => {
    await rollback(db.sql, "petri");
    expect(await publication()).toEqual(publicationBefore);
    const [gone] = await db.sql<{ feed: string | null; fn: string | null }[]>`
      select to_regclass('public.petri_observations_changes')::text as feed, to_regproc('partition_mgmt.petri_realtime_feed')::text as fn`;
    expect(gone).toEqual({ feed: null, fn: null });
    let id = "";
    const { all, received } = await realtimeDuring([signedIn(userA, "public.petri_observations", "*")],
      async (poll) => { id = await lifeOfARow(userA.company_id, poll); });
    expect(received[0]!.map((c) => [c.action, idOf(c)])).toEqual([["I", id], ["U", id], ["U", id], ["D", id]]);
    expect(all.filter((c) => c.table === "petri_observations_changes")).toEqual([]);
  });
});
