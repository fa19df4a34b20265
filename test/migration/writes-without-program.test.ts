// Every write the legacy gasifier table accepts, before the swap, after it, after maintenance moved
// the rows and after a rollback (issue 18, point 5; docs/your-app.md, "Gasifier rows without program_id").
// Two databases with the same demo data: `legacy`, the app's table as it is before the migration,
// and `live`, migrated online and swapped (and later rolled back). Every write below is sent to
// both the way the app sends it (test/helpers/postgrest.ts: PostgREST 12's transaction, role,
// claims and statement; as a signed-in user of company 1 unless it says otherwise; COPY through
// the database connection), and the answers are compared.
// Covers, for each shape (table WRITES: insert with and without program_id, program_id NULL sent,
// a multi-row insert mixing them, INSERT ... RETURNING, upsert as PostgREST sends it on
// observation_id and on the primary key, an update setting program_id to NULL, an update of
// site_id / of another column / sending program_id / changing observation_id on a row written
// without it, a delete of one, COPY as service_role and as a user, the refusals for a site of
// another company, an unknown site, no site), each with a site whose program has partitions of its
// own and one whose program shares the root's DEFAULT leaf:
//  - the same accepted/refused outcome (SQLSTATE) before and after the swap, the same rows
//    returned and the same rows read back at once by the same user, where the swapped table holds
//    the site's program in place of the NULL (a partition key cannot be NULL); the documented
//    differences and nothing else (a program with partitions of its own: such a row is stored but
//    not returned, and an upsert of an existing one is refused; ON CONFLICT (observation_id) is
//    refused by any partitioned table);
//  - the other company sees none of these rows, before and after; get_observation_by_id finds each;
//  - the Realtime change feed has one INSERT per row written without program_id;
//  - post_migration_validation after the swap (the list of rows without program_id matches the
//    NULLs of gasifier_observations_old), npm run generate's data after the swap;
//  - after maintenance promoted the program whose rows shared the root's DEFAULT leaf: the same
//    rows, moved to the program's partitions, and a new row without program_id for it lands;
//  - after a rollback the legacy table holds exactly what the legacy database holds, the NULLs the
//    app wrote included (the whole table compared), generate's rows too.
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateDemoData } from "../../scripts/lib/demo-data.ts";
import { runMaintenance } from "../../scripts/lib/maintenance-runner.ts";
import { migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo, SMALL_DEMO } from "../helpers/migration.ts";
import {
  deleteStatement, insertStatement, readStatement, rpcStatement, send, updateStatement, userCaller,
  type Caller, type Filter, type Row,
} from "../helpers/postgrest.ts";

