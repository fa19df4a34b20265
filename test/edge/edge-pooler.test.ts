// The read function through the transaction pooler (the local stack's PgBouncer, DB_POOLER_URL),
// the admin function on the direct connection. Covers:
//  - get-observations-optimized and health connect through the pooler (its admin console lists
//    their clients) and answer;
//  - what they set per request (role, request.jwt.claims, the role's statement_timeout) ends with
//    the request's transaction: the server session they used, handed to the next client of the
//    pool, is back to the postgres role with no claims and the database's statement_timeout;
//  - partition-admin opens no client on the pooler (it needs sessions of its own: SUPABASE_DB_URL).
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { connect } from "../helpers/db.ts";
import { requireEnv, testEnv } from "../helpers/env.ts";
import { poolerAdminConsole } from "../helpers/pooler.ts";
import { supabaseAs } from "../helpers/supabase.ts";

/** Clients of the pooler connected to the database `postgres` as `postgres` (the functions' pool). */
async function functionClientsOnPooler(): Promise<number> {
  return (await poolerAdminConsole("show clients")).filter((c) => c.user === "postgres" && c.database === "postgres").length;
}

async function invoke(name: string, token: string, body: Record<string, unknown>): Promise<number> {
  const { error, response } = await supabaseAs(token).functions.invoke(name, { method: "POST", body });
  if (error) throw new Error(`${name} answered ${(response as Response | undefined)?.status}: ${await (response as Response | undefined)?.text()}`);
  return (response as Response).status;
}

describe("edge functions and the transaction pooler", () => {
  it("the read function and health connect through the pooler and leave no session state behind", async () => {
    const companyId = randomUUID();
    const programId = randomUUID();
    const direct = connect(testEnv.dbUrl, 1);
    try {
      await direct`insert into public.companies (company_id, name) values (${companyId}, 'edge pooler')`;
      await direct`insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
        values (${programId}, 'edge pooler', current_date, current_date, ${companyId})`;
    } finally {
      await direct.end();
    }
    expect(await invoke("get-observations-optimized", testEnv.serviceRoleKey, { company_id: companyId, program_id: programId, limit: 5 })).toBe(200);
    expect(await invoke("health", testEnv.anonKey, {})).toBe(200);
    expect(await functionClientsOnPooler()).toBeGreaterThanOrEqual(1);

    // the next client of the pool gets the server session the functions just used
    const next = connect(requireEnv("TEST_DB_POOLER_URL"), 1);
    try {
      const [state] = await next<{ role: string; claims: string | null; timeout: string }[]>`
        select current_user as role, nullif(current_setting('request.jwt.claims', true), '') as claims,
               current_setting('statement_timeout') as timeout`;
      // postgres has no statement_timeout of its own: the database's 2 minutes (compute-profiles.ts)
      expect(state).toEqual({ role: "postgres", claims: null, timeout: "2min" });
    } finally {
      await next.end();
    }
  });

  it("partition-admin keeps to the direct connection", async () => {
    const before = await functionClientsOnPooler();
    expect(await invoke("partition-admin", testEnv.serviceRoleKey, { action: "status", table: "petri_observations" })).toBe(200);
    expect(await functionClientsOnPooler()).toBeLessThanOrEqual(before);
  });
});
