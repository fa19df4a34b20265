// The runbook of docs/deploying.md, run in its order against a local project: every step
// that needs no hosted project (link, functions deploy and secrets set do), with the commands the
// runbook gives. The project: a cluster of its own (pg_cron schedules jobs in its `postgres`
// database only, as on hosted) with the demo app pushed from the user's repo as the user's own
// history (a copy of demo-app/ with a config.toml and a function of their own) and its data; the
// functions are served from the user's repo after the install, as they would be deployed.
// Covers, in order: 1 install (dry run, then for real); 2 the backup; 3 db push --dry-run lists
// exactly the installed files, db push applies them; 5 three cron jobs, health() reports the setup
// steps pending; 6 npm run admin -- setup until nothing is pending; 7 precheck and plan; 8 a small
// table migrated through the function (step --swap), a large one with the psql runner (twice: it
// stops before the swap); 9 status; 10 finalize one, roll the other back; 11 the app's types.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Sql } from "postgres";
import { connect } from "../helpers/db.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterFor, destroyCluster, ensureCluster, freeLocalPort, REPO_ROOT, type Cluster } from "../../scripts/lib/cluster.ts";
import { DEMO_APP_DIR } from "../../scripts/lib/demo-app.ts";
import { generateDatabaseTypes } from "../../scripts/lib/database-types.ts";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { makeApiKeys } from "../../scripts/lib/jwt-keys.ts";
import { pushMigrations } from "../../scripts/lib/push-migrations.ts";
import { LOCAL_JWT_SECRET, testPort } from "../../scripts/lib/stack.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { run, tempDir, TSX } from "../helpers/processes.ts";

// its own test ports, outside the ephemeral range (scripts/lib/stack.ts)
const PORT_FROM = testPort("runbook");