/** A uuid that is a function of a name: the same ids in both databases. */
const uid = (name: string): string => {
  const h = createHash("md5").update(`writes-without-program:${name}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** The program (company 1) created for this suite: no rows, so it shares the root's DEFAULT leaf. */
const SMALL = {
  program: uid("small program"),
  sites: [uid("small site 1"), uid("small site 2")],
  submissions: [uid("small submission 1"), uid("small submission 2")],
};

interface Site { site: string; submission: string; program: string }
interface Fixture {
  companyId: string;
  /** a site of a company 1 program with partitions of its own after the migration, and another of the same program */
  own: Site;
  own2: Site;
  /** the two sites of the program that shares the root's DEFAULT leaf */
  shared: Site;
  shared2: Site;
  /** a site of company 2 */
  theirs: Site;
  programOfSite: Map<string, string>;
}

type Db = "legacy" | "live";
interface Outcome { error: string | null; returned: Row[] | null; count?: number | null }
interface Ctx { db: Db; sql: Sql; url: string; f: Fixture }

const T = "2026-01-15T10:00:00+00:00";
const eq = (column: string, value: string): Filter => ({ column, op: "eq", value });

/** A gasifier row as the app sends it: no program_id unless `extra` has one. */
function gasRow(id: string, s: Site, extra: Row = {}): Row {
  return { observation_id: id, submission_id: s.submission, site_id: s.site, gasifier_code: `G-${id.slice(0, 8)}`,
           measure: 1.5, created_at: T, updated_at: T, notes: null, ...extra };
}

/** One shape of write, sent to both databases. */
interface WriteCase {
  name: string;
  /** rows read back after the write */
  ids: string[];
  /** writes made first (to the same database, the same way) */
  setup?: (c: Ctx) => Promise<void>;
  act: (c: Ctx) => Promise<Outcome>;
  /** who writes (default: the user of company 1) */
  as?: "me" | "service";
  /**
   * How the swapped table's answer differs from the legacy table's (docs/your-app.md, "Rows written without
   * program_id"): `notReturned` rows are stored but not returned; `error` the SQLSTATE it refuses
   * the write with where the legacy table accepted it.
   */
  swapped?: { notReturned?: string[]; error?: string };
}

let me: Caller;
let other: Caller;
const service: Caller = { role: "service_role", claims: { role: "service_role", iss: "supabase" } };
const callerOf = (c: WriteCase): Caller => (c.as === "service" ? service : me);

async function pkColumns(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select a.attname::text as name from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = 'public.gasifier_observations'::regclass and i.indisprimary order by array_position(i.indkey, a.attnum)`;
  return rows.map((r) => r.name);
}

const insert = (caller: Caller) => async (c: Ctx, rows: Row[], onConflict?: readonly string[]): Promise<Outcome> => {
  const r = await send<Row[]>(c.sql, caller, await insertStatement(c.sql, { table: "gasifier_observations", rows, ...(onConflict ? { onConflict } : {}) }));
  return { error: r.error?.code ?? null, returned: withoutUpdatedAt(r.data) };
};
const update = (caller: Caller) => async (c: Ctx, set: Row, id: string): Promise<Outcome> => {
  const r = await send<Row[]>(c.sql, caller, await updateStatement(c.sql, { table: "gasifier_observations", set, filters: [eq("observation_id", id)] }));
  return { error: r.error?.code ?? null, returned: withoutUpdatedAt(r.data) };
};
const asMe = { insert: (c: Ctx, rows: Row[], on?: readonly string[]) => insert(me)(c, rows, on), update: (c: Ctx, set: Row, id: string) => update(me)(c, set, id) };

/**
 * COPY into the table with psql (which prints COPY's row count), in a transaction as `caller` with
 * PostgREST's settings. Returns the count, or the SQLSTATE of the refusal.
 */
async function copyRows(c: Ctx, caller: Caller, rows: Row[]): Promise<Outcome> {
  const cols = ["observation_id", "submission_id", "site_id", "gasifier_code", "created_at", "updated_at"];
  const tsv = rows.map((r) => `${cols.map((k) => String(r[k])).join("\t")}\n`).join("");
  const psql = process.env.TEST_PG_BIN ? join(process.env.TEST_PG_BIN, "psql") : "psql";
  const res = await runProgram(psql, [c.url, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate",
    "-c", "begin",
    "-c", `select set_config('role', '${caller.role}', true), set_config('request.jwt.claims', '${JSON.stringify(caller.claims)}', true)`,
    "-c", `copy public.gasifier_observations (${cols.join(", ")}) from stdin`,
    "-c", "commit"], { input: tsv });
  if (res.status !== 0) return { error: /ERROR:\s+(\w{5})/.exec(res.stderr)?.[1] ?? `psql: ${res.stderr}`, returned: null };
  const n = /COPY (\d+)/.exec(res.stdout);
  if (!n) throw new Error(`psql printed no COPY count: ${res.stdout} ${res.stderr}`);
  return { error: null, returned: null, count: Number(n[1]) };
}

function writeCases(): WriteCase[] {
  const id = (n: string) => uid(`case ${n}`);
  const cases: WriteCase[] = [];
  for (const where of ["own", "shared"] as const) {
    const site = (f: Fixture) => f[where];
    const site2 = (f: Fixture) => (where === "own" ? f.own2 : f.shared2);
    const elsewhere = (f: Fixture) => (where === "own" ? f.shared : f.own);
    // in the swapped table, a row without program_id for a program with partitions of its own is
    // stored but not returned (the root's DEFAULT leaf it is routed to cannot hold it)
    const notReturned = (ids: string[]) => (where === "own" ? { swapped: { notReturned: ids } } : {});
    const k = (n: string) => id(`${where} ${n}`);
    cases.push(
      { name: `${where}: insert without program_id, RETURNING`, ids: [k("absent")], ...notReturned([k("absent")]),
        act: (c) => asMe.insert(c, [gasRow(k("absent"), site(c.f))]) },
      { name: `${where}: insert with program_id NULL sent`, ids: [k("null")], ...notReturned([k("null")]),
        act: (c) => asMe.insert(c, [gasRow(k("null"), site(c.f), { program_id: null })]) },
      { name: `${where}: insert with program_id`, ids: [k("with")],
        act: (c) => asMe.insert(c, [gasRow(k("with"), site(c.f), { program_id: site(c.f).program })]) },
      { name: `${where}: multi-row insert mixing rows with and without program_id`, ids: [k("mix1"), k("mix2"), k("mix3")],
        ...notReturned([k("mix1"), k("mix3")]),
        act: (c) => asMe.insert(c, [gasRow(k("mix1"), site(c.f)), gasRow(k("mix2"), site(c.f), { program_id: site(c.f).program }),
                                    gasRow(k("mix3"), site2(c.f), { notes: "second site" })]) },
      { name: `${where}: insert as service_role without program_id`, ids: [k("service")], as: "service", ...notReturned([k("service")]),
        act: (c) => insert(service)(c, [gasRow(k("service"), site(c.f))]) },
      { name: `${where}: upsert(rows, { onConflict: 'observation_id' }) of a new row without program_id`, ids: [k("upsert id")],
        // no partitioned table has a unique index on observation_id alone (docs/your-app.md)
        swapped: { error: "42P10" },
        act: (c) => asMe.insert(c, [gasRow(k("upsert id"), site(c.f))], ["observation_id"]) },
      { name: `${where}: upsert(rows) (on the primary key) of a new row without program_id`, ids: [k("upsert new")], ...notReturned([k("upsert new")]),
        act: async (c) => asMe.insert(c, [gasRow(k("upsert new"), site(c.f))], await pkColumns(c.sql)) },
      { name: `${where}: upsert(rows) (on the primary key) of an existing row without program_id`, ids: [k("upsert old")],
        // the row routed to the root's DEFAULT leaf is inserted again where its program's rows
        // are, as a plain insert: a duplicate there (ON CONFLICT does not reach it)
        ...(where === "own" ? { swapped: { error: "23505" } } : {}),
        setup: async (c) => { await asMe.insert(c, [gasRow(k("upsert old"), site(c.f))]); },
        act: async (c) => asMe.insert(c, [gasRow(k("upsert old"), site(c.f), { notes: "upserted" })], await pkColumns(c.sql)) },
      { name: `${where}: update setting program_id to NULL`, ids: [k("set null")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("set null"), site(c.f), { program_id: site(c.f).program })]); },
        act: (c) => asMe.update(c, { program_id: null, notes: "no program" }, k("set null")) },
      { name: `${where}: update of site_id (same program) on a row without program_id`, ids: [k("site same")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("site same"), site(c.f))]); },
        act: (c) => asMe.update(c, { site_id: site2(c.f).site }, k("site same")) },
      { name: `${where}: update of site_id (another program) on a row without program_id`, ids: [k("site other")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("site other"), site(c.f))]); },
        act: (c) => asMe.update(c, { site_id: elsewhere(c.f).site }, k("site other")) },
      { name: `${where}: update of site_id (another program) on a row with program_id`, ids: [k("site keyed")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("site keyed"), site(c.f), { program_id: site(c.f).program })]); },
        act: (c) => asMe.update(c, { site_id: elsewhere(c.f).site }, k("site keyed")) },
      { name: `${where}: update of another column on a row without program_id`, ids: [k("notes")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("notes"), site(c.f))]); },
        act: (c) => asMe.update(c, { notes: "edited", measure: 2.25 }, k("notes")) },
      { name: `${where}: update sending program_id on a row without it`, ids: [k("send program")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("send program"), site(c.f))]); },
        act: (c) => asMe.update(c, { program_id: site(c.f).program, notes: "program sent" }, k("send program")) },
      { name: `${where}: update of observation_id on a row without program_id`, ids: [k("renamed"), k("rename")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("rename"), site(c.f))]); },
        act: (c) => asMe.update(c, { observation_id: k("renamed") }, k("rename")) },
      { name: `${where}: delete of a row without program_id`, ids: [k("delete")],
        setup: async (c) => { await asMe.insert(c, [gasRow(k("delete"), site(c.f))]); },
        act: async (c) => {
          const r = await send<Row[]>(c.sql, me, deleteStatement({ table: "gasifier_observations", filters: [eq("observation_id", k("delete"))] }));
          return { error: r.error?.code ?? null, returned: withoutUpdatedAt(r.data) };
        } },
      { name: `${where}: COPY as service_role without program_id`, ids: [k("copy")], as: "service",
        act: (c) => copyRows(c, service, [gasRow(k("copy"), site(c.f))]), ...notReturned([k("copy")]) },
      { name: `${where}: COPY as a user (refused: RLS)`, ids: [k("copy user")],
        act: (c) => copyRows(c, me, [gasRow(k("copy user"), site(c.f))]) },
    );
  }
  cases.push(
    { name: "insert without program_id for a site of another company (refused: RLS)", ids: [id("theirs")],
      act: (c) => asMe.insert(c, [gasRow(id("theirs"), c.f.theirs)]) },
    { name: "insert without program_id for a site that does not exist (refused)", ids: [id("no site")],
      act: (c) => asMe.insert(c, [{ ...gasRow(id("no site"), c.f.shared), site_id: uid("no such site") }]) },
    { name: "insert without program_id and without site_id (refused)", ids: [id("null site")],
      act: (c) => asMe.insert(c, [{ ...gasRow(id("null site"), c.f.shared), site_id: null }]) },
    { name: "update of site_id to a site of another company on a row without program_id (refused: RLS)", ids: [id("move theirs")],
      setup: async (c) => { await asMe.insert(c, [gasRow(id("move theirs"), c.f.shared)]); },
      act: (c) => asMe.update(c, { site_id: c.f.theirs.site }, id("move theirs")) },
  );
  return cases;
}

