// Partition engine under concurrency (partition_mgmt, migration 20250102000200), on a real database.
// Covers:
//  - ten sessions released at the same instant creating the partitions of the same NEW site by
//    every path there is (the site row's insert trigger, ensure_site_partition for either table,
//    precreate_program_partitions, ensure_period_partition), three rounds: no session fails or is
//    told its partitions were postponed, exactly one site partition (and one site DEFAULT) per
//    managed table, exactly one set of month leaves, the catalog agrees, a further precreate
//    creates nothing, validate_partitions() reports every check ok;
//  - two fixed interleavings of the same race, so that it does not depend on timing:
//    the site's insert trigger and ensure_site_partition for the other table both queued behind
//    another transaction that is creating partitions; and two sessions creating two different
//    months of one site that both start while a third creator's transaction is still open;
//    every session must succeed;
//  - ten sessions inserting observations for a month that has no partition (rows go to the site's
//    DEFAULT partition) while another session creates that month's leaf: the creator succeeds,
//    no insert is rejected, no row is lost or duplicated, every row ends in the new leaf, the
//    DEFAULT is empty and the key table has exactly one entry per row.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres, { type Sql, type TransactionSql } from "postgres";
import { connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { sleep, waitFor } from "../helpers/time.ts";

const SESSIONS = 10;
const GATE_KEY = 730_001; // advisory lock every worker queues behind, so they start together
const COMPANY = randomUUID();
const PROGRAM = randomUUID();
const SUBMISSION = randomUUID();

/** Separate connections; their warnings (e.g. "partitions ... not created now") go to `notices`. */
function openSessions(url: string, n: number, notices: string[] = []): Sql[] {
  return Array.from({ length: n }, (_, i) =>
    postgres(url, {
      max: 1,
      idle_timeout: 0,
      onnotice: (m) => {
        if (m.severity !== "NOTICE") notices.push(`session ${i}: ${m.severity} ${m.message}`);
      },
    }));
}

async function closeSessions(sessions: Sql[]): Promise<void> {
  await Promise.all(sessions.map((s) => s.end({ timeout: 5 })));
}

function describeError(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return `${err.code ?? "?"}: ${err.message ?? String(e)}`;
}

function outcome(r: PromiseSettledResult<unknown>): string {
  return r.status === "fulfilled" ? "ok" : describeError(r.reason);
}

async function backendPid(s: Sql): Promise<number> {
  const [r] = await s<{ pid: number }[]>`select pg_backend_pid() as pid`;
  return r!.pid;
}

/**
 * Runs work(tx, i) in every session, each in its own transaction, all released at the same
 * instant: every session first queues behind an advisory lock held by a gate session, which lets
 * go only once all of them are waiting.
 */
async function simultaneously<T>(url: string, sessions: Sql[], work: (tx: TransactionSql, i: number) => Promise<T>) {
  const gate = connect(url);
  try {
    await gate`select pg_advisory_lock(${GATE_KEY})`;
    const running = sessions.map((s, i) =>
      s.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock_shared(${GATE_KEY})`;
        return work(tx, i);
      }),
    );
    await waitFor("every session waits at the gate", async () => {
      const [w] = await gate<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and not granted and objid = ${GATE_KEY}
          and database = (select oid from pg_database where datname = current_database())`;
      return w?.n === sessions.length;
    });
    await gate`select pg_advisory_unlock(${GATE_KEY})`;
    return await Promise.allSettled(running);
  } finally {
    await gate.end({ timeout: 5 });
  }
}

