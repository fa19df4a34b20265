// get-observations-optimized with a read replica (supabase/functions/_shared/replica.ts): the test
// stack's second functions server has DB_REPLICA_URL set to the test replica, the first has none.
// Covers:
//  - the same answers and the same errors both ways: pages, pagination, aggregates per day and per
//    site, for two companies' users, a user without a company, the service role, another
//    company's ids and bad inputs (status and body equal, meta aside); served_by says replica /
//    primary, and the X-Served-By header too;
//  - fallback to the primary, said in meta.fallback, when replay is paused past the lag bound
//    (and the primary's answer has the row the replica has not replayed), when the replica is
//    stopped, when a read and replay wait for each other (a replayed ACCESS EXCLUSIVE lock and a
//    vacuum record: the read's lock timeout ends it); back to the replica once it has caught up / started;
//  - what the read function reports for health(): partition_mgmt.replica_routing counts the
//    fallbacks and the standby's recovery conflicts (a lock conflict made on purpose), health()
//    warns about both, and replica_lag() shows the replica streaming, lagging while paused, and
//    stopped with the WAL its slot keeps.
import { randomUUID } from "node:crypto";
import { createClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createObservationsClient } from "../../client/observations-client.ts";
import { connect } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { createObservationsFixture, type FixtureCompany, type ObservationsFixture } from "../helpers/observations-fixture.ts";
import {
  connectReplica,
  pauseReplicaReplay,
  replicaEnv,
  resumeReplicaReplay,
  startTestReplica,
  stopTestReplica,
  testReplica,
  waitForReplica,
} from "../helpers/replica.ts";
import { supabaseAs } from "../helpers/supabase.ts";
import { sleep, waitFor } from "../helpers/time.ts";

const FN = "get-observations-optimized";
let fx: ObservationsFixture;

interface Answer {
  status: number;
  body: { rows?: unknown[]; next_cursor?: string | null; meta?: Record<string, unknown>; error?: unknown };
  servedBy: string | null;
}