interface Seen { outcome: Outcome; before: Row[]; after: Row[]; theirs: Row[] }

const byId = (a: Row, b: Row) => String(a.observation_id).localeCompare(String(b.observation_id));
/** The demo app's own trigger stamps updated_at with now() on every update: it differs between two databases and nothing else does. */
const withoutUpdatedAt = (rows: Row[] | null): Row[] | null => rows?.map(({ updated_at: _updatedAt, ...rest }) => rest) ?? null;

async function readAs(sql: Sql, caller: Caller, ids: string[]): Promise<Row[]> {
  const r = await send<Row[]>(sql, caller, readStatement({ table: "gasifier_observations", filters: [{ column: "observation_id", op: "in", value: ids }],
    order: [{ column: "observation_id", ascending: true }] }));
  if (r.error) throw new Error(`read back: ${r.error.code} ${r.error.message}`);
  return withoutUpdatedAt(r.data) ?? [];
}

describe("gasifier writes without program_id: before the swap, after it, after maintenance, after a rollback", () => {
  let legacy: FreshDb;
  let live: FreshDb;
  let f: Fixture;
  const cases = writeCases();
  const seen: Record<Db, Map<string, Seen>> = { legacy: new Map(), live: new Map() };
  /** the rows of each case the swapped table held before maintenance */
  let swappedRows = new Map<string, Row[]>();

  /** The legacy row as the swapped table holds it: a NULL program is the site's. */
  const placed = (r: Row): Row => (r.program_id === null ? { ...r, program_id: f.programOfSite.get(String(r.site_id)) } : r);
  const legacyRowsExpected = (c: WriteCase): Row[] => {
    const s = seen.legacy.get(c.name)!;
    return c.swapped?.error ? s.before : s.after;
  };

  async function runCase(db: Db, fresh: FreshDb, c: WriteCase): Promise<void> {
    const sql = fresh.sql;
    const ctx: Ctx = { db, sql, url: fresh.url, f };
    await c.setup?.(ctx);
    const before = await readAs(sql, me, c.ids);
    const outcome = await c.act(ctx);
    seen[db].set(c.name, { outcome, before, after: await readAs(sql, me, c.ids), theirs: await readAs(sql, other, c.ids) });
  }

  beforeAll(async () => {
    [legacy, live] = await Promise.all([
      freshDatabase("nullprog_legacy", { targetRowsPerLeaf: 100, minKeylessStatements: 10 }),
      freshDatabase("nullprog_live", { targetRowsPerLeaf: 100, minKeylessStatements: 10 }),
    ]);
    const asOf = new Date("2026-02-10T12:00:00Z");
    for (const db of [legacy, live]) {
      await loadSmallDemo(db.sql, { asOf });
      const [c1] = await db.sql<{ id: string }[]>`select company_id as id from public.companies where name = 'Demo Company 1'`;
      await db.sql`insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
                   values (${SMALL.program}, 'Small program', '2025-10-01', '2026-12-31', ${c1!.id})`;
      for (const i of [0, 1]) {
        await db.sql`insert into public.sites (site_id, program_id, name) values (${SMALL.sites[i]!}, ${SMALL.program}, ${`Small site ${i + 1}`})`;
        await db.sql`insert into public.submissions (submission_id, site_id, program_id) values (${SMALL.submissions[i]!}, ${SMALL.sites[i]!}, ${SMALL.program})`;
      }
      // Realtime subscribers of the table: the swap gives them the change feed
      await db.sql`alter publication supabase_realtime add table public.gasifier_observations`;
    }
    const [u] = await legacy.sql<{ me: string; me_email: string; other: string; other_email: string; company: string }[]>`
      select (select id from public.users u join public.companies c using (company_id) where c.name = 'Demo Company 1' order by email limit 1) as me,
             (select email from public.users u join public.companies c using (company_id) where c.name = 'Demo Company 1' order by email limit 1) as me_email,
             (select id from public.users u join public.companies c using (company_id) where c.name = 'Demo Company 2' order by email limit 1) as other,
             (select email from public.users u join public.companies c using (company_id) where c.name = 'Demo Company 2' order by email limit 1) as other_email,
             (select company_id from public.companies where name = 'Demo Company 1') as company`;
    me = userCaller(u!.me, u!.me_email);
    other = userCaller(u!.other, u!.other_email);
    const sites = await legacy.sql<{ name: string; site: string; program: string; submission: string }[]>`
      select s.name, s.site_id as site, s.program_id as program,
             (select b.submission_id from public.submissions b where b.site_id = s.site_id order by b.submission_id limit 1) as submission
      from public.sites s where s.name in ('Site 1-1-1', 'Site 1-1-2', 'Site 2-1-1', 'Small site 1', 'Small site 2')`;
    const pick = (name: string): Site => {
      const s = sites.find((x) => x.name === name);
      if (!s) throw new Error(`no site ${name}`);
      return { site: s.site, submission: s.submission, program: s.program };
    };
    const all = await legacy.sql<{ site: string; program: string }[]>`select site_id as site, program_id as program from public.sites`;
    f = { companyId: u!.company, own: pick("Site 1-1-1"), own2: pick("Site 1-1-2"), shared: pick("Small site 1"), shared2: pick("Small site 2"),
          theirs: pick("Site 2-1-1"), programOfSite: new Map(all.map((r) => [r.site, r.program])) };

    // before the migration: every write to the legacy table
    for (const c of cases) await runCase("legacy", legacy, c);
    // the live database migrates online and swaps; then the same writes
    await migrateOnline(live.sql, "gasifier", { batchSize: 100, swap: true });
    for (const c of cases) await runCase("live", live, c);
  });
  afterAll(async () => {
    await legacy?.drop();
    await live?.drop();
  });

  it("the swapped tree has a program with partitions of its own and one that shares the root's DEFAULT leaf", async () => {
    const [r] = await live.sql<{ own: number; shared: number; relkind: string }[]>`
      select (select count(*)::int from partition_mgmt.partition_registry where table_key = 'gasifier' and level = 'program' and not is_default and program_id = ${f.own.program}) as own,
             (select count(*)::int from partition_mgmt.partition_registry where table_key = 'gasifier' and level = 'program' and not is_default and program_id = ${f.shared.program}) as shared,
             (select relkind::text from pg_class where oid = 'public.gasifier_observations'::regclass) as relkind`;
    expect(r).toEqual({ own: 1, shared: 0, relkind: "p" });
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s: the same outcome and rows before and after the swap", (_name, c) => {
    const l = seen.legacy.get(c.name)!;
    const s = seen.live.get(c.name)!;
    // accepted or refused alike (the documented exceptions: the SQLSTATE the swapped table refuses with)
    expect(s.outcome.error).toBe(c.swapped?.error ?? l.outcome.error);
    if (s.outcome.error === null) {
      const skipped = new Set(c.swapped?.notReturned ?? []);
      expect((s.outcome.returned ?? []).slice().sort(byId))
        .toEqual((l.outcome.returned ?? []).filter((r) => !skipped.has(String(r.observation_id))).map(placed).sort(byId));
    }
    if (l.outcome.count !== undefined && s.outcome.error === null) {
      // COPY does not count a row it did not store itself, as RETURNING does not return it
      expect(l.outcome.count).toBe(1);
      expect(s.outcome.count).toBe(l.outcome.count! - (c.swapped?.notReturned?.length ?? 0));
    }
    // the rows read back at once by the same user: the legacy rows, with the site's program in place of a NULL
    expect(s.before).toEqual(l.before.map(placed));
    expect(s.after).toEqual(legacyRowsExpected(c).map(placed));
    // and the other company sees none of them, before and after
    expect(l.theirs).toEqual([]);
    expect(s.theirs).toEqual([]);
  });

  it("every shape the legacy table accepts is accepted after the swap, except ON CONFLICT (observation_id) and a re-upsert where the program has partitions of its own", () => {
    const acceptedBefore = cases.filter((c) => seen.legacy.get(c.name)!.outcome.error === null).map((c) => c.name);
    const refusedAfter = acceptedBefore.filter((n) => seen.live.get(n)!.outcome.error !== null);
    expect(acceptedBefore.length).toBeGreaterThan(30);
    expect(refusedAfter).toEqual([
      "own: upsert(rows, { onConflict: 'observation_id' }) of a new row without program_id",
      "own: upsert(rows) (on the primary key) of an existing row without program_id",
      "shared: upsert(rows, { onConflict: 'observation_id' }) of a new row without program_id",
    ]);
    // the refusals are the same on both sides
    const refused = cases.filter((c) => seen.legacy.get(c.name)!.outcome.error !== null)
      .map((c) => [c.name, seen.legacy.get(c.name)!.outcome.error, seen.live.get(c.name)!.outcome.error]);
    expect(refused).toEqual([
      ["own: COPY as a user (refused: RLS)", "0A000", "0A000"],
      ["shared: COPY as a user (refused: RLS)", "0A000", "0A000"],
      ["insert without program_id for a site of another company (refused: RLS)", "42501", "42501"],
      ["insert without program_id for a site that does not exist (refused)", "23503", "23503"],
      ["insert without program_id and without site_id (refused)", "23502", "23502"],
      ["update of site_id to a site of another company on a row without program_id (refused: RLS)", "42501", "42501"],
    ]);
  });

  it("get_observation_by_id finds every row written without program_id, as its writer", async () => {
    for (const c of cases) {
      for (const row of seen.live.get(c.name)!.after) {
        const r = await send<Row>(live.sql, me, await rpcStatement(live.sql, { fn: "get_observation_by_id",
          args: { p_table: "gasifier_observations", p_observation_id: String(row.observation_id) } }));
        expect(r.error).toBeNull();
        expect(withoutUpdatedAt(r.data ? [r.data] : null)?.[0]).toEqual(row);
      }
    }
  });

  it("the Realtime change feed has one INSERT per row inserted without program_id, with the site's program", async () => {
    const keyless = [uid("case own absent"), uid("case own null"), uid("case shared absent"), uid("case shared null"),
                     uid("case own mix1"), uid("case shared mix3")];
    const rows = await live.sql<{ id: string; n: number; program: string }[]>`
      select observation_id::text as id, count(*)::int as n, min(record ->> 'program_id') as program
      from public.gasifier_observations_changes where op = 'INSERT' and observation_id = any (${keyless}::uuid[]) group by 1`;
    expect(rows.map((r) => ({ ...r })).sort((a, b) => a.id.localeCompare(b.id))).toEqual(keyless.map((id) => {
      const row = cases.flatMap((c) => seen.live.get(c.name)!.after).find((r) => r.observation_id === id)!;
      return { id, n: 1, program: String(row.program_id) };
    }).sort((a, b) => a.id.localeCompare(b.id)));
  });

  it("after these writes the validation still finds gasifier_observations_old equal, its NULLs exactly the listed rows", async () => {
    const v = await live.sql<{ check_name: string; status: string; legacy_value: string }[]>`
      select check_name, status, legacy_value from partition_mgmt.post_migration_validation('gasifier')`;
    expect(v.filter((x) => x.status !== "ok")).toEqual([]);
    const listed = v.find((x) => x.check_name === "rows without program_id");
    expect(Number(listed?.legacy_value)).toBeGreaterThan(20);
  });

  it("npm run generate loads its data after the swap (rows without program_id included)", async () => {
    const opts = { ...SMALL_DEMO, seed: 77, companies: 1, programsPerCompany: 1, months: 2, asOf: new Date("2026-02-10T12:00:00Z") };
    const [counts] = await Promise.all([generateDemoData(live.sql, opts), generateDemoData(legacy.sql, opts)]);
    expect(counts.skipped).toBe(false);
    const [g] = await live.sql<{ n: number; listed: number }[]>`
      select count(*)::int as n, count(*) filter (where exists (select from partition_mgmt.rows_without_program w
                                                                 where w.table_key = 'gasifier' and w.observation_id = o.observation_id))::int as listed
      from public.gasifier_observations o join public.sites s using (site_id) join public.pilot_programs p on p.program_id = s.program_id
      where p.name = 'Program 1-1' and p.company_id = md5('77:company:1')::uuid`;
    const [l] = await legacy.sql<{ n: number; nulls: number }[]>`
      select count(*)::int as n, count(*) filter (where o.program_id is null)::int as nulls
      from public.gasifier_observations o join public.sites s using (site_id) join public.pilot_programs p on p.program_id = s.program_id
      where p.name = 'Program 1-1' and p.company_id = md5('77:company:1')::uuid`;
    expect(g!.n).toBe(l!.n);
    expect(l!.nulls).toBeGreaterThan(0);
    expect(g!.listed).toBe(l!.nulls);
  });

  it("after maintenance promotes the program that shared the root's DEFAULT leaf: the same rows, and a new row without program_id lands", async () => {
    swappedRows = new Map(cases.map((c) => [c.name, seen.live.get(c.name)!.after]));
    // the small program grows past the target (100 rows): a third of them without program_id
    for (const db of [legacy, live]) {
      await db.sql`insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code, created_at, updated_at)
                   select md5('grow' || g)::uuid, ${f.shared.submission}, ${f.shared.site}, case when g % 3 = 0 then null else ${f.shared.program}::uuid end,
                          'grow-' || g, ${T}::timestamptz + make_interval(mins => g), ${T}::timestamptz
                   from generate_series(1, 150) g`;
    }
    for (let run = 1; ; run++) {
      await runMaintenance(live.sql, "gasifier");
      const [p] = await live.sql<{ n: number }[]>`
        select count(*)::int as n from partition_mgmt.partition_registry where table_key = 'gasifier' and level = 'program' and not is_default and program_id = ${f.shared.program}`;
      if (p!.n === 1) break;
      if (run === 5) throw new Error("maintenance did not promote the small program in 5 runs");
      // a run promotes generate's program first; the DEFAULT leaf that promotion leaves behind has
      // no statistics until autovacuum analyzes it, which the test does the way autovacuum would
      await live.sql`analyze partitions.gas_default`;
    }
    // every row of the program left the root's DEFAULT leaf
    const [left] = await live.sql<{ n: number }[]>`select count(*)::int as n from partitions.gas_default where program_id = ${f.shared.program}`;
    expect(left!.n).toBe(0);
    for (const c of cases) expect(await readAs(live.sql, me, c.ids)).toEqual(swappedRows.get(c.name));
    expect((await live.sql`select * from partition_mgmt.post_migration_validation('gasifier') where status <> 'ok'`)).toEqual([]);

    // the program has partitions of its own now: a row without program_id is stored (not returned)
    const after = uid("after promotion");
    const l = await asMe.insert({ db: "legacy", sql: legacy.sql, url: legacy.url, f }, [gasRow(after, f.shared)]);
    const s = await asMe.insert({ db: "live", sql: live.sql, url: live.url, f }, [gasRow(after, f.shared)]);
    expect(l).toMatchObject({ error: null, returned: [{ observation_id: after, program_id: null }] });
    expect(s).toEqual({ error: null, returned: [] });
    expect(await readAs(live.sql, me, [after])).toEqual((await readAs(legacy.sql, me, [after])).map(placed));
  });

  it("after a rollback the legacy table holds what the legacy database holds: every row, the NULLs the app wrote included", async () => {
    await rollback(live.sql, "gasifier");
    const [k] = await live.sql<{ relkind: string }[]>`select relkind::text from pg_class where oid = 'public.gasifier_observations'::regclass`;
    expect(k!.relkind).toBe("r");
    // per write: what the legacy table holds after it (refused after the swap: what it held before)
    for (const c of cases) expect(await readAs(live.sql, me, c.ids)).toEqual(legacyRowsExpected(c));
    // the whole table, but for the writes the swapped table refused
    const refusedIds = cases.filter((c) => c.swapped?.error).flatMap((c) => c.ids);
    const digest = async (sql: Sql) => {
      const [d] = await sql<{ rows: number; nulls: number; md5: string }[]>`
        select count(*)::int as rows, count(*) filter (where program_id is null)::int as nulls,
               md5(string_agg((to_jsonb(o) - 'updated_at')::text, '|' order by observation_id)) as md5
        from public.gasifier_observations o where not (observation_id = any (${refusedIds}::uuid[]))`;
      return d!;
    };
    const [a, b] = await Promise.all([digest(legacy.sql), digest(live.sql)]);
    expect(a.nulls).toBeGreaterThan(50);
    expect(b).toEqual(a);
  });
});
