// partition-admin over real HTTP (the Deno-served function, the test cluster's `postgres` database).
// Covers:
//  - who may call: no token 401, the anon key 403, a signed-in user 403, the service role 200;
//    refused calls are audited with the caller's role;
//  - bad input: unknown action, unmanaged table, missing table, out-of-range arguments -> 400
//    naming the field, each call's audit row status invalid with the body and the message;
//  - guarding: while the table's admin lock is held (partition_mgmt.admin_lock_key, held here from a
//    test connection, as a concurrent call holds it), a phase call answers 409 already_running
//    and runs nothing; once released the same call runs;
//  - a full phase run on a dedicated small managed table (public.zz_admin_obs, shaped like
//    petri_observations, registered as 'zzadmin'; the other suites read public.petri_observations,
//    which must not be swapped under them): precheck, plan, prepare, sync-on, sync-off (= rollback
//    before the swap), prepare, sync-on, a write during the sync, the backfill loop (bounded calls
//    with progress), validate (all ok), swap, sync-off refused after the swap, status, monitor,
//    maintenance, health, finalize; every call audited with its duration.
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { connect } from "../helpers/db.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { adminSupabase, invokeAdmin } from "../../client/admin-client.ts";
import type { AdminOutcome } from "../../supabase/functions/_shared/admin-contract.ts";
import { testEnv } from "../helpers/env.ts";
import { createObservationsFixture, type ObservationsFixture } from "../helpers/observations-fixture.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { run, TSX } from "../helpers/processes.ts";

const KEY = "zzadmin";
const TABLE = "zz_admin_obs";

interface Answer {
  status: number;
  body: { error?: { code: string; message: string; details?: Record<string, unknown> } } & Partial<AdminOutcome>;
}

