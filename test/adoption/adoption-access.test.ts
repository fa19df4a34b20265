// The push never widens access and never narrows it silently: what a company member, a company
// admin, a user of another company and anon may read and write on every table the bundle touches
// is the same before the push, after it, after the setup steps, after the online migration and
// swap, after a rollback, and after a new migration and its finalize.
// The project is the demo app (demo-app/supabase/migrations): the customer's own policies on every
// table (members read their company's programs, only admins change or delete them; a user sees
// only their own row in users; a user deletes only the observations they wrote), written before
// the bundle existed. Every call is sent as PostgREST sends it (test/helpers/postgrest.ts) and
// rolled back, so each stage probes the same data: select (which rows), insert (into the caller's
// company and into the other one), update and delete (of rows of both companies, and of a row the
// member wrote): rows returned or the error's SQLSTATE.
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushMigrationsAsync } from "../../scripts/lib/push-migrations.ts";
import { runSetup } from "../../scripts/lib/setup-driver.ts";
import { finalize, migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { catalogSnapshot, diffCatalog, unreported, type CatalogFact } from "../helpers/catalog.ts";
import { connect, demoAppDatabase, dropDatabase } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import {
  deleteStatement, insertStatement, readStatement, send, updateStatement, userCaller, type Caller, type Row,
} from "../helpers/postgrest.ts";

interface Table { name: string; key: string; column: string; value: string }
const TABLES: Table[] = [
  { name: "companies", key: "company_id", column: "name", value: "renamed" },
  { name: "users", key: "id", column: "full_name", value: "renamed" },
  { name: "pilot_programs", key: "program_id", column: "description", value: "changed" },
  { name: "sites", key: "site_id", column: "name", value: "renamed" },
  { name: "submissions", key: "submission_id", column: "notes", value: "changed" },
  { name: "petri_observations", key: "observation_id", column: "notes", value: "changed" },
  { name: "gasifier_observations", key: "observation_id", column: "notes", value: "changed" },
];

interface World {
  callers: Record<"member" | "admin" | "other" | "anon", Caller>;
  /** per table: two rows of company 1 (for observations: one the member wrote) and one of company 2 */
  samples: Record<string, string[]>;
  /** per table: a row to insert into company 1 and one into company 2, as the app would send them */
  inserts: Record<string, [Row, Row]>;
}

const ANON: Caller = { role: "anon", claims: { role: "anon", iss: "supabase" } };
/** The app's own relations (what the catalog snapshot compares; the bundle's new objects are its own) */
const APP_OBJECTS = { schemas: ["public"], tables: [...TABLES.map((t) => `public.${t.name}`), "public.petri_site_daily"] };

async function world(sql: Sql): Promise<World> {
  const [c] = await sql<{ c1: string; c2: string; member: string; admin: string; other: string }[]>`
    select (select company_id from public.companies where name = 'Demo Company 1') as c1,
           (select company_id from public.companies where name = 'Demo Company 2') as c2,
           (select u.id from public.users u join public.companies k using (company_id) where k.name = 'Demo Company 1' and not u.is_company_admin) as member,
           (select u.id from public.users u join public.companies k using (company_id) where k.name = 'Demo Company 1' and u.is_company_admin) as admin,
           (select u.id from public.users u join public.companies k using (company_id) where k.name = 'Demo Company 2' and not u.is_company_admin) as other`;
  const { c1, c2, member, admin, other } = c!;
  const pick = async (table: string, key: string, company: string, n: number, where = "true") =>
    (await sql.unsafe<{ id: string }[]>(
      `select t.${key}::text as id from public.${table} t where ${where} and ` +
      (table === "companies" ? `t.company_id = $1`
        : table === "users" || table === "pilot_programs" || table === "submissions" ? `t.company_id = $1`
        : table === "sites" ? `t.program_id in (select program_id from public.pilot_programs where company_id = $1)`
        : `coalesce(t.program_id, (select s.program_id from public.sites s where s.site_id = t.site_id)) in (select program_id from public.pilot_programs where company_id = $1)`) +
      ` order by t.${key} limit ${n}`, [company])).map((r) => r.id);
  const samples: Record<string, string[]> = {};
  for (const t of TABLES) samples[t.name] = [...await pick(t.name, t.key, c1, 2), ...await pick(t.name, t.key, c2, 1)];
  // the member wrote the first of their company's observations
  for (const t of ["petri_observations", "gasifier_observations"]) {
    await sql.unsafe(`update public.${t} set created_by = $1 where observation_id = $2`, [member, samples[t]![0]!]);
  }
  const keysOf = async (company: string) => {
    const [k] = await sql<{ program_id: string; site_id: string; submission_id: string }[]>`
      select p.program_id, s.site_id, b.submission_id from public.pilot_programs p join public.sites s using (program_id)
      join public.submissions b on b.site_id = s.site_id where p.company_id = ${company} order by p.program_id, s.site_id, b.submission_id limit 1`;
    return k!;
  };
  const [k1, k2] = [await keysOf(c1), await keysOf(c2)];
  const both = (row: (k: typeof k1, company: string) => Row): [Row, Row] => [row(k1, c1), row(k2, c2)];
  const inserts: Record<string, [Row, Row]> = {
    companies: both((_, co) => ({ name: `New Co of ${co}` })),
    users: [{ id: member, email: "dup@x" }, { id: other, email: "dup@y" }],
    pilot_programs: both((_, co) => ({ name: "New program", start_date: "2026-01-01", end_date: "2026-12-31", company_id: co })),
    sites: both((k) => ({ program_id: k.program_id, name: "New site" })),
    submissions: both((k, co) => ({ site_id: k.site_id, program_id: k.program_id, company_id: co })),
    petri_observations: both((k) => ({ ...k, petri_code: "NEW" })),
    gasifier_observations: both((k) => ({ ...k, gasifier_code: "NEW" })),
  };
  const user = (id: string) => userCaller(id, `${id}@demo.local`);
  return { callers: { member: user(member), admin: user(admin), other: user(other), anon: ANON }, samples, inserts };
}

type Outcome = string;
const outcomeOf = (r: { data: unknown; error: { code: string } | null }, key: string): Outcome =>
  r.error ? `error ${r.error.code}` : `rows ${(r.data as Row[]).map((x) => String(x[key])).sort().join(",") || "-"}`;

/** What every caller may do on every table, each call rolled back. */
async function accessMatrix(sql: Sql, w: World): Promise<Record<string, Outcome>> {
  const out: Record<string, Outcome> = {};
  for (const t of TABLES) {
    const ids = w.samples[t.name]!;
    const calls = {
      select: readStatement({ table: t.name, filters: [{ column: t.key, op: "in", value: ids }], order: [{ column: t.key, ascending: true }] }),
      "select all": readStatement({ table: t.name, order: [{ column: t.key, ascending: true }] }),
      "insert into company 1": await insertStatement(sql, { table: t.name, rows: [w.inserts[t.name]![0]] }),
      "insert into company 2": await insertStatement(sql, { table: t.name, rows: [w.inserts[t.name]![1]] }),
      update: await updateStatement(sql, { table: t.name, set: { [t.column]: t.value }, filters: [{ column: t.key, op: "in", value: ids }] }),
      delete: deleteStatement({ table: t.name, filters: [{ column: t.key, op: "in", value: ids }] }),
    };
    for (const [who, caller] of Object.entries(w.callers)) {
      for (const [what, call] of Object.entries(calls)) {
        const r = await send<Row[]>(sql, caller, call, { rollback: true });
        // inserted rows carry new ids: whether one came back is the outcome
        out[`${t.name} ${what} as ${who}`] = what.startsWith("insert") && !r.error ? `inserted ${(r.data ?? []).length}`
          : what === "select all" && !r.error ? `rows ${(r.data ?? []).length}` : outcomeOf(r, t.key);
      }
    }
  }
  return out;
}

describe("what each caller may do, before the push and after each step of the bundle", () => {
  const DB = `t_adopt_access_${process.pid}`;
  let url: string;
  let sql: Sql;
  let w: World;
  let before: Record<string, Outcome>;
  let catalogBefore: CatalogFact[];

  beforeAll(async () => {
    ({ url } = await demoAppDatabase(DB));
    sql = connect(url, 2);
    await loadSmallDemo(sql, { petriPerSiteMonth: 20, gasifierPerSiteMonth: 10 });
    w = await world(sql);
    before = await accessMatrix(sql, w);
    catalogBefore = await catalogSnapshot(sql, APP_OBJECTS);
  }, 180_000);
  afterAll(async () => {
    await sql?.end({ timeout: 5 });
    await dropDatabase(DB);
  });

  it("the app's own policies answer what the issue says they do (the matrix is not empty)", () => {
    expect(Object.keys(before)).toHaveLength(TABLES.length * 6 * 4);
    const [c1a, c1b, c2] = w.samples.petri_observations!;
    expect(before["petri_observations select as member"]).toBe(`rows ${[c1a, c1b].sort().join(",")}`);
    expect(before["petri_observations select as other"]).toBe(`rows ${c2}`);
    expect(before["petri_observations delete as member"]).toBe(`rows ${c1a}`);   // only what they wrote
    expect(before["petri_observations insert into company 2 as member"]).toBe("error 42501");
    expect(before["pilot_programs update as member"]).toBe("rows -");            // admins only
    expect(before["pilot_programs update as admin"]).toMatch(/^rows [0-9a-f-]+,[0-9a-f-]+$/);
    expect(before["users select all as member"]).toBe("rows 1");                 // their own row only
    expect(before["petri_observations select all as anon"]).toBe("rows 0");
  });

  it("is the same after the push, after the setup steps, after the swap, the rollback and a finalize", async () => {
    const push = await pushMigrationsAsync(url);
    expect(push.status, push.output).toBe(0);
    expect(await accessMatrix(sql, w)).toEqual(before);

    await runSetup(sql);
    const [iso] = await sql<{ n: number }[]>`select count(*)::int as n from pg_policy where polname like 'company_isolation_%' and not polpermissive`;
    expect(iso?.n).toBe(2);
    expect(await accessMatrix(sql, w)).toEqual(before);

    await sql`update partition_mgmt.managed_tables set target_rows_per_leaf = 100, min_keyless_statements = 10`;
    for (const t of ["petri", "gasifier"]) await migrateOnline(sql, t, { batchSize: 500, swap: true });
    const [kind] = await sql<{ k: string }[]>`select relkind::text as k from pg_class where oid = 'public.petri_observations'::regclass`;
    expect(kind?.k).toBe("p");
    expect(await accessMatrix(sql, w)).toEqual(before);

    for (const t of ["petri", "gasifier"]) await rollback(sql, t);
    expect(await accessMatrix(sql, w)).toEqual(before);
    // the app's own objects after push -> setup -> migrate -> swap -> rollback: what changed since
    // before the push is exactly what private.deploy_report lists
    const changed = diffCatalog(catalogBefore, await catalogSnapshot(sql, APP_OBJECTS));
    const reported = (await sql<{ object: string }[]>`select object from private.deploy_report`).map((r) => r.object);
    expect(changed.map((c) => c.object).sort()).toEqual([
      "policy company_isolation_gasifier on public.gasifier_observations", "policy company_isolation_petri on public.petri_observations",
      "trigger metrics_changed_delete on public.petri_observations", "trigger metrics_changed_insert on public.petri_observations",
      "trigger metrics_changed_update on public.petri_observations",
      "trigger partition_mgmt_create_partitions on public.pilot_programs", "trigger partition_mgmt_create_partitions on public.sites",
      "trigger set_company_id_from_program on public.gasifier_observations", "trigger set_company_id_from_program on public.petri_observations"]);
    expect(unreported(changed, reported)).toEqual([]);

    for (const t of ["petri", "gasifier"]) {
      await migrateOnline(sql, t, { batchSize: 500, swap: true });
      await finalize(sql, t);
    }
    const [gone] = await sql<{ n: number }[]>`select count(*)::int as n from pg_class where relname in ('petri_observations_old', 'gasifier_observations_old')`;
    expect(gone?.n).toBe(0);
    expect(await accessMatrix(sql, w)).toEqual(before);
  }, 600_000);
});

describe("a project whose tables have RLS off", () => {
  const DB = `t_adopt_norls_${process.pid}`;
  let url: string;
  let sql: Sql;
  let w: World;
  let before: Record<string, Outcome>;

  beforeAll(async () => {
    ({ url } = await demoAppDatabase(DB));
    sql = connect(url, 2);
    // the same app without its policies and with RLS off: the grants decide
    for (const t of TABLES) {
      for (const p of await sql<{ polname: string }[]>`select polname from pg_policy where polrelid = ${`public.${t.name}`}::regclass`) {
        await sql.unsafe(`drop policy "${p.polname}" on public.${t.name}`);
      }
      await sql.unsafe(`alter table public.${t.name} disable row level security`);
    }
    await loadSmallDemo(sql, { petriPerSiteMonth: 20, gasifierPerSiteMonth: 10 });
    w = await world(sql);
    before = await accessMatrix(sql, w);
  }, 180_000);
  afterAll(async () => {
    await sql?.end({ timeout: 5 });
    await dropDatabase(DB);
  });

  it("the push changes no answer; the pre-check says what the setup step will change and how to opt in elsewhere", async () => {
    expect(before["petri_observations select all as anon"]).not.toBe("rows 0");
    const push = await pushMigrationsAsync(url);
    expect(push.status, push.output).toBe(0);
    expect(await accessMatrix(sql, w)).toEqual(before);
    const checks = await sql<{ table_key: string; check_name: string; status: string; detail: string }[]>`select * from partition_mgmt.pre_migration_check()`;
    expect(checks.find((c) => c.check_name === "setup step petri:company_isolation")?.detail)
      .toMatch(/RLS is OFF on public\.petri_observations: enables it with company_isolation_petri .* anon NOTHING/);
    const sites = checks.find((c) => c.table_key === "app" && c.check_name === "access of public.sites");
    expect(sites).toMatchObject({ status: "warning" });
    expect(sites?.detail).toMatch(/RLS is OFF: anon and authenticated read and write every row .* Opt in: alter table public\.sites enable row level security; create policy company_isolation_sites on public\.sites for all to authenticated using \(program_id in/);
    const users = checks.find((c) => c.check_name === "access of public.users");
    expect(users?.detail).toMatch(/authenticated may UPDATE that column/);
  });

  it("the setup steps enable RLS on the observation tables only, as reported: company members their rows, anon nothing", async () => {
    await runSetup(sql);
    const after = await accessMatrix(sql, w);
    const observation = (k: string) => k.startsWith("petri_observations ") || k.startsWith("gasifier_observations ");
    // every other table answers as before
    expect(Object.fromEntries(Object.entries(after).filter(([k]) => !observation(k))))
      .toEqual(Object.fromEntries(Object.entries(before).filter(([k]) => !observation(k))));
    // the observation tables: what the report said
    const [c1a, c1b, c2] = w.samples.petri_observations!;
    expect(after["petri_observations select as member"]).toBe(`rows ${[c1a, c1b].sort().join(",")}`);
    expect(after["petri_observations select as other"]).toBe(`rows ${c2}`);
    expect(after["petri_observations select all as anon"]).toBe("rows 0");
    expect(after["petri_observations insert into company 2 as member"]).toBe("error 42501");
    const [report] = await sql<{ action: string; detail: string }[]>`
      select action, detail from private.deploy_report where object = 'policy company_isolation_petri on public.petri_observations'`;
    expect(report).toMatchObject({ action: "RLS enabled, added (permissive)", detail: expect.stringMatching(/anon nothing/) });
  });
});
