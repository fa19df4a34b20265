// The admin actions live in one place, the table partition_mgmt.admin_action (migration 0700): one
// row per action with its table requirement, lock, session, read-only and confirmation flags, its
// defaults and its handler. The TypeScript contract that the edge function, the admin client and
// the CLI use (supabase/functions/_shared/admin-contract.ts) must say the same: every list and
// every default is compared whole, so an action in the table missing from TypeScript fails, and so
// does one in TypeScript missing from the table. The defaults of a step are one set,
// partition_mgmt.step_defaults(): migration_step's null parameters, the action step's defaults and
// ADMIN_DEFAULTS.step (migration-driver.ts passes null: test/migration/migration-cycle.test.ts).
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADMIN_ACTIONS, ADMIN_DEFAULTS, AdminRequestSchema, CONFIRMED_ACTIONS, FRESH_SESSION_ACTIONS, READ_ONLY_ACTIONS, TABLE_ACTIONS,
} from "../../supabase/functions/_shared/admin-contract.ts";
import { connect } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";

interface ActionRow {
  action: string; table_required: boolean; exclusive: boolean; fresh_session: boolean; read_only: boolean; confirmed: boolean;
  defaults: Record<string, unknown>; handler: string;
}

const sorted = (list: readonly string[]) => [...list].sort();

class Rollback extends Error {}

/** fn in a transaction that is rolled back afterwards (the table is the shared test database's). */
async function rolledBack(sql: postgres.Sql, fn: (tx: postgres.TransactionSql) => Promise<void>): Promise<void> {
  await sql.begin(async (tx) => {
    await fn(tx);
    throw new Rollback();
  }).catch((e: unknown) => {
    if (!(e instanceof Rollback)) throw e;
  });
}

describe("admin actions: the SQL table and the TypeScript contract agree", () => {
  const sql = connect(testEnv.dbUrl);
  let rows: ActionRow[] = [];
  const where = (flag: keyof ActionRow) => rows.filter((r) => r[flag] === true).map((r) => r.action);
  beforeAll(async () => {
    rows = await sql<ActionRow[]>`
      select action, table_required, exclusive, fresh_session, read_only, confirmed, defaults, handler from partition_mgmt.admin_actions()`;
  });
  afterAll(async () => {
    await sql.end();
  });

  it("admin_actions() lists the table's rows, in the operator's order", async () => {
    const table = await sql<{ name: string }[]>`select name from partition_mgmt.admin_action order by ord`;
    expect(rows.map((r) => r.action)).toEqual(table.map((r) => r.name));
    expect(rows.length).toBeGreaterThan(10);
  });

  it("the same actions, in the same order", () => {
    expect([...ADMIN_ACTIONS]).toEqual(rows.map((r) => r.action));
  });

  it("the same table requirement, fresh-session, read-only and confirmation lists", () => {
    expect({
      table: sorted(TABLE_ACTIONS), fresh: sorted(FRESH_SESSION_ACTIONS), readOnly: sorted(READ_ONLY_ACTIONS), confirmed: sorted(CONFIRMED_ACTIONS),
    }).toEqual({
      table: sorted(where("table_required")), fresh: sorted(where("fresh_session")), readOnly: sorted(where("read_only")), confirmed: sorted(where("confirmed")),
    });
  });

  it("the same defaults, action by action, and every one a parameter the contract accepts", () => {
    const fromTable = Object.fromEntries(rows.filter((r) => Object.keys(r.defaults).length > 0).map((r) => [r.action, r.defaults]));
    expect(ADMIN_DEFAULTS).toEqual(fromTable);
    const accepted = new Set(Object.keys(AdminRequestSchema.shape));
    const unknown = rows.flatMap((r) => Object.keys(r.defaults).filter((name) => !accepted.has(name)).map((name) => `${r.action}.${name}`));
    expect(unknown).toEqual([]);
  });

  it("the table refuses an action that only reads but takes the lock, or is confirmed without taking it", async () => {
    await rolledBack(sql, async (tx) => {
      await expect(tx`update partition_mgmt.admin_action set exclusive = true where name = 'status'`).rejects.toThrow(/admin_action_read_only_not_exclusive/);
    });
    await rolledBack(sql, async (tx) => {
      await expect(tx`update partition_mgmt.admin_action set exclusive = false where name = 'swap'`).rejects.toThrow(/admin_action_confirmed_exclusive/);
    });
  });
});