async function call(token: string | null, body: unknown): Promise<Answer> {
  const headers: Record<string, string> = { "content-type": "application/json", apikey: testEnv.anonKey };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${testEnv.functionsUrl}/partition-admin`, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Answer["body"] };
}

const asService = (body: unknown) => call(testEnv.serviceRoleKey, body);

let sql: Sql;
let fx: ObservationsFixture;
let t0: Date;

async function countRows(): Promise<number> {
  const [r] = await sql.unsafe<{ n: number }[]>(`select count(*)::int as n from public.${TABLE}`);
  return r?.n ?? -1;
}

async function dropDedicatedTable(): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`delete from partition_mgmt.managed_tables where table_key = ${KEY}`;
    await tx`delete from partition_mgmt.observation_keys where table_key = ${KEY}`;
    await tx.unsafe(`drop table if exists public.${TABLE}, public.${TABLE}_old, public.${TABLE}_partitioned cascade`);
    await tx.unsafe(`drop view if exists public.${TABLE}_by_submission`);
    await tx.unsafe(`drop function if exists public.get_${TABLE}_optimized(uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text)`);
    await tx.unsafe(`drop function if exists partition_mgmt.${KEY}_rows_for_submission(uuid, uuid, uuid)`);
    for (const fn of ["maintain_keys", "sync_to_partitioned", "sync_to_legacy"]) {
      await tx.unsafe(`drop function if exists partition_mgmt.${KEY}_${fn}()`);
    }
  });
}

beforeAll(async () => {
  sql = connect(testEnv.dbUrl, 3);
  t0 = (await sql<{ now: Date }[]>`select clock_timestamp() as now`)[0]!.now;
  fx = await createObservationsFixture({ a: 150, b: 40 });
  await dropDedicatedTable();
  // (as an app table the bundle has not set up: no index on company_id, RLS off)
  await sql.unsafe(`create table public.${TABLE} (like public.petri_observations including all)`);
  await sql.unsafe(`drop index if exists public.${TABLE}_company_id_idx`);
  await sql.unsafe(`revoke all on public.${TABLE} from anon, authenticated`);
  await sql.unsafe(`insert into public.${TABLE} select * from public.petri_observations where program_id in ('${fx.a.programId}', '${fx.b.programId}')`);
  await sql`insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix)
            values (${KEY}, ${TABLE}, ${TABLE + "_partitioned"}, 'zza')`;
});

afterAll(async () => {
  try {
    await dropDedicatedTable();
  } finally {
    await fx?.remove();
    await sql?.end({ timeout: 5 });
  }
});

describe("partition-admin: who may call", () => {
  it("answers 401 without a token, 403 to the anon key and to a signed-in user, 200 to the service role", async () => {
    const noToken = await call(null, { action: "health" });
    expect(noToken.status).toBe(401);

    const anon = await call(testEnv.anonKey, { action: "status" });
    expect(anon.status, JSON.stringify(anon.body)).toBe(403);
    expect(anon.body.error?.message).toMatch(/only the service role/);

    const user = await call(fx.a.token, { action: "prepare", table: KEY });
    expect(user.status, JSON.stringify(user.body)).toBe(403);
    expect(user.body.error?.code).toBe("forbidden");

    const stranger = await call(await signUserToken(testEnv.jwtSecret, { sub: randomUUID() }), { action: "health" });
    expect(stranger.status).toBe(403);

    const service = await asService({ action: "status", table: KEY });
    expect(service.status, JSON.stringify(service.body)).toBe(200);
    expect(service.body.status).toBe("ok");

    // nothing ran for the refused callers, but each refusal is on record
    const refused = await sql<{ actor_role: string; action: string }[]>`
      select actor_role, action from partition_mgmt.admin_audit where status = 'refused' and at >= ${t0} order by id`;
    expect(refused.map((r) => `${r.actor_role}:${r.action}`)).toEqual(
      expect.arrayContaining(["anon:status", "authenticated:prepare", "authenticated:health"]),
    );
    expect(await sql`select 1 from partition_mgmt.migration_state where table_key = ${KEY}`).toHaveLength(0);
  });
});

describe("partition-admin: bad input", () => {
  const cases: { name: string; body: unknown; field?: string; mentions: RegExp }[] = [
    { name: "unknown action", body: { action: "explode", table: KEY }, field: "action", mentions: /action: must be one of: status, precheck/ },
    { name: "missing action", body: { table: KEY }, field: "action", mentions: /action/ },
    { name: "phase without table", body: { action: "prepare" }, field: "table", mentions: /table: is required for action "prepare"/ },
    { name: "batch_size 0", body: { action: "backfill", table: KEY, batch_size: 0 }, field: "batch_size", mentions: /batch_size: must be an integer/ },
    { name: "max_seconds above the bound", body: { action: "backfill", table: KEY, max_seconds: 60 }, field: "max_seconds", mentions: /max_seconds/ },
    { name: "unknown parameter", body: { action: "status", force: true }, field: "force", mentions: /force: is not a parameter/ },
    { name: "bad lock_timeout", body: { action: "swap", table: KEY, lock_timeout: "1 hour" }, field: "lock_timeout", mentions: /lock_timeout/ },
  ];
  for (const c of cases) {
    it(`400 for ${c.name}, on record as invalid with what was asked`, async () => {
      const before = (await sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.admin_audit`)[0]!.id;
      const res = await asService(c.body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error?.message).toMatch(c.mentions);
      const issues = (res.body.error?.details?.issues ?? []) as { field: string }[];
      if (c.field) expect(issues.map((i) => i.field)).toContain(c.field);
      // the audit row of this call (other suites may call the function meanwhile: matched by its body)
      const audits = await sql<{ action: string; table_key: string | null; status: string; actor_role: string; error: string }[]>`
        select action, table_key, status, actor_role, error from partition_mgmt.admin_audit
        where id > ${before} and arguments = ${JSON.stringify(c.body)}::text::jsonb order by id`;
      const asked = (c.body as { action?: unknown }).action;
      expect(audits).toEqual([{ action: typeof asked === "string" ? asked : "?", table_key: null, status: "invalid", actor_role: "service_role", error: expect.stringMatching(c.mentions) }]);
    });
  }

  it("a body that is not JSON, not an object or too large is refused and on record (the caller passed authentication)", async () => {
    const send = async (body: string, contentType = "application/json") => {
      const res = await fetch(`${testEnv.functionsUrl}/partition-admin`, {
        method: "POST",
        headers: { authorization: `Bearer ${testEnv.serviceRoleKey}`, apikey: testEnv.anonKey, "content-type": contentType },
        body,
      });
      return { status: res.status, body: (await res.json()) as Answer["body"] };
    };
    const before = (await sql<{ id: number }[]>`select coalesce(max(id), 0)::int as id from partition_mgmt.admin_audit`)[0]!.id;
    const notJson = await send("{action: status");
    const notObject = await send(JSON.stringify(["status"]));
    const tooLarge = await send(JSON.stringify({ action: "status", pad: "x".repeat(8 * 1024) }));
    expect([notJson.status, notObject.status, tooLarge.status]).toEqual([400, 400, 413]);
    const audits = await sql<{ status: string; actor_role: string; error: string }[]>`
      select status, actor_role, error from partition_mgmt.admin_audit where id > ${before} and status = 'invalid' order by id`;
    expect(audits.map((a) => [a.status, a.actor_role])).toEqual([["invalid", "service_role"], ["invalid", "service_role"], ["invalid", "service_role"]]);
    expect(audits.map((a) => a.error)).toEqual([
      expect.stringMatching(/not valid JSON/), expect.stringMatching(/must be a JSON object/), expect.stringMatching(/exceeds 4096 bytes/),
    ]);
  });

  it("400 for a table partition_mgmt does not manage, with the known tables in the hint; audited as invalid", async () => {
    const res = await asService({ action: "precheck", table: "no_such_table" });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.error?.message).toMatch(/"no_such_table" is not managed/);
    expect(String(res.body.error?.details?.hint)).toMatch(/petri \(petri_observations\)/);
    const [audit] = await sql<{ status: string; error: string }[]>`
      select status, error from partition_mgmt.admin_audit where id = ${Number(res.body.error?.details?.audit_id)}`;
    expect(audit).toMatchObject({ status: "invalid" });
  });
});

