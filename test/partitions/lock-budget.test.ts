// The lock budget against the server's own lock manager, on whatever PostgreSQL runs the suite
// (npm test runs this file on 15 and on 17). Covers: after an online migration of a tree with
// programs, sites, periods and DEFAULT leaves, one statement that names the table but not its
// partition keys holds exactly the relation locks that lock_budget() reports and that the
// pre-check's plan (plan_lock_budget, counted before the tree existed) predicted. PostgreSQL 16+
// also locks the partitioned tables' own indexes: the count must follow the server, not a formula
// fixed for 15.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";

describe("lock budget, measured", () => {
  let db: FreshDb;
  beforeAll(async () => {
    // 540 petri rows per program, 180 per site: with a target of 100 every program and site gets
    // partitions of its own, every site its periods
    db = await freshDatabase("lock_budget", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("a statement without the partition keys holds exactly the locks lock_budget() and the pre-check's plan count", async () => {
    const [plan] = await db.sql<{ keyless_locks: number; leaves: number; relations: number }[]>`
      select keyless_locks::int, leaves, relations from partition_mgmt.plan_lock_budget('petri', 'public.petri_observations'::regclass)`;
    const res = await migrateOnline(db.sql, "petri", { batchSize: 5000, swap: true });
    expect(res.phase).toBe("swapped");

    const [tree] = await db.sql<{ relations: number; leaves: number; partitioned_indexes: number; version: number }[]>`
      select count(*)::int as relations, count(*) filter (where t.isleaf)::int as leaves,
             (select count(*)::int from pg_index i join pg_partition_tree('public.petri_observations') p on p.relid = i.indrelid where not p.isleaf) as partitioned_indexes,
             current_setting('server_version_num')::int as version
      from pg_partition_tree('public.petri_observations') t`;
    expect(tree?.leaves).toBeGreaterThan(10);
    expect(tree?.partitioned_indexes).toBeGreaterThan(0);
    const [budget] = await db.sql<{ keyless_locks: number }[]>`
      select keyless_locks::int from partition_mgmt.lock_budget() where table_key = 'petri'`;
    const [id] = await db.sql<{ id: string }[]>`select observation_id as id from public.petri_observations limit 1`;
    const held = await db.sql.begin(async (tx) => {
      await tx`select * from public.petri_observations where observation_id = ${id!.id}`;
      const [n] = await tx<{ n: number }[]>`
        select count(*)::int as n from pg_locks where pid = pg_backend_pid() and locktype = 'relation' and relation <> 'pg_locks'::regclass`;
      return n?.n ?? 0;
    });
    console.log(`[lock budget] PostgreSQL ${tree?.version}: ${tree?.relations} relations (${tree?.leaves} leaves), ` +
      `${tree?.partitioned_indexes} partitioned indexes; a keyless statement held ${held} locks, lock_budget() says ${budget?.keyless_locks}, the plan said ${plan?.keyless_locks}`);
    expect(held).toBe(budget?.keyless_locks);
    expect(plan).toMatchObject({ relations: tree?.relations, leaves: tree?.leaves });
    expect(plan?.keyless_locks).toBe(held);
  });
});
