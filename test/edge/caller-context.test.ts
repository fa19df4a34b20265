// The statement that makes a transaction the caller's (supabase/functions/_shared/caller-context.ts),
// run on a real database as the edge functions run it: postgres.js, prepare: false, in a transaction.
// Covers:
//  - its literals carry any value unchanged, a value that holds the quote tag or ends in part of it
//    included (the statement has no bind parameter, so its quoting is what keeps claims data);
//  - claims, role, the role's settings (this database's over every database's) and the request's
//    own settings over the role's are set, and all of them end with the transaction;
//  - a role outside anon / authenticated / service_role is refused before any SQL.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callerContextStatement, dollarQuoted, type CallerRole } from "../../supabase/functions/_shared/caller-context.ts";
import { asSuperuser, connect, freshDatabase, type FreshDb } from "../helpers/db.ts";
import type { Sql } from "postgres";

describe("the caller's context statement", () => {
  let db: FreshDb;
  let sql: Sql;

  beforeAll(async () => {
    db = await freshDatabase("caller_context");
    sql = connect(db.url, 1, { prepare: false });
    await asSuperuser(async (admin) => {
      // anon's 3 s for every database comes from the cluster's bootstrap, as on hosted
      await admin.unsafe(`alter role anon in database ${db.name} set statement_timeout = '2500ms'`);
      await admin.unsafe(`alter role anon in database ${db.name} set work_mem = '3MB'`);
    });
  });

  afterAll(async () => {
    await sql?.end();
    await db?.drop();   // (anon's settings for this database go with it)
  });

  it("quotes any value so that it reads back unchanged", async () => {
    const values = ["", "plain", "$c0$", "x$c0", "$c0$$c1$ends$c2", "'; reset role; --", "back\\slash", "é \u2028 😀", '{"a":"$c0$"}'];
    for (const value of values) {
      const [row] = await sql.unsafe<{ v: string }[]>(`select ${dollarQuoted(value)}::text as v`);
      expect(row?.v).toBe(value);
    }
  });

  it("sets claims, role and settings for the transaction only, the request's over the role's, this database's over every database's", async () => {
    const claims = JSON.stringify({ role: "anon", note: "it's $c0$ here" });
    const inside = await sql.begin(async (tx) => {
      await tx.unsafe(callerContextStatement("anon", claims, { timezone: "UTC", work_mem: "5MB" }));
      const [row] = await tx<{ role: string; claims: string; timeout: string; work_mem: string; timezone: string }[]>`
        select current_user as role, current_setting('request.jwt.claims') as claims, current_setting('statement_timeout') as timeout,
               current_setting('work_mem') as work_mem, current_setting('timezone') as timezone`;
      return row;
    });
    expect(inside).toEqual({ role: "anon", claims, timeout: "2500ms", work_mem: "5MB", timezone: "UTC" });
    const [after] = await sql<{ role: string; claims: string | null; timeout: string }[]>`
      select current_user as role, nullif(current_setting('request.jwt.claims', true), '') as claims, current_setting('statement_timeout') as timeout`;
    expect(after).toEqual({ role: "postgres", claims: null, timeout: "2min" });
  });

  it("refuses a role that is not a caller's", () => {
    expect(() => callerContextStatement("postgres" as CallerRole, "{}")).toThrow(/may not access the database/);
  });
});