describe("partition-admin: the setup steps a newly managed table needs (npm run admin -- setup)", () => {
  it("the CLI takes them through the function until none is left, the index built outside a transaction; the migration is blocked until then", async () => {
    const blocked = await asService({ action: "prepare", table: KEY });
    expect(blocked.status, JSON.stringify(blocked.body)).toBe(409);
    expect(blocked.body.error?.message).toMatch(/setup step zzadmin:company_id: pending/);
    const cli = (args: string[]) => run(process.execPath, [TSX, "scripts/admin.ts", ...args], {
      cwd: REPO_ROOT, env: { ...process.env, SUPABASE_URL: testEnv.supabaseUrl, SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey },
    });
    const out = await cli(["setup"]);
    expect(out.stdout).toMatch(/zzadmin:company_id\s+done/);
    expect(out.stdout).toMatch(new RegExp(`zzadmin:company_id_index\\s+statement: ran create index concurrently if not exists ${TABLE}_company_id_idx on public\\.${TABLE} \\(company_id\\)`));
    expect(out.stdout).toMatch(/zzadmin:company_isolation\s+done: RLS enabled, added \(permissive\)/);
    expect(out.stdout).toMatch(/setup: nothing pending/);
    const [idx] = await sql<{ valid: boolean }[]>`
      select i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid where c.relname = ${`${TABLE}_company_id_idx`}`;
    expect(idx?.valid).toBe(true);
    const audit = await sql<{ status: string; result: { ran?: string } | null }[]>`
      select status, result from partition_mgmt.admin_audit where action = 'setup' and at > ${t0} order by id`;
    expect(audit.length).toBeGreaterThanOrEqual(3);
    expect(audit.every((a) => a.status === "ok")).toBe(true);
    expect(await sql`select 1 from partition_mgmt.setup_tasks() where not done`).toHaveLength(0);
  }, 120_000);
});

describe("partition-admin: the whole migration by steps (npm run admin -- step)", () => {
  it("the CLI takes every step through the function to validated, then the swap with --swap; rollback returns the table", async () => {
    const legacyRows = await countRows();
    const cli = (args: string[]) => run(process.execPath, [TSX, "scripts/admin.ts", ...args], {
      cwd: REPO_ROOT, env: { ...process.env, SUPABASE_URL: testEnv.supabaseUrl, SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey },
    });
    const first = await cli(["step", "--table", KEY, "--batch-size", "40", "--max-seconds", "1"]);
    expect(first.stdout).toMatch(new RegExp(`${KEY}: prepare -> phase prepared`));
    expect(first.stdout).toMatch(new RegExp(`${KEY}: sync -> phase syncing`));
    expect(first.stdout).toMatch(new RegExp(`${KEY}: validate -> phase validated`));
    expect(first.stdout).toMatch(/next step of zzadmin: done \(validated: the swap is taken with --swap\)/);
    const [{ phase } = { phase: "" }] = await sql<{ phase: string }[]>`select partition_mgmt.migration_phase(${KEY}) as phase`;
    expect(phase).toBe("validated");
    const second = await cli(["step", "--table", KEY, "--swap", "--yes"]);
    expect(second.stdout).toMatch(new RegExp(`${KEY}: swap -> phase swapped`));
    expect(second.stdout).toMatch(/next step of zzadmin: done/);
    const [kind] = await sql<{ k: string }[]>`select relkind::text as k from pg_class where oid = ${`public.${TABLE}`}::regclass`;
    expect(kind?.k).toBe("p");
    expect(await countRows()).toBe(legacyRows);
    // back to the legacy table for the phase-by-phase run below
    const back = await invokeAdmin(adminSupabase(testEnv.supabaseUrl, testEnv.serviceRoleKey), { action: "rollback", table: KEY });
    expect(back.status).toBe("ok");
    const [legacy] = await sql<{ k: string }[]>`select relkind::text as k from pg_class where oid = ${`public.${TABLE}`}::regclass`;
    expect(legacy?.k).toBe("r");
    expect(await countRows()).toBe(legacyRows);
  }, 120_000);
});