describe("the hosted runbook, step by step, on a local project", () => {
  let cluster: Cluster;
  let sql: Sql;
  let repo: string;
  let fn: FunctionsServer;
  let env: Record<string, string>;
  const npm = async (args: string[]) => {
    const r = await run("npm", ["run", "--silent", ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
    return r.stdout;
  };
  const psqlScript = async (script: string) => {
    const child = run(join(cluster.pgBin, "psql"), [cluster.url(), "-X", "-v", "ON_ERROR_STOP=1", "-f", "-"], { maxBuffer: 16 * 1024 * 1024 });
    child.child.stdin?.end(script);
    return child;
  };

  beforeAll(async () => {
    const port = await freeLocalPort(PORT_FROM, 10);
    cluster = await ensureCluster({ name: `runbook-${port}`, port, throwaway: true, fresh: true, pgBin: process.env.TEST_PG_BIN || undefined });
    // the user's repo: the demo app's history, their own config.toml and function
    repo = tempDir("runbook-app-");
    cpSync(join(DEMO_APP_DIR, "supabase", "migrations"), join(repo, "supabase", "migrations"), { recursive: true });
    writeFileSync(join(repo, "supabase", "config.toml"), `project_id = "field-app"\n\n[db]\nmajor_version = 15\n`);
    mkdirSync(join(repo, "supabase", "functions", "hello"), { recursive: true });
    writeFileSync(join(repo, "supabase", "functions", "hello", "index.ts"), `Deno.serve(() => new Response("hello"));\n`);
    expect((await pushMigrations(cluster.url(), { workdir: repo })).applied).toHaveLength(3);
    sql = connect(cluster.url(), 2);
    await loadSmallDemo(sql);
  }, 240_000);
  afterAll(async () => {
    await fn?.stop();
    await sql?.end({ timeout: 5 }).catch(() => {});
    if (cluster) await destroyCluster(clusterFor({ name: cluster.name, port: cluster.port, pgBin: cluster.pgBin }));
    if (repo) rmSync(repo, { recursive: true, force: true });
  });

  it("runs from the install to the types", async () => {
    // 1. install: the dry run writes nothing, then the install
    const dry = await npm(["install-bundle", "--", "--dry-run", repo]);
    expect(dry).toMatch(/partitioning_company_context\.sql/);
    expect(existsSync(join(repo, "supabase", "partitioning-bundle.json"))).toBe(false);
    await npm(["install-bundle", "--", repo]);
    expect(existsSync(join(repo, "supabase", "partitioning-bundle.json"))).toBe(true);

    // 2. the backup of both tables
    const b = await run(process.execPath, [TSX, "scripts/backup.ts", cluster.url()], { cwd: REPO_ROOT });
    const dump = /backup written to (\S+)/.exec(b.stdout)?.[1];
    expect(dump && existsSync(dump)).toBe(true);

    // 3. the push: the dry run lists exactly the installed files, then they are applied
    const record = JSON.parse(readFileSync(join(repo, "supabase", "partitioning-bundle.json"), "utf8")) as { migrations: { installed: string }[] };
    const installed = record.migrations.map((m) => m.installed).sort();
    expect(installed.length).toBeGreaterThan(15);
    expect((await pushMigrations(cluster.url(), { workdir: repo, dryRun: true })).wouldApply).toEqual(installed);
    expect((await pushMigrations(cluster.url(), { workdir: repo })).applied).toEqual(installed);

    // 4. the functions, served from the user's repo as deployed (hosted: supabase functions deploy)
    const keys = await makeApiKeys(LOCAL_JWT_SECRET);
    fn = await startFunctionsServer({
      port: 0, functionsDir: join(repo, "supabase", "functions"), configTomlPath: join(repo, "supabase", "config.toml"),
      env: { SUPABASE_URL: "http://127.0.0.1", SUPABASE_DB_URL: cluster.url(), SUPABASE_ANON_KEY: keys.anonKey, SUPABASE_SERVICE_ROLE_KEY: keys.serviceRoleKey },
      jwtSecret: LOCAL_JWT_SECRET, log: () => {},
    });
    expect(fn.functions.sort()).toEqual(["get-observations-optimized", "health", "hello", "partition-admin"]);
    env = { SUPABASE_URL: fn.url, SUPABASE_SERVICE_ROLE_KEY: keys.serviceRoleKey };

    // 5. checks: the three jobs, and health() says what the setup steps still have to do
    const jobs = await sql<{ jobname: string }[]>`select jobname from cron.job where jobname like 'partition-%' order by jobname`;
    expect(jobs.map((j) => j.jobname)).toEqual(["partition-cron-history-purge", "partition-maintenance-nightly", "partition-statistics-weekly"]);
    const [pending] = await sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.health() where finding = 'setup pending'`;
    expect(pending?.n).toBe(10);

    // 6. the setup steps through the function
    const setup = await npm(["admin", "--", "setup"]);
    expect(setup).toMatch(/petri:company_id_index\s+statement: ran create index concurrently/);
    expect(setup).toMatch(/setup: nothing pending/);
    expect(await sql`select 1 from partition_mgmt.setup_tasks() where not done`).toHaveLength(0);

    // 7. the pre-check and the plan
    expect(await npm(["admin", "--", "precheck"])).not.toMatch(/\bblocker\b/);
    expect(await npm(["admin", "--", "plan", "--table", "petri"])).toMatch(/ready: nothing was changed \(dry run\)/);

    // 8. gasifier through the function, petri with the psql runner (it stops before the swap)
    expect(await npm(["admin", "--", "step", "--table", "gasifier", "--swap", "--yes"])).toMatch(/gasifier: swap -> phase swapped/);
    const runner = "select partition_mgmt.migration_runner('petri_observations', p_swap => true) \\gexec\n";
    const first = await psqlScript(runner);
    expect(first.stderr).toMatch(/petri: validated; run this statement again/);
    const second = await psqlScript(runner);
    expect(second.stderr).toMatch(/petri: swapped/);
    const kinds = await sql<{ relname: string; relkind: string }[]>`
      select relname::text, relkind::text from pg_class where oid in ('public.petri_observations'::regclass, 'public.gasifier_observations'::regclass) order by 1`;
    expect(kinds).toEqual([{ relname: "gasifier_observations", relkind: "p" }, { relname: "petri_observations", relkind: "p" }]);

    // 9. monitor
    expect(await npm(["admin", "--", "status"])).toMatch(/swapped/);

    // 10. finalize petri, roll gasifier back
    expect(await npm(["admin", "--", "finalize", "--table", "petri", "--yes"])).toMatch(/finalized/);
    expect(await npm(["admin", "--", "rollback", "--table", "gasifier", "--yes"])).toMatch(/rolled back/);
    const after = await sql<{ relname: string; relkind: string }[]>`
      select relname::text, relkind::text from pg_class where relname in ('petri_observations', 'petri_observations_old', 'gasifier_observations', 'gasifier_observations_old') and relnamespace = 'public'::regnamespace order by 1`;
    expect(after).toEqual([{ relname: "gasifier_observations", relkind: "r" }, { relname: "petri_observations", relkind: "p" }]);

    // 11. the app's types (hosted: supabase gen types typescript --linked)
    const types = await generateDatabaseTypes(cluster.url());
    expect(types).toContain('"petri_observations": {');
    expect(types).not.toMatch(/"partitions"|petri_p_/);
  }, 600_000);
});
