// The read RPCs on a hot standby: hosted Supabase's API load balancer sends GET requests (table
// reads and GET /rpc/...) to read replicas, so every read function and view PostgREST exposes must
// answer there as it does on the primary. Each call is sent with PostgREST's SQL, as
// `authenticated` (two companies' users) and as `service_role`, to the primary and to the replica
// of the same database, in a read-only transaction as PostgREST runs a GET; data and errors must be
// equal. The write RPCs on the replica fail with read_only_sql_transaction (25006), never silently.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { readStatement, rpcStatement, send, userCaller, type Caller, type PostgrestStatement } from "../helpers/postgrest.ts";
import { connectReplica, waitForReplica } from "../helpers/replica.ts";
import type { Sql } from "postgres";

interface Company { companyId: string; userId: string; programId: string; siteId: string; submissionId: string; petriId: string; gasifierId: string; from: string }

let db: FreshDb;
let replica: Sql;
let companies: Company[];
const serviceRole: Caller = { role: "service_role", claims: { role: "service_role", iss: "supabase" } };
const asGet = (s: PostgrestStatement): PostgrestStatement => ({ ...s, method: "GET", readOnly: true });

beforeAll(async () => {
  db = await freshDatabase("replica_rpcs");
  await loadSmallDemo(db.sql);
  companies = await db.sql<Company[]>`
    select c.company_id as "companyId", u.id as "userId", p.program_id as "programId", s.site_id as "siteId",
           (select b.submission_id from public.submissions b where b.site_id = s.site_id order by b.submission_id limit 1) as "submissionId",
           (select o.observation_id from public.petri_observations o where o.site_id = s.site_id order by o.observation_id limit 1) as "petriId",
           (select g.observation_id from public.gasifier_observations g where g.program_id = p.program_id order by g.observation_id limit 1) as "gasifierId",
           (select to_json(min(o.created_at) + interval '20 days') #>> '{}' from public.petri_observations o where o.program_id = p.program_id) as "from"
    from public.companies c
    cross join lateral (select id from public.users where company_id = c.company_id order by id limit 1) u
    cross join lateral (select program_id from public.pilot_programs where company_id = c.company_id order by program_id limit 1) p
    cross join lateral (select site_id from public.sites where program_id = p.program_id order by site_id limit 1) s
    order by c.company_id limit 2`;
  expect(companies).toHaveLength(2);
  await waitForReplica();
  replica = connectReplica(db.name, 2);
});

afterAll(async () => {
  await replica?.end();
  await db?.drop();
});

describe("read RPCs and views on the replica, as PostgREST sends a GET", () => {
  it("answer exactly as on the primary, for each company's user and the service role, errors included", async () => {
    const [a, b] = companies as [Company, Company];
    const calls: [string, PostgrestStatement][] = [];
    const rpc = async (label: string, fn: string, args: Record<string, unknown>) => calls.push([label, asGet(await rpcStatement(db.sql, { fn, args }))]);
    for (const [name, c, other] of [["A", a, b], ["B", b, a]] as const) {
      await rpc(`${name}: petri page`, "get_observations_optimized", { p_company_id: c.companyId, p_program_id: c.programId, p_limit: 40 });
      await rpc(`${name}: petri site and dates`, "get_observations_optimized", { p_company_id: c.companyId, p_program_id: c.programId, p_site_id: c.siteId, p_start_date: c.from, p_limit: 1000 });
      await rpc(`${name}: gasifier page`, "get_gasifier_observations_optimized", { p_company_id: c.companyId, p_program_id: c.programId, p_limit: 40 });
      await rpc(`${name}: per day`, "get_observation_aggregates", { p_company_id: c.companyId, p_program_id: c.programId, p_group_by: "day" });
      await rpc(`${name}: per site`, "get_observation_aggregates", { p_company_id: c.companyId, p_program_id: c.programId, p_group_by: "site", p_submission_id: c.submissionId });
      await rpc(`${name}: petri by id`, "get_observation_by_id", { p_table: "petri_observations", p_observation_id: c.petriId });
      await rpc(`${name}: gasifier by id`, "get_observation_by_id", { p_table: "gasifier_observations", p_observation_id: c.gasifierId });
      await rpc(`${name}: the other company's row by id`, "get_observation_by_id", { p_table: "petri_observations", p_observation_id: other.petriId });
      await rpc(`${name}: the other company`, "get_observations_optimized", { p_company_id: other.companyId, p_program_id: other.programId, p_limit: 10 });
      await rpc(`${name}: a bad cursor`, "get_observations_optimized", { p_company_id: c.companyId, p_program_id: c.programId, p_cursor: "nope" });
      await rpc(`${name}: a bad group`, "get_observation_aggregates", { p_company_id: c.companyId, p_program_id: c.programId, p_group_by: "week" });
      await rpc(`${name}: an unknown table`, "get_observation_by_id", { p_table: "nope", p_observation_id: randomUUID() });
      calls.push([`${name}: petri by submission (view)`, readStatement({ table: "petri_observations_by_submission", filters: [{ column: "submission_id", op: "eq", value: c.submissionId }], order: [{ column: "observation_id", ascending: true }] })]);
      calls.push([`${name}: gasifier by submission (view)`, readStatement({ table: "gasifier_observations_by_submission", filters: [{ column: "submission_id", op: "eq", value: c.submissionId }], order: [{ column: "observation_id", ascending: true }] })]);
    }
    const callers: [string, Caller][] = [["user A", userCaller(a.userId)], ["user B", userCaller(b.userId)], ["service_role", serviceRole]];
    let rowsCompared = 0;
    const errors = new Set<string>();
    for (const [who, caller] of callers) {
      for (const [label, call] of calls) {
        const onPrimary = await send<unknown>(db.sql, caller, call);
        const onReplica = await send<unknown>(replica, caller, call);
        expect({ data: onReplica.data, error: onReplica.error }, `${who}, ${label}`).toEqual({ data: onPrimary.data, error: onPrimary.error });
        if (Array.isArray(onPrimary.data)) rowsCompared += onPrimary.data.length;
        if (onPrimary.error) errors.add(onPrimary.error.code);
      }
    }
    expect(rowsCompared).toBeGreaterThan(500);
    expect([...errors].sort()).toEqual(expect.arrayContaining(["22023"]));
  });

  it("write RPCs fail on the replica with read_only_sql_transaction, and change nothing", async () => {
    const [a] = companies as [Company, Company];
    const me = userCaller(a.userId);
    for (const [fn, args] of [
      ["update_observation_by_id", { p_table: "petri_observations", p_observation_id: a.petriId, p_changes: { notes: "from the replica" } }],
      ["delete_observation_by_id", { p_table: "petri_observations", p_observation_id: a.petriId }],
    ] as const) {
      const call = await rpcStatement(db.sql, { fn, args });
      const r = await send(replica, me, { ...call, readOnly: true });
      expect(r.error?.code, fn).toBe("25006");
    }
    const [row] = await db.sql`select 1 from public.petri_observations where observation_id = ${a.petriId} and notes is distinct from 'from the replica'`;
    expect(row).toBeDefined();
  });
});