describe("partition-admin: one call per table at a time", () => {
  it("answers 409 while another call holds the table, runs nothing, and runs once released", async () => {
    const holder = connect(testEnv.dbUrl);
    try {
      await holder`select pg_advisory_lock(partition_mgmt.admin_lock_key(${KEY}))`;
      const busy = await asService({ action: "prepare", table: KEY });
      expect(busy.status, JSON.stringify(busy.body)).toBe(409);
      expect(busy.body.error?.code).toBe("already_running");
      expect(busy.body.error?.message).toMatch(/already running/);
      expect(await sql`select 1 from partition_mgmt.migration_state where table_key = ${KEY}`).toHaveLength(0);
      const [audit] = await sql<{ status: string; action: string }[]>`
        select status, action from partition_mgmt.admin_audit where id = ${Number(busy.body.error?.details?.audit_id)}`;
      expect(audit).toEqual({ status: "busy", action: "prepare" });

      // read-only actions do not wait for the lock
      expect((await asService({ action: "monitor", table: KEY })).status).toBe(200);
    } finally {
      await holder`select pg_advisory_unlock(partition_mgmt.admin_lock_key(${KEY}))`;
      await holder.end({ timeout: 5 });
    }
    const ran = await asService({ action: "prepare", table: KEY });
    expect(ran.status, JSON.stringify(ran.body)).toBe(200);
    expect(ran.body.phase).toBe("prepared");
    // a second prepare is a no-op, not a second run
    const again = await asService({ action: "prepare", table: KEY });
    expect(again.status).toBe(200);
    expect(String(again.body.result?.message)).toMatch(/already prepared/);
  });

  it("sync-off before the swap is the rollback: the table is idle again", async () => {
    const on = await asService({ action: "sync-on", table: KEY });
    expect(on.status, JSON.stringify(on.body)).toBe(200);
    expect(on.body.phase).toBe("syncing");
    const off = await asService({ action: "sync-off", table: KEY });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    expect(off.body.phase).toBe("idle");
    expect(String(off.body.result?.message)).toMatch(/rolled back/);
    const [t] = await sql<{ n: number }[]>`select count(*)::int as n from pg_trigger where tgrelid = ${`public.${TABLE}`}::regclass and not tgisinternal`;
    expect(t?.n).toBe(0);
  });
});

