// The test stack's read replica (scripts/lib/replica.ts) is what a Supabase read replica is: a hot
// standby streaming from the primary through its own slot, with the primary's compute profile and
// the standby settings Supabase uses; it catches up, and a stopped replica shows how far behind it
// is on the primary and catches up once started again; waiting for it covers what was committed
// just before, with the test clusters' asynchronous commits too.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STANDBY_SETTINGS } from "../../scripts/lib/replica.ts";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { connectReplica, startTestReplica, stopTestReplica, testReplica, waitForReplica } from "../helpers/replica.ts";
import { testEnv } from "../helpers/env.ts";

const PROFILE_SETTINGS = ["max_connections", "max_locks_per_transaction", "shared_buffers", "work_mem", "max_worker_processes", "max_wal_senders", "statement_timeout"];

describe("the test stack's read replica", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("replica_stack");
    await db.sql`create table public.replica_probe (id int primary key, note text)`;
  });
  afterAll(async () => {
    await startTestReplica();
    await db.drop();
  });

  it("waitForReplica returns only once the replica shows what was just committed, also with synchronous_commit off", async () => {
    // the test clusters commit asynchronously: a commit returns before its record is written out,
    // so waiting for the primary's written position (pg_current_wal_lsn) returned too early
    const [sc] = await db.sql<{ s: string }[]>`select current_setting('synchronous_commit') as s`;
    expect(sc?.s).toBe("off");
    await db.sql`create table public.replica_commit_probe (id int primary key)`;
    const replica = connectReplica(db.name, 1);
    try {
      await waitForReplica();
      for (let i = 1; i <= 20; i++) {
        await db.sql`insert into public.replica_commit_probe values (${i})`;
        await waitForReplica();
        const [r] = await replica<{ n: number }[]>`select count(*)::int as n from public.replica_commit_probe where id = ${i}`;
        expect(r?.n, `row ${i}`).toBe(1);
      }
    } finally {
      await replica.end();
    }
  });

  it("is a hot standby with the primary's compute profile and Supabase's standby settings", async () => {
    await waitForReplica();
    const replica = connectReplica(db.name, 1);
    try {
      const [standby] = await replica<{ in_recovery: boolean }[]>`select pg_is_in_recovery() as in_recovery`;
      expect(standby?.in_recovery).toBe(true);
      const names = [...PROFILE_SETTINGS, ...Object.keys(STANDBY_SETTINGS)];
      const settingsOf = async (sql: typeof replica) => Object.fromEntries(
        (await sql<{ name: string; setting: string }[]>`select name, setting from pg_settings where name = any(${names}) order by name`)
          .map((r) => [r.name, r.setting]));
      const onReplica = await settingsOf(replica);
      const onPrimary = await settingsOf(db.sql);
      for (const name of PROFILE_SETTINGS) expect(onReplica[name], name).toBe(onPrimary[name]);
      expect(onReplica.hot_standby).toBe("on");
      expect(onReplica.hot_standby_feedback).toBe("off");
      expect(onReplica.max_standby_streaming_delay).toBe("30000"); // ms: 30s
      await expect(replica`insert into public.replica_probe values (1, 'no')`).rejects.toMatchObject({ code: "25006" });
    } finally {
      await replica.end();
    }
  });

  it("streams through its slot, and shows the primary how far behind it is while stopped", async () => {
    const r = testReplica();
    const admin = connect(testEnv.adminUrl);
    try {
      const [streaming] = await admin<{ state: string }[]>`select state from pg_stat_replication where application_name = ${r.slot}`;
      expect(streaming?.state).toBe("streaming");

      await db.sql`insert into public.replica_probe values (1, 'before the stop')`;
      await waitForReplica();
      expect(await stopTestReplica()).toBe(true);
      await db.sql`insert into public.replica_probe select g, repeat('x', 200) from generate_series(2, 5001) g`;
      await admin`select pg_switch_wal()`; // the throwaway cluster commits asynchronously: make the WAL written
      const [slot] = await admin<{ active: boolean; behind: string }[]>`
        select active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text as behind
        from pg_replication_slots where slot_name = ${r.slot}`;
      expect(slot?.active).toBe(false);
      expect(Number(slot?.behind)).toBeGreaterThan(1_000_000);
      expect(await admin`select from pg_stat_replication where application_name = ${r.slot}`).toHaveLength(0);

      await startTestReplica();
      await waitForReplica();
      const replica = connectReplica(db.name, 1);
      try {
        const [n] = await replica<{ n: number }[]>`select count(*)::int as n from public.replica_probe`;
        expect(n?.n).toBe(5001);
      } finally {
        await replica.end();
      }
    } finally {
      await admin.end();
    }
  });
});
