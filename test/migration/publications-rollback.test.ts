// The migration leaves the project as it found it, Realtime included (migrations 20250102000400
// publication_plan / swap_publications, 0430 swap, 0440 rollback and finish_rollback, 0450 the
// pre-check's publications row), on a customer-shaped project: its own monthly-partitioned
// public.audit_events in supabase_realtime (publish_via_partition_root false, as hosted creates
// the publication), petri_observations in it too (REPLICA IDENTITY FULL), an insert-only
// publication `warehouse` (publish_via_partition_root true, a column list and a row filter) with
// petri_observations, a trigger of the customer's and a security_invoker view on the table.
// Covers:
//  - the pre-check says, per publication, what the swap will do;
//  - the swap changes the table's membership only, never a publication's options:
//    supabase_realtime loses the legacy table and gains the change feed, warehouse gets the
//    partitioned table with the same columns and row filter; the catalog differs from before
//    exactly where private.deploy_report says (one row per publication and table);
//  - audit_events' changes reach Realtime (wal2json, the way Realtime reads supabase_realtime)
//    under exactly the same table names before, during the backfill, after the swap, after the
//    rollback and after a second migration's finalize;
//  - after rollback_migration every publication has the tables and options it had (the deploy
//    report says 'restored'), and the catalog of public, private and analytics
//    (test/helpers/catalog.ts: publications and their tables, policies, grants, triggers, RLS,
//    replica identity, reloptions, views, functions) differs from before only in what the report
//    lists (the feed, dropped by finish_rollback) and the copy's REPLICA IDENTITY; after
//    finish_rollback it equals the one before the migration (a customer policy, grants and RLS
//    the swap gave the copy included);
//  - after finalize supabase_realtime holds audit_events and the feed, with its options unchanged;
//  - a publication postgres may not alter, and a table of the project's with the feed's name, are
//    pre-check blockers that stop prepare, and make the swap refuse, changing nothing, when they
//    appear after the pre-check.
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backfill, freshSession, migrateOnline, startMigration } from "../../scripts/lib/migration-driver.ts";
import { catalogSnapshot, diffCatalog, unreported, type CatalogFact } from "../helpers/catalog.ts";
import { asSuperuser, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { createRealtimeSlot, dropRealtimeSlot, realtimeChanges } from "../helpers/realtime.ts";

const SLOT = "realtime_audit_probe";
const SCOPE = { schemas: ["public", "private", "analytics"] };

describe("publications and the catalog across migrate -> swap -> rollback", () => {
  let db: FreshDb;
  let before: CatalogFact[];
  let auditBefore: string[];
  let company: string;

  beforeAll(async () => {
    db = await freshDatabase("pub_rollback", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    const [first] = await db.sql<{ company: string }[]>`select company_id as company from public.companies order by name limit 1`;
    company = first!.company;
    // the customer's own partitioned table, one partition a month, in Realtime
    await db.sql.unsafe(`
      create table public.audit_events (
        event_id    bigserial,
        occurred_at timestamptz not null default now(),
        company_id  uuid,
        kind        text not null,
        detail      jsonb,
        primary key (event_id, occurred_at)
      ) partition by range (occurred_at);
      do $$
      declare m date;
      begin
        for m in select generate_series(date_trunc('month', now()) - interval '1 month', date_trunc('month', now()) + interval '1 month', interval '1 month')::date loop
          execute format('create table public.%I partition of public.audit_events for values from (%L) to (%L)',
                         'audit_events_' || to_char(m, 'YYYY_MM'), m, (m + interval '1 month')::date);
        end loop;
      end $$;
      alter table public.audit_events enable row level security;
      create policy audit_events_own_company on public.audit_events for select to authenticated
        using (company_id in (select u.company_id from public.users u where u.id = (select auth.uid())));
      alter table public.petri_observations replica identity full;
      alter publication supabase_realtime add table public.audit_events, public.petri_observations;
      create publication warehouse for table public.petri_observations (observation_id, program_id, site_id, created_at, growth_index)
        where (growth_index is not null) with (publish = 'insert', publish_via_partition_root = true);
      create policy petri_hide_archived on public.petri_observations as restrictive for select to authenticated
        using (coalesce(notes, '') <> 'archived');
      create function public.petri_touch() returns trigger language plpgsql as 'begin new.updated_at := now(); return new; end';
      create trigger petri_touch before update on public.petri_observations for each row execute function public.petri_touch();
      create view public.petri_recent with (security_invoker = true) as
        select observation_id, program_id, growth_index, created_at from public.petri_observations;
      grant select on public.petri_recent to authenticated;`);
    await createRealtimeSlot(db.sql, SLOT);
    before = await catalogSnapshot(db.sql, SCOPE);
    auditBefore = await auditAsRealtimeSeesIt("before");
  });
  afterAll(async () => {
    if (db) {
      await dropRealtimeSlot(db.sql, SLOT);
      await db.drop();
    }
  });

  /** Writes to audit_events (two partitions: insert, update, delete) and returns how Realtime reports them. */
  async function auditAsRealtimeSeesIt(kind: string): Promise<string[]> {
    await realtimeChanges(db.sql, SLOT);
    await db.sql`insert into public.audit_events (occurred_at, company_id, kind)
                 values (date_trunc('month', now()) - interval '15 days', ${company}, ${kind}),
                        (date_trunc('month', now()) + interval '1 day', ${company}, ${kind})`;
    await db.sql`update public.audit_events set detail = '{"seen": true}' where kind = ${kind} and occurred_at < date_trunc('month', now())`;
    await db.sql`delete from public.audit_events where kind = ${kind} and occurred_at >= date_trunc('month', now())`;
    return (await realtimeChanges(db.sql, SLOT)).filter((c) => c.table.startsWith("audit_events"))
      .filter((c) => c.action === "D" || c.columns.kind === kind)   // a delete carries the primary key only (default REPLICA IDENTITY)
      .map((c) => `${c.action} ${c.schema}.${c.table}`);
  }
  const expectAuditAsBefore = async (kind: string) => expect(await auditAsRealtimeSeesIt(kind)).toEqual(auditBefore);

  async function report(): Promise<Map<string, { action: string; detail: string }>> {
    const rows = await db.sql<{ object: string; action: string; detail: string }[]>`select object, action, detail from private.deploy_report`;
    return new Map(rows.map((r) => [r.object, { action: r.action, detail: r.detail }]));
  }
  /** As the bootstrap superuser, in this test's database (a publication of another owner). */
  const asAdmin = (run: (admin: Sql) => Promise<unknown>) => asSuperuser(run, db.name);
  const publicationChanges = (changes: ReturnType<typeof diffCatalog>) => changes.filter((c) => c.object.startsWith("publication "));

  it("Realtime reports audit_events' changes under the partitions' names before the migration", async () => {
    const [m] = await db.sql<{ prev: string; cur: string }[]>`
      select 'audit_events_' || to_char(date_trunc('month', now()) - interval '15 days', 'YYYY_MM') as prev,
             'audit_events_' || to_char(date_trunc('month', now()), 'YYYY_MM') as cur`;
    expect(auditBefore).toEqual([`I public.${m!.prev}`, `I public.${m!.cur}`, `U public.${m!.prev}`, `D public.${m!.cur}`]);
  });

  it("the pre-check says what the swap does to each publication", async () => {
    const [row] = await db.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('petri') where check_name = 'publications (Realtime)'`;
    expect(row?.status).toBe("warning");
    expect(row?.detail).toContain("published by supabase_realtime, warehouse.");
    expect(row?.detail).toContain("publication supabase_realtime: table public.petri_observations: removed");
    expect(row?.detail).toContain("publication supabase_realtime: table public.petri_observations_changes: added");
    expect(row?.detail).toContain("publication warehouse: table public.petri_observations: replaced");
    expect(row?.detail).toContain("No publication's options change");
  });

  it("during the backfill and after the swap audit_events reaches Realtime as before; the swap changes the table's membership only, as the deploy report says", async () => {
    await startMigration(db.sql, "petri");
    await backfill(db.sql, "petri", { batchSize: 200, maxBatches: 2 });
    expect(await phaseOf(db.sql, "petri")).toBe("backfilling");
    await expectAuditAsBefore("backfilling");

    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
    expect(await phaseOf(db.sql, "petri")).toBe("swapped");
    await expectAuditAsBefore("swapped");

    const r = await report();
    expect(r.get("publication supabase_realtime: table public.petri_observations")?.action).toBe("removed");
    expect(r.get("publication supabase_realtime: table public.petri_observations_changes")?.action).toBe("added");
    expect(r.get("publication warehouse: table public.petri_observations")?.action).toBe("replaced");
    expect(r.get("publication warehouse: table public.petri_observations")?.detail).toContain("publish_via_partition_root = true");

    const swapped = diffCatalog(before, await catalogSnapshot(db.sql, SCOPE));
    // every publication fact that changed is listed, and nothing else about publications changed
    // (no option; warehouse names a table of the same name with the same columns and filter)
    expect(unreported(publicationChanges(swapped), r.keys())).toEqual([]);
    expect(publicationChanges(swapped).map((c) => `${c.object} ${c.fact}: ${c.before ?? "-"} -> ${c.after ?? "-"}`)).toEqual([
      "publication supabase_realtime: table public.petri_observations member:  -> -",
      "publication supabase_realtime: table public.petri_observations published: (" + publishedColumns(before) + ") -> -",
      "publication supabase_realtime: table public.petri_observations_changes member: - -> ",
      "publication supabase_realtime: table public.petri_observations_changes published: - -> (change_id, changed_at, op, observation_id, company_id, record, old_record)",
    ]);
    const [warehouse] = await db.sql<{ kind: string }[]>`
      select c.relkind::text as kind from pg_publication_rel r join pg_publication p on p.oid = r.prpubid join pg_class c on c.oid = r.prrelid
      where p.pubname = 'warehouse'`;
    expect(warehouse?.kind).toBe("p");   // the partitioned table, published under its own name
  });

  it("after rollback_migration every publication is as before; after finish_rollback the whole catalog; audit_events reaches Realtime as before", async () => {
    const fresh = freshSession(db.sql);
    try {
      await fresh`select partition_mgmt.rollback_migration('petri')`;
    } finally {
      await fresh.end();
    }
    await expectAuditAsBefore("rolled back");
    const rolledBack = diffCatalog(before, await catalogSnapshot(db.sql, SCOPE));
    let r = await report();
    expect(publicationChanges(rolledBack)).toEqual([]);
    for (const object of ["publication supabase_realtime: table public.petri_observations", "publication supabase_realtime: table public.petri_observations_changes",
      "publication warehouse: table public.petri_observations"]) {
      expect(r.get(object)?.action, object).toBe("restored");
    }
    // the feed (out of the publication) is listed until finish_rollback drops it; what else differs
    // is on the copy, where finish_rollback clears it: the triggers (the reverse sync, the customer's
    // carried at the swap) and the REPLICA IDENTITY the sync gave it (FULL, the legacy table's)
    expect(r.get("table public.petri_observations_changes")?.action).toBe("created");
    expect(unreported(rolledBack, r.keys()).map((c) => `${c.object} ${c.fact}: ${c.before ?? "-"} -> ${c.after === null ? "-" : c.after.replace(/ ON .*$/, "")}`)).toEqual([
      "table public.petri_observations_partitioned replica identity: d -> f",
      "trigger partition_mgmt_sync_to_legacy on public.petri_observations_partitioned definition: - -> CREATE TRIGGER partition_mgmt_sync_to_legacy AFTER INSERT OR DELETE OR UPDATE",
      "trigger petri_touch on public.petri_observations_partitioned definition: - -> CREATE TRIGGER petri_touch BEFORE UPDATE",
      // (the demo app's own updated_at trigger, carried the same way)
      "trigger touch_updated_at on public.petri_observations_partitioned definition: - -> CREATE TRIGGER touch_updated_at BEFORE UPDATE",
    ]);

    await db.sql`select partition_mgmt.finish_rollback('petri')`;
    const finished = diffCatalog(before, await catalogSnapshot(db.sql, SCOPE));
    r = await report();
    expect(finished).toEqual([]);
    expect(r.get("table public.petri_observations_changes")?.action).toBe("removed");
    expect(r.get("policy company_isolation_changes on public.petri_observations_changes")?.action).toBe("removed");
    const [left] = await db.sql<{ feed: string | null; state: number }[]>`
      select to_regclass('public.petri_observations_changes')::text as feed, (select count(*)::int from partition_mgmt.migration_state) as state`;
    expect(left).toEqual({ feed: null, state: 0 });
    await expectAuditAsBefore("finished");
  });

  it("after a second migration's finalize: audit_events as before, supabase_realtime's options unchanged, the feed in it", async () => {
    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
    await db.sql`select partition_mgmt.finalize_migration('petri')`;
    await expectAuditAsBefore("finalized");
    const changes = publicationChanges(diffCatalog(before, await catalogSnapshot(db.sql, SCOPE)));
    expect(changes.filter((c) => c.fact === "options")).toEqual([]);
    expect(changes.map((c) => `${c.object} ${c.fact}`)).toEqual([
      "publication supabase_realtime: table public.petri_observations member",
      "publication supabase_realtime: table public.petri_observations published",
      "publication supabase_realtime: table public.petri_observations_changes member",
      "publication supabase_realtime: table public.petri_observations_changes published",
    ]);
  });

  it("a publication postgres may not alter, or a table of the project's with the feed's name, is a blocker that stops prepare", async () => {
    // gasifier_observations in Realtime, in a publication of another owner, and a name clash
    await db.sql`alter publication supabase_realtime add table public.gasifier_observations`;
    await db.sql`create table public.gasifier_observations_changes (id bigint primary key, note text)`;
    await asAdmin(async (admin) => {
      await admin`create publication admin_export for table public.gasifier_observations`;
      await admin`alter publication admin_export owner to supabase_admin`;
    });
    const [row] = await db.sql<{ status: string; detail: string }[]>`
      select status, detail from partition_mgmt.pre_migration_check('gasifier') where check_name = 'publications (Realtime)'`;
    expect(row?.status).toBe("blocker");
    expect(row?.detail).toContain("Blocker: postgres may not alter admin_export (owner supabase_admin)");
    expect(row?.detail).toContain("Blocker: public.gasifier_observations_changes already exists");
    await expect(db.sql`select partition_mgmt.prepare_migration('gasifier')`).rejects.toThrow(/publications \(Realtime\): .*Blocker: postgres may not alter admin_export/s);
    expect(await phaseOf(db.sql, "gasifier")).toBe("idle");
  });

  it("the swap itself refuses, changing nothing, when the feed's name is taken or a publication cannot be altered after the pre-check", async () => {
    await asAdmin((admin) => admin`drop publication admin_export`);
    await db.sql`drop table public.gasifier_observations_changes`;
    await migrateOnline(db.sql, "gasifier", { batchSize: 1000, swap: false });
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
    const realtimeTables = async () => (await db.sql<{ t: string }[]>`
      select r.prrelid::regclass::text as t from pg_publication_rel r join pg_publication p on p.oid = r.prpubid
      where p.pubname = 'supabase_realtime' order by 1`).map((x) => x.t);
    const tablesBefore = await realtimeTables();
    expect(tablesBefore).toContain("gasifier_observations");

    await db.sql`create table public.gasifier_observations_changes (id bigint primary key, note text)`;
    await expect(db.sql`select * from partition_mgmt.swap_tables('gasifier')`).rejects.toThrow(/public.gasifier_observations_changes already exists and is not the change feed/);
    await db.sql`drop table public.gasifier_observations_changes`;
    await asAdmin(async (admin) => {
      await admin`create publication admin_export for table public.gasifier_observations`;
      await admin`alter publication admin_export owner to supabase_admin`;
    });
    await expect(db.sql`select * from partition_mgmt.swap_tables('gasifier')`).rejects.toThrow(/postgres may not alter publication\(s\) admin_export \(owner supabase_admin\)/);
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
    expect(await realtimeTables()).toEqual(tablesBefore);
    expect((await db.sql`select 1 from pg_class where relname = 'gasifier_observations_changes'`).length).toBe(0);
  });
});

/** The columns pg_publication_tables listed for public.petri_observations in supabase_realtime. */
function publishedColumns(snapshot: CatalogFact[]): string {
  const f = snapshot.find((x) => x.object === "publication supabase_realtime: table public.petri_observations" && x.fact === "published");
  return (f?.value ?? "").replace(/^\(|\)$/g, "");
}
