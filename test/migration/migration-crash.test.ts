// Interrupted backfills (migrations 20250102000400 to 0470), on a cluster of its own (the crash would hit
// every other suite on the shared test cluster).
// Covers:
//  - the backfill backend is killed (pg_terminate_backend) in the middle of a batch's transaction:
//    the batch rolls back, the recorded high-water mark is the last committed one, and the
//    migration resumes from it;
//  - the server is stopped with `pg_ctl stop -m immediate` while the backfill and an app load run;
//    after the restart the state survives, the backfill resumes from the committed high-water
//    mark, validation passes, the swap succeeds and the tables are equal by both-way EXCEPT.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "postgres";
import { connect } from "../helpers/db.ts";
import { clusterFor, destroyCluster, ensureCluster, freeLocalPort, startStoppedCluster, stopCluster, type Cluster } from "../../scripts/lib/cluster.ts";
import { testPort } from "../../scripts/lib/stack.ts";
import { deployOntoDemoApp } from "../../scripts/lib/deploy.ts";
import { startAppLoad } from "../../scripts/lib/app-load.ts";
import { backfill, migrateOnline, monitor, startMigration } from "../../scripts/lib/migration-driver.ts";
import { compareTables, loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { sleep } from "../helpers/time.ts";

// its own test ports, outside the ephemeral range (scripts/lib/stack.ts): the cluster starts (and
// restarts) while the other suites hold many client sockets, and one of their local ports must not take it
const PORT_FROM = testPort("migrationCrash");

describe("interrupted backfill", () => {
  let cluster: Cluster;
  let sql: Sql;
  beforeAll(async () => {
    // the binaries of the suite's own cluster (npm test's PostgreSQL 17 leg passes TEST_PG_BIN)
    const port = await freeLocalPort(PORT_FROM, 10);
    cluster = await ensureCluster({ name: `crash-test-${port}`, port, throwaway: true, fresh: true, pgBin: process.env.TEST_PG_BIN || undefined });
    await deployOntoDemoApp(cluster.url());
    sql = connect(cluster.url(), 2);
    // a tree with programs, sites and periods (the demo's few hundred rows per program would all
    // share one leaf at the default target)
    await sql`update partition_mgmt.managed_tables set target_rows_per_leaf = 100, min_keyless_statements = 10`;
    await loadSmallDemo(sql);
  }, 240_000);
  afterAll(async () => {
    await sql?.end({ timeout: 5 }).catch(() => {});
    if (cluster) await destroyCluster(clusterFor({ name: cluster.name, port: cluster.port, pgBin: cluster.pgBin }));
  });

  it("resumes after the backfill backend is terminated mid-batch", async () => {
    await startMigration(sql, "petri");
    await backfill(sql, "petri", { batchSize: 50, maxBatches: 4 });
    const before = await monitor(sql, "petri");
    expect(Number(before.rows_scanned)).toBe(200);
    // the victim: psql running one batch and then sitting in the open transaction
    const victim = spawn(join(cluster.pgBin, "psql"), [cluster.url(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
      "begin; select * from partition_mgmt.migrate_to_partitioned(50, null, 'petri'); select pg_sleep(30); commit;"],
      { env: { ...process.env, PGAPPNAME: "backfill-victim" }, stdio: "ignore" });
    const exited = new Promise<number | null>((res) => victim.on("exit", (code) => res(code)));
    let pid: number | undefined;
    for (let i = 0; i < 100 && !pid; i++) {
      await sleep(100);
      [{ pid } = { pid: undefined }] = await sql<{ pid: number }[]>`
        select pid from pg_stat_activity where application_name = 'backfill-victim' and query like '%pg_sleep%' and state = 'active'`;
    }
    expect(pid).toBeDefined();
    const [term] = await sql<{ t: boolean }[]>`select pg_terminate_backend(${pid!}) as t`;
    expect(term?.t).toBe(true);
    expect(await exited).not.toBe(0);
    const after = await monitor(sql, "petri");
    expect(after.rows_scanned).toBe(before.rows_scanned);
    const [c] = await sql<{ copied: number }[]>`select count(*)::int as copied from public.petri_observations_partitioned`;
    expect(c?.copied).toBe(200);
    await backfill(sql, "petri", { batchSize: 50 });
    expect(await phaseOf(sql, "petri")).toBe("backfilled");
  });

  it("resumes after pg_ctl stop -m immediate in the middle of the migration, under load", async () => {
    await sql`select * from partition_mgmt.safe_migrate_table('gasifier', false)`;
    const load = startAppLoad({ url: cluster.url(), table: "gasifier_observations", sessions: 4 });
    await backfill(sql, "gasifier", { batchSize: 10, maxBatches: 30 });
    const mark = await monitor(sql, "gasifier");
    const driver = backfill(sql, "gasifier", { batchSize: 10, throttleMs: 5 }).catch((e: Error) => e);
    await sleep(400);
    await stopCluster(clusterFor({ name: cluster.name, port: cluster.port, pgBin: cluster.pgBin }), "immediate");
    await driver;
    await load.stop();
    await sql.end({ timeout: 1 }).catch(() => {});
    await startStoppedCluster(clusterFor({ name: cluster.name, port: cluster.port, pgBin: cluster.pgBin }));
    sql = connect(cluster.url(), 2);

    const resumed = await monitor(sql, "gasifier");
    expect(resumed.phase).toBe("backfilling");
    expect(Number(resumed.rows_scanned)).toBeGreaterThanOrEqual(Number(mark.rows_scanned));
    const load2 = startAppLoad({ url: cluster.url(), table: "gasifier_observations", sessions: 4, seed: 3 });
    const res = await migrateOnline(sql, "gasifier", { batchSize: 10, swap: true, lockTimeout: "500ms", attempts: 20 });
    const stats = await load2.stop();
    expect(stats.errors).toEqual([]);
    expect(res.phase).toBe("swapped");
    expect(await compareTables(sql, "gasifier")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
    // the petri migration interrupted by the same crash finishes too
    const p = await migrateOnline(sql, "petri", { batchSize: 200, swap: true });
    expect(p.phase).toBe("swapped");
    expect(await compareTables(sql, "petri")).toMatchObject({ onlyInLegacy: 0, onlyInPartitioned: 0 });
  });
});
