// The edge functions apply the caller's role settings the way PostgREST does (hosted: anon 3 s,
// authenticated 8 s statement_timeout): `set local role` alone would not, and a heavy request would
// run unbounded. Here, in a database of its own, the authenticated role's statement_timeout is 1 s
// (`alter role … in database … set`) and a restrictive RLS policy makes every row cost 20 ms: a
// request for 200 rows must answer 503 query_timeout after about a second, not after four; both
// with the function on the direct connection and through the transaction pooler (DB_POOLER_URL),
// where nothing but the request's own transaction can carry the setting.
// partition-admin runs as the service role, which has no timeout of its own on hosted Supabase: it
// bounds every action by PARTITION_ADMIN_STATEMENT_TIMEOUT (under the platform's 150 s request
// limit), answers 503 retry_later with what to do instead, and audits the call.
import { randomUUID } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { connect, freshDatabase, withDatabase, type FreshDb } from "../helpers/db.ts";
import { requireEnv, testEnv } from "../helpers/env.ts";
import { poolerAdminConsole } from "../helpers/pooler.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";

describe.each(["direct", "pooler"] as const)("statement timeouts like PostgREST (%s)", (connection) => {
  let db: FreshDb;
  let server: FunctionsServer;
  const company = randomUUID();
  const user = randomUUID();
  const program = randomUUID();
  const site = randomUUID();
  const submission = randomUUID();

  beforeAll(async () => {
    db = await freshDatabase("edge_timeouts");
    await db.sql`insert into public.companies (company_id, name) values (${company}, 'Slow Co')`;
    await db.sql`insert into auth.users (id, aud, role, email) values (${user}, 'authenticated', 'authenticated', 'slow@example.com')`;
    await db.sql`insert into public.users (id, email, company_id) values (${user}, 'slow@example.com', ${company})`;
    await db.sql`insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
                 values (${program}, 'slow', current_date - 30, current_date + 30, ${company})`;
    await db.sql`insert into public.sites (site_id, program_id, name) values (${site}, ${program}, 'slow site')`;
    await db.sql`insert into public.submissions (submission_id, site_id, program_id) values (${submission}, ${site}, ${program})`;
    await db.sql`insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
                 select ${submission}, ${site}, ${program}, 'slow ' || g, now() - make_interval(mins => g) from generate_series(1, 200) g`;
    await db.sql`create policy slow_rows on public.petri_observations as restrictive for select to authenticated
                 using (pg_sleep(0.02) is not null)`;
    const admin = connect(testEnv.adminUrl);
    try {
      await admin.unsafe(`alter role authenticated in database ${db.name} set statement_timeout = '1s'`);
    } finally {
      await admin.end();
    }
    server = await startFunctionsServer({
      port: 0,
      functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
      configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
      env: {
        SUPABASE_URL: testEnv.supabaseUrl, SUPABASE_DB_URL: db.url, SUPABASE_ANON_KEY: testEnv.anonKey, SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey,
        ...(connection === "pooler" ? { DB_POOLER_URL: withDatabase(requireEnv("TEST_DB_POOLER_URL"), db.name) } : {}),
      },
      jwtSecret: testEnv.jwtSecret,
      log: () => undefined,
    });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await db?.drop();   // (the role's setting for this database goes with it)
  });

  it("a request slower than the role's statement_timeout answers 503 query_timeout within it", async () => {
    const token = await signUserToken(testEnv.jwtSecret, { sub: user });
    const t0 = performance.now();
    const res = await fetch(`${server.url}/functions/v1/get-observations-optimized`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ company_id: company, program_id: program, limit: 200 }),
    });
    const elapsed = performance.now() - t0;
    const body = (await res.json()) as { error?: { code: string } };
    expect({ status: res.status, code: body.error?.code }).toEqual({ status: 503, code: "query_timeout" });
    // 200 rows at 20 ms would take 4 s: the 1 s timeout ended it
    expect(elapsed).toBeLessThan(3_000);
    // the function's connection went where this case says (the pooler lists its clients by database)
    const onPooler = (await poolerAdminConsole("show clients")).filter((c) => c.database === db.name).length;
    expect(onPooler > 0).toBe(connection === "pooler");
  });

  it("a request within it answers normally", async () => {
    await db.sql`drop policy slow_rows on public.petri_observations`;
    const token = await signUserToken(testEnv.jwtSecret, { sub: user });
    const res = await fetch(`${server.url}/functions/v1/get-observations-optimized`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ company_id: company, program_id: program, limit: 10 }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { rows: unknown[] }).rows).toHaveLength(10);
  });
});

describe("partition-admin bounds every action by its own statement timeout", () => {
  let db: FreshDb;
  let server: FunctionsServer;

  beforeAll(async () => {
    db = await freshDatabase("edge_admin_timeout");
    // a health check that takes 3 s (the real one stays underneath)
    await db.sql`alter function partition_mgmt.health() rename to health_underneath`;
    await db.sql.unsafe(`
      create function partition_mgmt.health() returns table (severity text, finding text, table_key text, detail text)
      language plpgsql set search_path = '' as $$
      begin
        perform pg_sleep(3);
        return query select * from partition_mgmt.health_underneath();
      end $$`);
    server = await startFunctionsServer({
      port: 0,
      functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
      configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
      env: {
        SUPABASE_URL: testEnv.supabaseUrl, SUPABASE_DB_URL: db.url, SUPABASE_ANON_KEY: testEnv.anonKey,
        SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey, PARTITION_ADMIN_STATEMENT_TIMEOUT: "1s",
      },
      jwtSecret: testEnv.jwtSecret,
      log: () => undefined,
    });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await db?.drop();
  });

  it("an action longer than the bound answers 503 retry_later within it, says what to do and is audited", async () => {
    const token = testEnv.serviceRoleKey;
    const t0 = performance.now();
    const res = await fetch(`${server.url}/functions/v1/partition-admin`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ action: "health" }),
    });
    const elapsed = performance.now() - t0;
    const body = (await res.json()) as { error?: { code: string; message: string; details: { sqlstate: string; hint: string } } };
    expect({ status: res.status, code: body.error?.code, sqlstate: body.error?.details.sqlstate })
      .toEqual({ status: 503, code: "retry_later", sqlstate: "57014" });
    expect(body.error?.message).toMatch(/health did not finish within partition-admin's statement_timeout \(1s\)/);
    expect(body.error?.details.hint).toMatch(/SQL editor|pg_cron/);
    expect(elapsed).toBeLessThan(2_900);
    const [audit] = await db.sql<{ action: string; status: string; error: string }[]>`
      select action, status, error from partition_mgmt.admin_audit order by id desc limit 1`;
    expect(audit).toMatchObject({ action: "health", status: "error" });
    expect(audit?.error).toMatch(/statement_timeout \(1s\)/);
  });
});