async function call(functionsUrl: string, token: string, body: Record<string, unknown>, method: "GET" | "POST" = "POST"): Promise<Answer> {
  const query = method === "GET" ? `?${new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString()}` : "";
  const res = await fetch(`${functionsUrl}/${FN}${query}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, apikey: testEnv.anonKey, ...(method === "POST" ? { "Content-Type": "application/json" } : {}) },
    ...(method === "POST" ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Answer["body"], servedBy: res.headers.get("x-served-by") };
}
const viaReplica = (token: string, body: Record<string, unknown>, method?: "GET" | "POST") => call(replicaEnv.functionsUrl, token, body, method);
const viaPrimary = (token: string, body: Record<string, unknown>, method?: "GET" | "POST") => call(testEnv.functionsUrl, token, body, method);

/** The answer without what differs by design: the time it took and which database served it. */
function comparable(a: Answer): unknown {
  const { meta, ...rest } = a.body;
  if (!meta) return { status: a.status, ...rest };
  const { duration_ms: _d, served_by: _s, fallback: _f, ...m } = meta;
  return { status: a.status, ...rest, meta: m };
}

const base = (c: FixtureCompany) => ({ company_id: c.companyId, program_id: c.programId });

/** Requests until the replica server says `servedBy` (its lag check runs every DB_REPLICA_CHECK_MS). */
async function until(servedBy: "replica" | "primary", token: string, body: Record<string, unknown>, timeoutMs = 20_000): Promise<Answer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await viaReplica(token, body);
    if (a.body.meta?.served_by === servedBy || Date.now() > deadline) return a;
    await sleep(replicaEnv.checkMs);
  }
}

beforeAll(async () => {
  fx = await createObservationsFixture({ a: 130, b: 40 });
  await waitForReplica();
});

afterAll(async () => {
  await startTestReplica();
  await resumeReplicaReplay().catch(() => {});
  await fx?.remove();
});

describe("the read function on a replica", () => {
  it("gives the same answers and the same errors as the primary, for every caller", async () => {
    const warm = await until("replica", fx.a.token, { ...base(fx.a), limit: 1 });
    expect(warm.body.meta).toMatchObject({ served_by: "replica", fallback: null });
    const otherCompany = { company_id: fx.b.companyId, program_id: fx.b.programId };
    const requests: [string, string, Record<string, unknown>, ("GET" | "POST")?][] = [
      ["A: first page", fx.a.token, { ...base(fx.a), limit: 50 }],
      ["A: GET", fx.a.token, { ...base(fx.a), limit: 20 }, "GET"],
      ["A: a site", fx.a.token, { ...base(fx.a), site_id: fx.a.siteIds[1], limit: 1000 }],
      ["A: a submission and dates", fx.a.token, { ...base(fx.a), submission_id: fx.a.submissionIds[0], start_date: fx.a.observations[100]!.created_at, limit: 1000 }],
      ["A: per day", fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "day" }],
      ["A: per site", fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "site" }],
      ["B: first page", fx.b.token, { ...base(fx.b), limit: 1000 }],
      ["B: per site", fx.b.token, { ...base(fx.b), mode: "aggregate", group_by: "site" }],
      ["A asks for B's company", fx.a.token, { ...otherCompany, limit: 10 }],
      ["A asks for B's program under A's company", fx.a.token, { company_id: fx.a.companyId, program_id: fx.b.programId, limit: 10 }],
      ["A aggregates B", fx.a.token, { ...otherCompany, mode: "aggregate", group_by: "day" }],
      ["a user without a company", fx.loner.token, { ...base(fx.a), limit: 10 }],
      ["service role reads B", testEnv.serviceRoleKey, { ...base(fx.b), limit: 25 }],
      ["bad uuid", fx.a.token, { company_id: "nope", program_id: fx.a.programId }],
      ["limit 0", fx.a.token, { ...base(fx.a), limit: 0 }],
      ["end before start", fx.a.token, { ...base(fx.a), start_date: "2026-02-01T00:00:00Z", end_date: "2026-01-01T00:00:00Z" }],
      ["a cursor that is not one", fx.a.token, { ...base(fx.a), cursor: "not-a-cursor" }],
      ["a cursor with a bad timestamp", fx.a.token, { ...base(fx.a), cursor: `2026-13-45T00:00:00Z|${randomUUID()}` }],
      ["unknown group", fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "week" }],
    ];
    let fromReplica = 0;
    const statuses = new Set<number>();
    for (const [label, token, body, method] of requests) {
      // the functions server runs several workers, each an isolate with its own lag check: one that
      // has not yet seen the replica replay a position it sampled sends its reads to the primary
      // ("replica_lag_unknown", as documented) until it has; any other fallback fails the test
      let r = await viaReplica(token, body, method);
      for (let i = 0; i < 50 && r.body.meta?.fallback === "replica_lag_unknown"; i++) {
        await sleep(replicaEnv.checkMs);
        r = await viaReplica(token, body, method);
      }
      const p = await viaPrimary(token, body, method);
      expect(comparable(r), label).toEqual(comparable(p));
      statuses.add(r.status);
      if (r.status === 200) {
        expect(r.body.meta?.served_by, `${label} (fallback: ${String(r.body.meta?.fallback)})`).toBe("replica");
        expect(r.servedBy, label).toBe("replica");
        expect(p.body.meta, label).toMatchObject({ served_by: "primary", fallback: null });
        fromReplica++;
      }
    }
    expect(fromReplica).toBe(9);
    expect([...statuses].sort()).toEqual(expect.arrayContaining([200, 400, 403]));

    // pagination to the end, page by page, both ways
    const pages = async (via: typeof viaReplica) => {
      const seen: unknown[] = [];
      let cursor: string | null | undefined;
      do {
        const a = await via(fx.a.token, { ...base(fx.a), limit: 40, ...(cursor ? { cursor } : {}) });
        expect(a.status).toBe(200);
        seen.push(comparable(a));
        cursor = a.body.next_cursor;
      } while (cursor);
      return seen;
    };
    const replicaPages = await pages(viaReplica);
    expect(replicaPages).toHaveLength(4);
    expect(replicaPages).toEqual(await pages(viaPrimary));
  });

  it("the typed client exposes which database served a page or an aggregate", async () => {
    const onPrimary = createObservationsClient(supabaseAs(fx.b.token));
    const onReplica = createObservationsClient(createClient(replicaEnv.functionsUrl.replace(/\/functions\/v1$/, ""), testEnv.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      global: { headers: { Authorization: `Bearer ${fx.b.token}` } },
      realtime: { transport: class { constructor() { throw new Error("no realtime in the suites"); } } as unknown as WebSocketLikeConstructor },
    }));
    const page = await onPrimary.page({ ...base(fx.b), limit: 5 });
    expect(page.error).toBeNull();
    expect(page.data?.meta).toMatchObject({ served_by: "primary", fallback: null }); // the first functions server has no replica
    const days = await onReplica.aggregate({ ...base(fx.b), group_by: "day" });
    expect(days.error).toBeNull();
    expect(days.data?.meta).toMatchObject({ served_by: "replica", fallback: null });
    const bad = await onReplica.aggregate({ ...base(fx.b), company_id: fx.a.companyId, group_by: "site" });
    expect(bad.error?.status).toBe(403);
  });
});

describe("fallback to the primary", () => {
  it("when replay is paused past the lag bound: the primary answers with the newest row; the replica again once it has caught up", async () => {
    await until("replica", fx.a.token, { ...base(fx.a), limit: 1 });
    await pauseReplicaReplay();
    const newRow = randomUUID();
    await fx.sql`insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, growth_index, created_at)
      values (${newRow}, ${fx.a.submissionIds[0]}, ${fx.a.siteIds[0]}, ${fx.a.programId}, 'replica-lag', 1, now())`;
    // within the bound the replica still serves, without the new row
    const stale = await viaReplica(fx.a.token, { ...base(fx.a), limit: 1 });
    if (stale.body.meta?.served_by === "replica") expect((stale.body.rows as { observation_id: string }[])[0]?.observation_id).not.toBe(newRow);
    await sleep(replicaEnv.maxLagMs + 2 * replicaEnv.checkMs);
    const fallback = await until("primary", fx.a.token, { ...base(fx.a), limit: 1 });
    expect(fallback.body.meta).toMatchObject({ served_by: "primary", fallback: "replica_lagging" });
    expect(fallback.servedBy).toBe("primary");
    expect((fallback.body.rows as { observation_id: string }[])[0]?.observation_id).toBe(newRow);

    const admin = connect(testEnv.adminUrl);
    try {
      const [lag] = await admin<{ state: string; bytes_behind: string; replay_lag: string | null }[]>`
        select state, bytes_behind::text, replay_lag::text from partition_mgmt.replica_lag() where replica = ${testReplica().slot}`;
      expect(lag?.state).toBe("streaming");
      expect(Number(lag?.bytes_behind)).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }

    await resumeReplicaReplay();
    await waitForReplica();
    const back = await until("replica", fx.a.token, { ...base(fx.a), limit: 1 });
    expect(back.body.meta).toMatchObject({ served_by: "replica", fallback: null });
    expect((back.body.rows as { observation_id: string }[])[0]?.observation_id).toBe(newRow);
  });

  it("when replay and a read wait for each other (a replayed lock, then a cleanup record): the primary answers after the lock timeout", async () => {
    // On the primary: Y updates a row and stays open; A takes ACCESS EXCLUSIVE on the observations
    // (as the swap does) and stays open. The replica replays A's lock; a read through the function
    // queues behind it, with a snapshot in which Y still runs. Then Y commits and a vacuum removes
    // Y's old row version: replaying that record, the replica waits for every reader whose
    // snapshot may still need it, the queued read included, while the read waits for A's lock,
    // which replay holds until it reaches A's commit, behind the vacuum record. Without a bound of
    // ours they wait for each other until the read's statement_timeout (8 s) fails it.
    // two sessions held open (Y and A) and one for the rest
    const admin = connect(testEnv.adminUrl, 3);
    const replicaAdmin = connectReplica("postgres", 1, { admin: true });
    const y = await admin.reserve();
    const a = await admin.reserve();
    let aOpen = false;
    let yOpen = false;
    try {
      await admin`create table public.replica_deadlock_probe (id int primary key, n int) with (autovacuum_enabled = false)`;
      await admin`insert into public.replica_deadlock_probe values (1, 0)`;
      await waitForReplica();
      expect((await until("replica", fx.a.token, { ...base(fx.a), limit: 1 })).body.meta?.served_by).toBe("replica");

      await y`begin`;
      yOpen = true;
      await y`update public.replica_deadlock_probe set n = n + 1 where id = 1`;
      await a`begin`;
      aOpen = true;
      await a`set local lock_timeout = '5s'`;
      await a`lock table public.petri_observations in access exclusive mode`;
      const [lockAt] = await a<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`;
      // a commit elsewhere flushes the lock's record; then the replica holds the lock
      await admin`select txid_current()`;
      await waitFor("the replica replays the lock", async () =>
        (await replicaAdmin<{ ok: boolean }[]>`select pg_last_wal_replay_lsn() >= ${lockAt!.lsn}::pg_lsn as ok`)[0]!.ok, 10_000, 20);

      const t0 = performance.now();
      const answer = viaReplica(fx.a.token, { ...base(fx.a), limit: 1 });
      await waitFor("the read queues behind the replayed lock", async () =>
        (await replicaAdmin<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and wait_event_type = 'Lock'`)[0]!.n > 0, 10_000, 20);
      await y`commit`;
      yOpen = false;
      // A's catalog snapshot, taken while Y ran, would keep Y's row version on the primary: a
      // catalog change elsewhere invalidates it at A's next statement
      await admin`comment on table public.replica_deadlock_probe is 'replica deadlock probe'`;
      await a`select 1`;
      await admin`vacuum public.replica_deadlock_probe`;
      const [dead] = await admin<{ n: number }[]>`select n_dead_tup::int as n from pg_stat_user_tables where relid = 'public.replica_deadlock_probe'::regclass`;
      expect(dead?.n, "the vacuum removed Y's row version").toBe(0);
      await a`commit`;
      aOpen = false;
      // what the replica's replay waits for while the read is in the way
      let replayWaitedForReaders = false;
      let done = false;
      const answered = answer.finally(() => { done = true; });
      while (!done) {
        const [st] = await replicaAdmin<{ w: string | null }[]>`select wait_event as w from pg_stat_activity where backend_type = 'startup'`;
        if (st?.w === "RecoveryConflictSnapshot") replayWaitedForReaders = true;
        await sleep(20);
      }
      const res = await answered;
      const ms = performance.now() - t0;
      expect(replayWaitedForReaders, "the replica's replay waited for the queued read (the deadlock really formed)").toBe(true);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.meta).toMatchObject({ served_by: "primary", fallback: "replica_lock_wait" });
      expect(res.servedBy).toBe("primary");
      // one lock timeout (1 s by default) and the primary's read, far from the 8 s statement_timeout
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(5000);
      await waitForReplica();
      expect((await until("replica", fx.a.token, { ...base(fx.a), limit: 1 })).body.meta?.served_by).toBe("replica");
    } finally {
      if (aOpen) await a`rollback`.catch(() => {});
      if (yOpen) await y`rollback`.catch(() => {});
      a.release();
      y.release();
      await admin`drop table if exists public.replica_deadlock_probe`;
      await Promise.all([admin.end(), replicaAdmin.end()]);
    }
  });

  it("when the replica is down: the primary answers, said in meta and health(); the replica again once started", async () => {
    await until("replica", fx.a.token, { ...base(fx.a), limit: 1 });
    expect(await stopTestReplica()).toBe(true);
    try {
      await readsWhileDown();
    } finally {
      await startTestReplica();
    }
    await waitForReplica();
    expect((await until("replica", fx.a.token, { ...base(fx.a), limit: 1 })).body.meta?.served_by).toBe("replica");
  });
});

/** With the replica stopped: the primary answers, and the primary's health() says why. */
async function readsWhileDown(): Promise<void> {
  const down = await until("primary", fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "site" });
  expect(down.status).toBe(200);
  expect(down.body.meta).toMatchObject({ served_by: "primary", fallback: "replica_unreachable" });
  expect(comparable(down)).toEqual(comparable(await viaPrimary(fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "site" })));

  const admin = connect(testEnv.adminUrl);
  try {
    const [lag] = await admin<{ state: string }[]>`select state from partition_mgmt.replica_lag() where replica = ${testReplica().slot}`;
    expect(lag?.state).toBe("stopped");
    // the function reports every ten lag checks: keep reading until this fallback is there
    let routing: { fallbacks_since_last_run: string; last_fallback_reason: string }[] = [];
    for (let i = 0; i < 100 && routing[0]?.last_fallback_reason !== "replica_unreachable"; i++) {
      await viaReplica(fx.a.token, { ...base(fx.a), limit: 1 });
      await sleep(replicaEnv.checkMs);
      routing = await admin`select fallbacks_since_last_run::text, last_fallback_reason from partition_mgmt.replica_routing`;
    }
    expect(routing).toHaveLength(1);
    expect(Number(routing[0]?.fallbacks_since_last_run)).toBeGreaterThan(0);
    expect(routing[0]?.last_fallback_reason).toBe("replica_unreachable");
    const findings = await admin<{ severity: string; finding: string; detail: string }[]>`
      select severity, finding, detail from partition_mgmt.health() where finding like 'replica%'`;
    expect(findings.map((f) => [f.severity, f.finding])).toEqual(expect.arrayContaining([
      ["warning", "replica not streaming"], ["warning", "replica reads fell back"]]));
    expect(findings.find((f) => f.finding === "replica not streaming")?.detail).toMatch(/stopped, .* behind \(its slot/);
  } finally {
    await admin.end();
  }
}

describe("recovery conflicts on the replica, as health() sees them", () => {
  it("a replica reader cancelled by the primary's DDL is counted and reported", async () => {
    const admin = connect(testEnv.adminUrl);
    const replicaAdmin = connectReplica("postgres", 1, { admin: true });
    const reader = connectReplica("postgres", 1);
    try {
      await admin`create table if not exists public.replica_conflict_probe (id int)`;
      await waitForReplica();
      // cancel after 100 ms instead of 30 s, for this test only
      await replicaAdmin`alter system set max_standby_streaming_delay = '100ms'`;
      await replicaAdmin`select pg_reload_conf()`;
      const before = await until("replica", fx.a.token, { ...base(fx.a), limit: 1 });
      expect(before.body.meta?.served_by).toBe("replica");
      // a reader holding the table while the primary drops it: the drop waits until the reader has
      // read the table (a fixed pause was not enough on a loaded machine: the reader then came
      // after the drop's replay and found no table)
      let reading: () => void = () => {};
      const holding = new Promise<void>((resolve) => { reading = resolve; });
      const held = reader.begin(async (tx) => {
        await tx`select count(*) from public.replica_conflict_probe`;
        reading();
        await tx`select pg_sleep(10)`;
      }).then(() => null, (e: unknown) => e);
      await Promise.race([holding, held]);
      await admin`drop table public.replica_conflict_probe`;
      const err = await held;
      expect(String((err as Error | null)?.message)).toMatch(/conflict with recovery/);

      let conflicts = 0;
      for (let i = 0; i < 100 && conflicts === 0; i++) {
        await viaReplica(fx.a.token, { ...base(fx.a), limit: 1 });
        await sleep(replicaEnv.checkMs);
        const [r] = await admin<{ n: string }[]>`select conflicts_since_last_run::text as n from partition_mgmt.replica_routing`;
        conflicts = Number(r?.n ?? 0);
      }
      expect(conflicts).toBeGreaterThanOrEqual(1);
      const [finding] = await admin<{ detail: string }[]>`select detail from partition_mgmt.health() where finding = 'replica reads cancelled'`;
      expect(finding?.detail).toMatch(/read\(s\) cancelled by recovery conflicts .*confl_lock/);
    } finally {
      await replicaAdmin`alter system reset max_standby_streaming_delay`.catch(() => {});
      await replicaAdmin`select pg_reload_conf()`.catch(() => {});
      await admin`drop table if exists public.replica_conflict_probe`;
      await Promise.all([admin.end(), replicaAdmin.end(), reader.end()]);
    }
  });
});