describe("partition-admin: a full phase run through the function", () => {
  it("precheck, plan, prepare, sync-on, backfill loop, validate, swap, finalize end with validation passing", async () => {
    const admin = adminSupabase(testEnv.supabaseUrl, testEnv.serviceRoleKey);
    const run = (body: Parameters<typeof invokeAdmin>[1]) => invokeAdmin(admin, body);
    const legacyRows = await countRows();
    expect(legacyRows).toBe(190);
    const auditIds: number[] = [];
    const step = async (body: Parameters<typeof invokeAdmin>[1]) => {
      const o = await run(body);
      expect(o.status).toBe("ok");
      if (o.audit_id !== null) auditIds.push(o.audit_id);
      return o;
    };

    const precheck = await step({ action: "precheck", table: KEY });
    const checks = precheck.result?.rows as { check_name: string; status: string }[];
    expect(checks.filter((c) => c.status === "blocker")).toEqual([]);

    const plan = await step({ action: "plan", table: KEY });
    const planRows = plan.result?.rows as { action: string; status: string }[];
    expect(planRows.at(-1)).toMatchObject({ action: "verdict", status: "ok" });
    expect(plan.phase).toBe("idle");

    expect((await step({ action: "prepare", table: KEY })).phase).toBe("prepared");
    // backfill before the sync is refused with what to do
    await expect(run({ action: "backfill", table: KEY })).rejects.toMatchObject({ status: 409, message: expect.stringMatching(/start_sync/) });
    expect((await step({ action: "sync-on", table: KEY })).phase).toBe("syncing");

    // the app keeps writing: the sync trigger carries this row
    const written = randomUUID();
    await sql`insert into ${sql("public")}.${sql(TABLE)} (observation_id, submission_id, site_id, program_id, petri_code, growth_index, created_at)
              values (${written}, ${fx.a.submissionIds[0]}, ${fx.a.siteIds[0]}, ${fx.a.programId}, 'admin-live', 1.5, now() - interval '1 hour')`;

    // bounded calls, each with progress, until done
    let calls = 0;
    let last: AdminOutcome | undefined;
    while (calls < 200) {
      calls++;
      last = await step({ action: "backfill", table: KEY, batch_size: 25, max_batches: 2, max_seconds: 5 });
      const progress = last.result?.progress as { rows_scanned: number; rows_total: number; percent: number; phase: string };
      expect(progress.rows_total).toBe(legacyRows); // counted at prepare; the synced row is extra
      expect(progress.percent).toBeGreaterThanOrEqual(0);
      if (last.result?.done === true) break;
    }
    expect(last?.result?.done).toBe(true);
    expect(last?.phase).toBe("backfilled");
    expect(calls).toBeGreaterThanOrEqual(4); // 191 rows, at most 50 per call
    const progress = last?.result?.progress as { percent: number; rows_scanned: number };
    expect(progress.percent).toBe(100);

    const validate = await step({ action: "validate", table: KEY });
    const validation = validate.result?.rows as { check_name: string; status: string }[];
    expect(validation.length).toBeGreaterThan(0);
    expect(validation.filter((v) => v.status !== "ok")).toEqual([]);
    expect(validate.phase).toBe("validated");

    const swap = await step({ action: "swap", table: KEY, lock_timeout: "1s", attempts: 5 });
    expect(swap.phase).toBe("swapped");
    const [kind] = await sql<{ k: string }[]>`select relkind::text as k from pg_class where oid = ${`public.${TABLE}`}::regclass`;
    expect(kind?.k).toBe("p");

    // after the swap, sync-off would lose the reverse sync: refused with the way out
    await expect(run({ action: "sync-off", table: KEY })).rejects.toMatchObject({
      status: 409, details: expect.objectContaining({ hint: expect.stringMatching(/rollback/) }),
    });

    const status = await step({ action: "status", table: KEY });
    expect((status.result?.migrations as { phase: string }[])[0]?.phase).toBe("swapped");
    const monitor = await step({ action: "monitor", table: KEY });
    expect((monitor.result?.rows as { percent: number }[])[0]?.percent).toBe(100);
    const maintenance = await step({ action: "maintenance", table: KEY });
    expect((maintenance.result?.rows as unknown[]).length).toBeGreaterThan(0);
    const health = await step({ action: "health" });
    expect(Array.isArray(health.result?.rows)).toBe(true);

    const finalize = await step({ action: "finalize", table: KEY });
    expect(String(finalize.result?.message)).toMatch(/finalized/);
    expect(finalize.phase).toBe("idle");
    expect(await countRows()).toBe(legacyRows + 1);
    expect(await sql`select 1 from ${sql("public")}.${sql(TABLE)} where observation_id = ${written}`).toHaveLength(1);
    expect(await sql`select to_regclass(${`public.${TABLE}_old`}) as r`).toEqual([{ r: null }]);

    // every call is on record: who, what, with which arguments, how it ended and how long it took
    const audits = await sql<{ id: string; actor_role: string; action: string; table_key: string | null; status: string; duration_ms: string; arguments: Record<string, unknown> }[]>`
      select id, actor_role, action, table_key, status, duration_ms, arguments from partition_mgmt.admin_audit where id in ${sql(auditIds)} order by id`;
    expect(audits).toHaveLength(auditIds.length);
    for (const a of audits) {
      expect(a.actor_role).toBe("service_role");
      expect(a.status).toBe("ok");
      expect(Number(a.duration_ms)).toBeGreaterThanOrEqual(0);
    }
    expect(audits.find((a) => a.action === "swap")?.arguments).toEqual({ lock_timeout: "1s", attempts: 5 });
    const failed = await sql<{ action: string; status: string; error: string }[]>`
      select action, status, error from partition_mgmt.admin_audit where table_key = ${KEY} and status = 'error' and at >= ${t0} order by id`;
    // (prepare: refused while the table's setup steps were pending, in the setup test above)
    expect(failed.map((f) => f.action)).toEqual(["prepare", "backfill", "sync-off"]);
  });
});
