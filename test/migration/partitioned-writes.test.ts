// Writes that race with a row moving to another partition, after the swap.
// On a partitioned table, an UPDATE or DELETE that waited for a concurrent UPDATE which moved the
// same row to another partition (a program, site or period change) fails with SQLSTATE 40001
// ("tuple to be locked was already moved to another partition due to concurrent update"), where
// the unpartitioned table would have gone on with the row's new version. Covers: the plain
// statement by id fails so (what docs/your-app.md tells app authors to retry); the routed RPCs
// (update_observation_by_id, delete_observation_by_id) route again and succeed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { waitFor } from "../helpers/time.ts";

describe("writes racing with a move to another partition", () => {
  let db: FreshDb;
  let mover: Sql;
  let writer: Sql;
  beforeAll(async () => {
    db = await freshDatabase("partitioned_writes", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    await migrateOnline(db.sql, "petri", { batchSize: 1000, swap: true });
    mover = connect(db.url);
    writer = connect(db.url);
  });
  afterAll(async () => {
    await mover?.end({ timeout: 5 });
    await writer?.end({ timeout: 5 });
    await db?.drop();
  });

  /** A row whose site has partitions of its own, and another site of its program that has too. */
  async function rowAndOtherSite(): Promise<{ id: string; site: string; other: string }> {
    const [r] = await db.sql<{ id: string; site: string; other: string }[]>`
      select o.observation_id::text as id, o.site_id::text as site, s.site_id::text as other
      from public.petri_observations o
      join partition_mgmt.partition_registry g on g.table_key = 'petri' and g.level = 'site' and not g.is_default and g.site_id = o.site_id
      join partition_mgmt.partition_registry s on s.table_key = 'petri' and s.level = 'site' and not s.is_default
                                              and s.program_id = o.program_id and s.site_id <> o.site_id
      where o.notes is null
      order by random() limit 1`;
    if (!r) throw new Error("the tree has no program with two sites of their own");
    return r;
  }

  /** Runs `racer` while another transaction holds an update that moves the row to `other`; returns its outcome. */
  async function raceWithMove<T>(id: string, other: string, racer: () => Promise<T>): Promise<{ value?: T; error?: { code?: string; message: string } }> {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const holdsRow = new Promise<void>((r) => (holding = r));
    const moved = mover.begin(async (tx) => {
      await tx`update public.petri_observations set site_id = ${other} where observation_id = ${id}`;
      holding();
      await released;
    });
    // the mover's update has run (it holds the row) before the racer starts: on a loaded machine a
    // fixed pause was not always enough, and the racer then won the row before the move
    await Promise.race([holdsRow, moved]);
    const pending = racer().then((value) => ({ value }), (e: { code?: string; message: string }) => ({ error: { code: e.code, message: e.message } }));
    // the racer must be waiting for the mover's row lock before the mover commits
    await waitFor("the racer waits for the mover's row lock", async () => {
      const [w] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
      return (w?.n ?? 0) > 0;
    }, 30_000, 50);
    release();
    await moved;
    return pending;
  }

  it("a plain update by id fails with 40001 when the row moved meanwhile", async () => {
    const r = await rowAndOtherSite();
    const out = await raceWithMove(r.id, r.other, () => writer`update public.petri_observations set notes = 'plain' where observation_id = ${r.id}`);
    expect(out.error?.code).toBe("40001");
    expect(out.error?.message).toMatch(/already moved to another partition/);
  });

  it("update_observation_by_id routes again and updates the moved row", async () => {
    const r = await rowAndOtherSite();
    const out = await raceWithMove(r.id, r.other, () => writer<{ row: { site_id: string; notes: string } }[]>`
      select public.update_observation_by_id('petri_observations', ${r.id}::uuid, '{"notes": "routed"}'::jsonb) as row`);
    expect(out.error).toBeUndefined();
    expect(out.value?.[0]?.row).toMatchObject({ site_id: r.other, notes: "routed" });
    const [now] = await db.sql<{ site_id: string; notes: string }[]>`
      select site_id::text, notes from public.petri_observations where observation_id = ${r.id}`;
    expect(now).toEqual({ site_id: r.other, notes: "routed" });
  });

  it("delete_observation_by_id routes again and deletes the moved row", async () => {
    const r = await rowAndOtherSite();
    const out = await raceWithMove(r.id, r.other, () => writer<{ deleted: boolean }[]>`
      select public.delete_observation_by_id('petri_observations', ${r.id}::uuid) as deleted`);
    expect(out.error).toBeUndefined();
    expect(out.value?.[0]?.deleted).toBe(true);
    const [left] = await db.sql<{ rows: number; keys: number }[]>`
      select (select count(*)::int from public.petri_observations where observation_id = ${r.id}) as rows,
             (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri' and observation_id = ${r.id}) as keys`;
    expect(left).toEqual({ rows: 0, keys: 0 });
  });
});
