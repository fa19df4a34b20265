// supabase db push with the real CLI onto the demo app (a customer's project): every file recorded,
// a second push applies nothing; a policy of the project with the plan's name is kept.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushMigrations } from "../../scripts/lib/push-migrations.ts";
import { migrationFiles } from "../../scripts/lib/released-migrations.ts";
import { runSetupAt } from "../../scripts/lib/deploy.ts";
import { connect, demoAppDatabase, dropDatabase } from "../helpers/db.ts";

const DB = `t_push_${process.pid}`;

describe("supabase db push", () => {
  let url: string;
  beforeAll(async () => {
    // an empty database made from template1, which carries the bootstrap only, then the app
    ({ url } = await demoAppDatabase(DB));
  });
  afterAll(() => dropDatabase(DB));

  it("applies every migration once and nothing the second time", async () => {
    const files = migrationFiles();
    expect(files.length).toBeGreaterThan(0);

    const first = await pushMigrations(url);
    expect(first.applied).toEqual(files);

    const second = await pushMigrations(url);
    expect(second.applied).toEqual([]);
    expect(second.output).toMatch(/up to date/i);

    const sql = connect(url);
    try {
      const rows = await sql<{ version: string; name: string }[]>`
        select version, name from supabase_migrations.schema_migrations order by version`;
      expect(rows.map((r) => `${r.version}_${r.name}.sql`)).toEqual(files);
      const [who] = await sql<{ su: boolean }[]>`select rolsuper as su from pg_roles where rolname = current_user`;
      expect(who?.su).toBe(false);
    } finally {
      await sql.end();
    }
  });
});

describe("supabase db push onto a project that has a policy of the same name", () => {
  const DB2 = `t_push_policy_${process.pid}`;
  afterAll(() => dropDatabase(DB2));

  it("keeps the project's policy, reports it in private.deploy_report and in the pre-check", async () => {
    const { url } = await demoAppDatabase(DB2);
    const app = connect(url);
    try {
      // the app as it was: its tables, and the policy the plan's Phase 4 writes
      await app.unsafe(`alter table public.petri_observations add column company_id uuid`);
      await app.unsafe(`create policy company_isolation_petri on public.petri_observations for all to authenticated
                        using (company_id in (select company_id from public.users where id = auth.uid()))`);
      await pushMigrations(url);
      await runSetupAt(url);
      const [policy] = await app<{ qual: string }[]>`
        select pg_get_expr(polqual, polrelid) as qual from pg_policy where polname = 'company_isolation_petri'`;
      expect(policy?.qual).toMatch(/SELECT users.company_id\s+FROM users/);   // the project's, not replaced
      const report = await app<{ object: string; action: string; detail: string | null }[]>`
        select object, action, detail from private.deploy_report order by object`;
      expect(report.find((r) => r.object === "policy company_isolation_petri on public.petri_observations")).toMatchObject({
        action: "kept (differs)", detail: expect.stringMatching(/yours: permissive using .*; the bundle's: restrictive using .*user_company_ids/s),
      });
      // the other observation table gets the bundle's, restrictive (RLS was on with the app's own policies)
      expect(report.find((r) => r.object === "policy company_isolation_gasifier on public.gasifier_observations")).toMatchObject({
        action: "added (restrictive)",
      });
      const [row] = await app<{ status: string; detail: string }[]>`
        select status, detail from partition_mgmt.pre_migration_check('petri') where check_name like 'policy company_isolation_petri%'`;
      expect(row).toMatchObject({ status: "warning", detail: expect.stringMatching(/kept as the project had it/) });
    } finally {
      await app.end();
    }
  });
});

describe("supabase db push onto a database that has the withdrawn release 0.1.0", () => {
  const DB3 = `t_push_010_${process.pid}`;
  afterAll(() => dropDatabase(DB3));

  it("stops at the first migration, names the release and what to do, and changes nothing", async () => {
    const { url } = await demoAppDatabase(DB3);
    const app = connect(url);
    try {
      // what 0.1.0's first migration left (its company_id back-fill function)
      await app.unsafe(`create schema private; create function private.backfill_company_id() returns void language sql as 'select'`);
      await expect(pushMigrations(url)).rejects.toThrow(/release 0\.1\.0 of the partitioning bundle .* cannot upgrade in place; nothing was changed/s);
      const [r] = await app<{ column: boolean; history: string | null }[]>`
        select exists (select from pg_attribute where attrelid = 'public.petri_observations'::regclass and attname = 'company_id') as column,
               to_regclass('supabase_migrations.schema_migrations')::text as history`;
      expect(r?.column).toBe(false);
      if (r?.history) expect(await app`select version from supabase_migrations.schema_migrations`).toHaveLength(0);
    } finally {
      await app.end();
    }
  });
});
