// health() and the monitoring views for read replicas, on the primary:
//  - replica_lag() lists the test replica streaming (and no logical walsender: Realtime's slots are
//    not replicas); with replay paused and 16 MB of WAL written, health() warns "replica lagging"
//    with the bytes behind; once resumed and caught up, it is back to an info line;
//  - replica_routing counts what the read function records (record_replica_routing) since the last
//    maintenance run that finished ok: a finished run starts the count again, a run that failed
//    does not, and a standby whose counters restarted from zero counts from zero.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { pauseReplicaReplay, resumeReplicaReplay, testReplica, waitForReplica } from "../helpers/replica.ts";
import { createRealtimeSlot, dropRealtimeSlot } from "../helpers/realtime.ts";

let db: FreshDb;
beforeAll(async () => {
  db = await freshDatabase("replica_health");
});
afterAll(async () => {
  await resumeReplicaReplay().catch(() => {});
  await db?.drop();
});

type Finding = { severity: string; finding: string; detail: string };
const replicaFindings = (sql: FreshDb["sql"]) =>
  sql<Finding[]>`select severity, finding, detail from partition_mgmt.health() where finding like 'replica%' order by finding`;

describe("replica lag in health()", () => {
  it("shows the replica streaming, then lagging while its replay is paused, then streaming again", async () => {
    const slot = testReplica().slot;
    const logical = `replica_health_${process.pid}`;
    await createRealtimeSlot(db.sql, logical);
    try {
      await waitForReplica();
      const lag = await db.sql<{ replica: string; state: string }[]>`select replica, state from partition_mgmt.replica_lag()`;
      expect(lag).toEqual([{ replica: slot, state: "streaming" }]);
      const idle = await replicaFindings(db.sql);
      expect(idle.map((f) => [f.severity, f.finding])).toEqual([["info", "replica"]]);
      expect(idle[0]?.detail).toMatch(new RegExp(`^${slot}: streaming, write/flush/replay lag .* behind$`));

      await pauseReplicaReplay();
      await db.sql`create table public.replica_wal (id int, pad text)`;
      await db.sql`insert into public.replica_wal select g, repeat('x', 200) from generate_series(1, 80000) g`;
      const admin = connect(testEnv.adminUrl);
      try {
        await admin`select pg_switch_wal()`;
      } finally {
        await admin.end();
      }
      await expect.poll(async () => (await replicaFindings(db.sql)).map((f) => [f.severity, f.finding]), { timeout: 10_000 })
        .toEqual([["warning", "replica lagging"]]);
      const [lagging] = await replicaFindings(db.sql);
      expect(lagging?.detail).toMatch(/streaming, .* (\d+ MB) behind$/);
    } finally {
      await resumeReplicaReplay();
      await dropRealtimeSlot(db.sql, logical);
    }
    await waitForReplica();
    await expect.poll(async () => (await replicaFindings(db.sql)).map((f) => f.finding), { timeout: 10_000 }).toEqual(["replica"]);
  });
});

describe("what the read function records, since the last maintenance run", () => {
  const record = (conflicts: Record<string, number> | null, reads: number, fallbacks: number, reason: string | null) =>
    db.sql`select partition_mgmt.record_replica_routing('replica.example:5432/postgres', '0/3000000'::pg_lsn, 12,
             ${conflicts === null ? null : JSON.stringify(conflicts)}::text::jsonb, ${reads}, ${fallbacks}, ${reason})`;
  const routing = async () => {
    const [r] = await db.sql<{ conflicts_since_last_run: number; fallbacks_since_last_run: number; replica_reads: number; last_fallback_reason: string | null }[]>`
      select conflicts_since_last_run::int, fallbacks_since_last_run::int, replica_reads::int, last_fallback_reason from partition_mgmt.replica_routing`;
    return r;
  };
  const finishRun = async (status: "ok" | "error") => {
    const [run] = await db.sql<{ id: string }[]>`insert into partition_mgmt.maintenance_log (run_id, action) values (gen_random_uuid(), 'run') returning id::text`;
    await db.sql`update partition_mgmt.maintenance_log set status = ${status}, finished_at = clock_timestamp() where id = ${run!.id}::bigint`;
  };

  it("counts conflicts and fallbacks, starts again after a finished run, and says so in health()", async () => {
    await record({ confl_lock: 2, confl_snapshot: 1, confl_tablespace: 0 }, 40, 3, "replica_lagging");
    await record(null, 10, 1, "replica_unreachable"); // unreachable: no counters, the last ones stay
    expect(await routing()).toEqual({ conflicts_since_last_run: 3, fallbacks_since_last_run: 4, replica_reads: 50, last_fallback_reason: "replica_unreachable" });
    const findings = (await replicaFindings(db.sql)).filter((f) => f.finding !== "replica");
    expect(findings.map((f) => f.finding)).toEqual(["replica reads cancelled", "replica reads fell back"]);
    expect(findings[0]?.detail).toMatch(/^replica\.example:5432\/postgres: 3 read\(s\) cancelled by recovery conflicts since the read function first reported \(.*"confl_lock": 2/);
    expect(findings[1]?.detail).toMatch(/: 4 read\(s\) served by the primary instead since .*: replica_unreachable$/);

    await finishRun("error");
    expect(await routing()).toMatchObject({ conflicts_since_last_run: 3, fallbacks_since_last_run: 4 });
    await finishRun("ok");
    expect(await routing()).toMatchObject({ conflicts_since_last_run: 0, fallbacks_since_last_run: 0, replica_reads: 50 });
    expect((await replicaFindings(db.sql)).filter((f) => f.finding !== "replica")).toEqual([]);

    await record({ confl_lock: 4, confl_snapshot: 1, confl_tablespace: 0 }, 5, 2, "replica_lagging");
    expect(await routing()).toMatchObject({ conflicts_since_last_run: 2, fallbacks_since_last_run: 2 });
    // the standby restarted: its counters begin at zero again
    await record({ confl_lock: 1, confl_snapshot: 0, confl_tablespace: 0 }, 5, 0, null);
    expect(await routing()).toMatchObject({ conflicts_since_last_run: 1, fallbacks_since_last_run: 2, last_fallback_reason: "replica_lagging" });
  });
});