describe("partition engine under concurrency", () => {
  let db: FreshDb;
  let monthsExpected: number;

  /** Partitions the registry and the catalog hold for one site, per managed table. */
  async function siteTree(site: string) {
    return db.sql<{ table_key: string; sites: number; site_defaults: number; leaves: number; ranges: number; in_catalog: number }[]>`
      select r.table_key,
             count(*) filter (where r.level = 'site' and not r.is_default)::int as sites,
             count(*) filter (where r.level = 'period' and r.is_default)::int as site_defaults,
             count(*) filter (where r.level = 'period' and not r.is_default)::int as leaves,
             count(distinct r.range_start) filter (where r.level = 'period' and not r.is_default)::int as ranges,
             count(*) filter (where exists (
               select from pg_partition_tree(m.parent) t
               where t.relid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))))::int as in_catalog
      from partition_mgmt.partition_registry r
      join partition_mgmt.managed_tables m using (table_key)
      where r.site_id = ${site}
      group by r.table_key, m.parent order by r.table_key`;
  }

  function completeTree() {
    // site partition + its DEFAULT + one leaf per month, for both tables, all attached in the tree
    return ["gasifier", "petri"].map((table_key) => ({
      table_key, sites: 1, site_defaults: 1, leaves: monthsExpected, ranges: monthsExpected, in_catalog: monthsExpected + 2,
    }));
  }

  /** Resolves once the session either waits for a lock or has finished its statement. */
  async function blockedOrDone(what: string, pid: number, statement: Promise<unknown>): Promise<void> {
    let settled = false;
    statement.then(() => (settled = true), () => (settled = true));
    await waitFor(what, async () => {
      if (settled) return true;
      const [r] = await db.sql<{ w: boolean }[]>`select exists (select from pg_locks where pid = ${pid} and not granted) as w`;
      return r?.w === true;
    });
  }

  async function invalidChecks() {
    const checks = await db.sql<{ check_name: string; table_key: string; status: string; detail: string }[]>`
      select * from partition_mgmt.validate_partitions()`;
    return checks.filter((c) => c.status !== "ok");
  }

  beforeAll(async () => {
    db = await freshDatabase("partition_concurrency", { treeShape: "literal" });
    await db.sql`insert into public.companies (company_id, name) values (${COMPANY}, 'Concurrency Co')`;
    // running program: started two months ago, ends far in the future
    await db.sql`
      insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
      values (${PROGRAM}, 'Concurrent program',
              (date_trunc('month', now() at time zone 'UTC') - interval '2 months')::date, '2099-12-31', ${COMPANY})`;
    const [m] = await db.sql<{ premake: number }[]>`
      select premake_months as premake from partition_mgmt.managed_tables where table_key = 'petri'`;
    monthsExpected = 2 + (m?.premake ?? 3) + 1; // two past months, the current one, premake
  });

  afterAll(async () => {
    await db?.drop();
  });

  // Every way a partition of a new site gets created, spread over the ten sessions.
  const creators: ((tx: TransactionSql, site: string) => Promise<unknown>)[] = [
    (tx, site) => tx`insert into public.sites (site_id, program_id, name) values (${site}, ${PROGRAM}, 'new site')
                     on conflict (site_id) do nothing`,
    (tx, site) => tx`select partition_mgmt.ensure_site_partition('petri', ${PROGRAM}::uuid, ${site}::uuid)`,
    (tx, site) => tx`select partition_mgmt.ensure_site_partition('gasifier', ${PROGRAM}::uuid, ${site}::uuid)`,
    (tx, site) => tx`select partition_mgmt.precreate_program_partitions(${PROGRAM}::uuid, null, ${site}::uuid)`,
    (tx, site) => tx`select partition_mgmt.ensure_period_partition('petri', ${PROGRAM}::uuid, ${site}::uuid, now())`,
  ];

  for (const round of [1, 2, 3]) {
    it(`round ${round}: ten sessions create the same new site's partitions: one tree, no error, validate ok`, async () => {
      const site = randomUUID();
      const notices: string[] = [];
      const sessions = openSessions(db.url, SESSIONS, notices);
      let outcomes: string[];
      try {
        outcomes = (await simultaneously(db.url, sessions, (tx, i) => creators[i % creators.length]!(tx, site))).map(outcome);
      } finally {
        await closeSessions(sessions);
      }
      expect({ outcomes, notices }).toEqual({ outcomes: Array(SESSIONS).fill("ok"), notices: [] });

      expect(await siteTree(site)).toEqual(completeTree());
      const [again] = await db.sql<{ n: number }[]>`
        select partition_mgmt.precreate_program_partitions(${PROGRAM}::uuid, null, ${site}::uuid) as n`;
      expect(again?.n).toBe(0);
      expect(await invalidChecks()).toEqual([]);
    });
  }

  it("the site's insert trigger and ensure_site_partition for the other table, queued behind another creator, both succeed", async () => {
    const site = randomUUID();
    const otherSite = randomUUID();
    const notices: string[] = [];
    const [other, trigger, direct] = openSessions(db.url, 3, notices) as [Sql, Sql, Sql];
    const [triggerPid, directPid] = [await backendPid(trigger), await backendPid(direct)];
    let releaseOther!: () => void;
    const otherMayCommit = new Promise<void>((r) => (releaseOther = r));
    try {
      // another transaction is creating the partitions of another new site and has not committed yet
      let otherStarted!: () => void;
      const otherHasWorked = new Promise<void>((r) => (otherStarted = r));
      const otherTx = other.begin(async (tx) => {
        await tx`select partition_mgmt.ensure_site_partition('petri', ${PROGRAM}::uuid, ${otherSite}::uuid)`;
        otherStarted();
        await otherMayCommit;
      });
      await Promise.race([otherHasWorked, otherTx]);
      // the app inserts the new site (its trigger creates the partitions of every managed table) ...
      const insert = trigger`insert into public.sites (site_id, program_id, name) values (${site}, ${PROGRAM}, 'new site')`.execute();
      await blockedOrDone("the site insert waits or is done", triggerPid, insert);
      // ... and maintenance creates the same site's petri partition
      const ensure = direct`select partition_mgmt.ensure_site_partition('petri', ${PROGRAM}::uuid, ${site}::uuid)`.execute();
      await blockedOrDone("ensure_site_partition waits or is done", directPid, ensure);
      releaseOther();
      await otherTx;
      const outcomes = (await Promise.allSettled([insert, ensure])).map(outcome);
      expect({ outcomes, notices }).toEqual({ outcomes: ["ok", "ok"], notices: [] });
      expect(await siteTree(site)).toEqual(completeTree());
    } finally {
      releaseOther();
      await closeSessions([other, trigger, direct]);
    }
  });

  it("two sessions creating two months of one site while a third creator's transaction is open both succeed", async () => {
    const site = randomUUID();
    await db.sql`insert into public.sites (site_id, program_id, name) values (${site}, ${PROGRAM}, 'three creators')`;
    // months before the program started have no leaf
    const monthsAgo = (n: number) => db.sql`select (date_trunc('month', now() at time zone 'UTC') - make_interval(months => ${n})) at time zone 'UTC' + interval '1 day' as at`
      .then((rows) => rows[0]!.at as Date);
    const [m12, m13, m14] = [await monthsAgo(12), await monthsAgo(13), await monthsAgo(14)];
    const [first, second, third] = openSessions(db.url, 3) as [Sql, Sql, Sql];
    const [secondPid, thirdPid] = [await backendPid(second), await backendPid(third)];
    let releaseFirst!: () => void;
    const firstMayCommit = new Promise<void>((r) => (releaseFirst = r));
    const ensure = (s: Sql, at: Date) =>
      s`select partition_mgmt.ensure_period_partition('petri', ${PROGRAM}::uuid, ${site}::uuid, ${at}) as leaf`.execute();
    try {
      let firstDone!: () => void;
      const firstHasWorked = new Promise<void>((r) => (firstDone = r));
      const firstTx = first.begin(async (tx) => {
        await tx`select partition_mgmt.ensure_period_partition('petri', ${PROGRAM}::uuid, ${site}::uuid, ${m12})`;
        firstDone();
        await firstMayCommit;
      });
      await Promise.race([firstHasWorked, firstTx]);
      const a = ensure(second, m13);
      await blockedOrDone("the second creator waits or is done", secondPid, a);
      const b = ensure(third, m14);
      await blockedOrDone("the third creator waits or is done", thirdPid, b);
      releaseFirst();
      await firstTx;
      const outcomes = (await Promise.allSettled([a, b])).map(outcome);
      expect(outcomes).toEqual(["ok", "ok"]);
      const [n] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from partition_mgmt.partition_registry
        where table_key = 'petri' and site_id = ${site} and level = 'period' and not is_default`;
      expect(n?.n).toBe(monthsExpected + 3);
      expect(await invalidChecks()).toEqual([]);
    } finally {
      releaseFirst();
      await closeSessions([first, second, third]);
    }
  });

  it("ten sessions insert into a month without a partition while another creates it: none rejected, none lost", async () => {
    const site = randomUUID();
    await db.sql`insert into public.sites (site_id, program_id, name) values (${site}, ${PROGRAM}, 'busy site')`;
    await db.sql`insert into public.submissions (submission_id, site_id, program_id) values (${SUBMISSION}, ${site}, ${PROGRAM})`;
    const [t] = await db.sql<{ month: Date; leaf_before: number; site_default: string }[]>`
      with m as (select (date_trunc('month', now() at time zone 'UTC') - interval '12 months') at time zone 'UTC' as month)
      select m.month,
             (select count(*)::int from partition_mgmt.partition_registry
               where site_id = ${site} and table_key = 'petri' and level = 'period' and not is_default
                 and range_start <= m.month and range_end > m.month) as leaf_before,
             (select format('%I.%I', partition_schema, partition_name) from partition_mgmt.partition_registry
               where site_id = ${site} and table_key = 'petri' and level = 'period' and is_default) as site_default
      from m`;
    expect(t?.leaf_before).toBe(0); // the month before the program started has no leaf
    const month = t!.month;
    const siteDefault = t!.site_default;

    const inserters = openSessions(db.url, SESSIONS);
    const creator = connect(db.url);
    const inserted: string[] = [];
    const rejected: string[] = [];
    let stop = false;
    try {
      const loops = inserters.map(async (s, i) => {
        let n = 0;
        while (!stop) {
          const id = randomUUID();
          // spread over the month's first 27 days, distinct per session and row
          const at = new Date(month.getTime() + ((i * 100_003 + n * 7_919) % (27 * 86_400)) * 1000 + n);
          n += 1;
          try {
            await s`
              insert into public.petri_observations_partitioned (observation_id, submission_id, site_id, program_id, petri_code, created_at)
              values (${id}, ${SUBMISSION}, ${site}, ${PROGRAM}, ${`c${i}-${n}`}, ${at})`;
            inserted.push(id);
          } catch (e) {
            rejected.push(describeError(e));
          }
        }
      });

      while (inserted.length + rejected.length < 200) await sleep(5);
      let creatorError: string | null = null;
      let leaf = "";
      try {
        const [r] = await creator<{ leaf: string }[]>`
          select partition_mgmt.ensure_period_partition('petri', ${PROGRAM}::uuid, ${site}::uuid, ${new Date(month.getTime() + 86_400_000)}) as leaf`;
        leaf = r?.leaf ?? "";
      } catch (e) {
        creatorError = describeError(e);
      }
      await sleep(300); // keep inserting after the leaf exists
      stop = true;
      await Promise.all(loops);

      expect({ creatorError, rejected: rejected.length, firstRejections: rejected.slice(0, 3) })
        .toEqual({ creatorError: null, rejected: 0, firstRejections: [] });
      expect(leaf).toMatch(/^partitions\.petri_p_[0-9a-f]{12}_s_[0-9a-f]{12}_\d{4}_\d{2}$/);

      const [c] = await db.sql<{ rows: number; distinct_ids: number; in_leaf: number; keys: number }[]>`
        select count(*)::int as rows,
               count(distinct observation_id)::int as distinct_ids,
               count(*) filter (where tableoid = ${leaf}::regclass)::int as in_leaf,
               (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri' and site_id = ${site}) as keys
        from public.petri_observations_partitioned where site_id = ${site}`;
      expect(c).toEqual({ rows: inserted.length, distinct_ids: inserted.length, in_leaf: inserted.length, keys: inserted.length });
      // siteDefault comes from format('%I.%I') in the registry query above
      const [d] = await db.sql.unsafe<{ n: number }[]>(`select count(*)::int as n from ${siteDefault}`);
      expect(d?.n).toBe(0);
      const [missing] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from unnest(${inserted}::uuid[]) i(id)
        where not exists (select from public.petri_observations_partitioned o where o.observation_id = i.id)`;
      expect(missing?.n).toBe(0);
    } finally {
      stop = true;
      await closeSessions(inserters);
      await creator.end({ timeout: 5 });
    }
  });
});