describe("admin actions: handlers and privileges", () => {
  const sql = connect(testEnv.dbUrl);
  afterAll(async () => {
    await sql.end();
  });

  it("every row's handler is (text, jsonb) returning jsonb, executable by its owner alone", async () => {
    // PUBLIC shows as "-"; a function never granted or revoked has a null ACL: PUBLIC may execute it
    const handlers = await sql<{ name: string; returns: string; grantees: string[] }[]>`
      select a.name, p.prorettype::regtype::text as returns,
             coalesce((select array_agg(distinct g.grantee::regrole::text)
                       from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
                       where g.grantee <> p.proowner and g.privilege_type = 'EXECUTE'), '{}') as grantees
      from partition_mgmt.admin_action a
      join pg_proc p on p.oid = to_regprocedure(a.handler || '(text, jsonb)')
      order by a.ord`;
    expect(handlers.map((h) => h.name)).toEqual([...ADMIN_ACTIONS]);
    for (const h of handlers) expect(h).toEqual({ name: h.name, returns: "jsonb", grantees: [] });
  });

  it("anon and authenticated can neither read nor write the table; service_role only reads it", async () => {
    const [p] = await sql<Record<string, boolean>[]>`
      select has_table_privilege('anon', 'partition_mgmt.admin_action', 'select') as anon_select,
             has_table_privilege('authenticated', 'partition_mgmt.admin_action', 'select') as authenticated_select,
             has_table_privilege('authenticated', 'partition_mgmt.admin_action', 'insert, update, delete') as authenticated_write,
             has_table_privilege('service_role', 'partition_mgmt.admin_action', 'select') as service_select,
             has_table_privilege('service_role', 'partition_mgmt.admin_action', 'insert, update, delete, truncate') as service_write`;
    expect(p).toEqual({ anon_select: false, authenticated_select: false, authenticated_write: false, service_select: true, service_write: false });
  });

  it("a row whose handler does not exist: the call answers error with what to do, and is audited", async () => {
    await rolledBack(sql, async (tx) => {
      await tx`update partition_mgmt.admin_action set handler = 'partition_mgmt.no_such_handler' where name = 'monitor'`;
      const [first] = await tx<{ r: { status: string; error: { message: string; hint: string; sqlstate: string }; audit_id: number } }[]>`
        select partition_mgmt.admin_run('monitor') as r`;
      const r = first!.r;
      expect(r.status).toBe("error");
      expect(r.error).toMatchObject({ sqlstate: "42883", message: expect.stringMatching(/handler of admin action "monitor", partition_mgmt\.no_such_handler\(text, jsonb\)/) });
      expect(r.error.hint).toMatch(/admin_action\.handler/);
      const [audit] = await tx<{ status: string; action: string }[]>`select status, action from partition_mgmt.admin_audit where id = ${r.audit_id}`;
      expect(audit).toEqual({ status: "error", action: "monitor" });
    });
  });

  it("a new action is a handler and a row: admin_run dispatches it with its defaults under the caller's parameters", async () => {
    await rolledBack(sql, async (tx) => {
      await tx.unsafe(`create function partition_mgmt.admin_action_echo(p_table_key text, p_args jsonb) returns jsonb
        language sql set search_path = '' as $$ select jsonb_build_object('table', p_table_key, 'args', p_args) $$`);
      await tx`insert into partition_mgmt.admin_action (name, ord, table_required, exclusive, fresh_session, read_only, confirmed, defaults, handler, sql_api)
        values ('echo', 99, true, false, false, true, false, '{"batch_size": 7, "swap": false}', 'partition_mgmt.admin_action_echo', 'none')`;
      const [first] = await tx<{ r: { status: string; result: unknown } }[]>`select partition_mgmt.admin_run('echo', 'petri', '{"swap": true}') as r`;
      expect(first?.r).toMatchObject({ status: "ok", result: { table: "petri", args: { batch_size: 7, swap: true } } });
      const [bare] = await tx<{ r: { status: string; error: { message: string } } }[]>`select partition_mgmt.admin_run('echo') as r`;
      expect(bare?.r).toMatchObject({ status: "invalid", error: { message: 'action "echo" needs a table' } });
    });
  });
});

describe("one set of step defaults", () => {
  const sql = connect(testEnv.dbUrl);
  afterAll(async () => {
    await sql.end();
  });

  it("step_defaults() is the action step's defaults and ADMIN_DEFAULTS.step, and a step never swaps unless asked", async () => {
    const [d] = await sql<{ sql: Record<string, unknown>; action: Record<string, unknown> }[]>`
      select partition_mgmt.step_defaults() as sql, (select defaults from partition_mgmt.admin_action where name = 'step') as action`;
    expect(d?.action).toEqual(d?.sql);
    expect(ADMIN_DEFAULTS.step).toEqual(d?.sql);
    expect(d?.sql).toMatchObject({ swap: false });
  });

  it("migration_step, migration_next_step and migration_runner have no default of their own for them: null is step_defaults()'s", async () => {
    const fns = await sql<{ name: string; args: string }[]>`
      select p.proname as name, pg_get_function_arguments(p.oid) as args from pg_proc p
      where p.pronamespace = 'partition_mgmt'::regnamespace and p.proname in ('migration_step', 'migration_next_step', 'migration_runner')
      order by p.proname`;
    expect(fns.map((f) => f.name)).toEqual(["migration_next_step", "migration_runner", "migration_step"]);
    for (const f of fns) {
      const defaults = [...f.args.matchAll(/(p_swap|p_batch_size|p_lock_timeout|p_attempts) \w+ DEFAULT ([^,]+)/g)].map((m) => `${m[1]} ${m[2]}`);
      expect({ name: f.name, defaults: defaults.filter((x) => !/ NULL::/.test(x)) }).toEqual({ name: f.name, defaults: [] });
      expect(defaults.length).toBeGreaterThan(0);
    }
    // the runner writes the defaults into its statement
    const [runner] = await sql<{ statement: string }[]>`select partition_mgmt.migration_runner('petri') as statement`;
    const [defaults] = await sql<{ d: { swap: boolean; batch_size: number } }[]>`select partition_mgmt.step_defaults() as d`;
    expect(runner?.statement).toContain(`partition_mgmt.migration_step('petri', ${String(defaults?.d.swap)}, ${defaults?.d.batch_size});`);
  });
});
