// The admin actions live in one place, partition_mgmt.admin_actions() (migration 0700): its
// names, table requirement, fresh-session flag and parameter defaults. The TypeScript contract
// that the edge function and the CLI validate with (supabase/functions/_shared/admin-contract.ts)
// must say the same; this test fails when one changes without the other.
import { connect } from "../helpers/db.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_ACTIONS, ADMIN_DEFAULTS, AdminRequestSchema, CONFIRMED_ACTIONS, FRESH_SESSION_ACTIONS, READ_ONLY_ACTIONS, TABLE_ACTIONS } from "../../supabase/functions/_shared/admin-contract.ts";
import { testEnv } from "../helpers/env.ts";

interface ActionRow { action: string; table_required: boolean; exclusive: boolean; fresh_session: boolean; defaults: Record<string, unknown> }

describe("admin actions: the SQL list and the TypeScript contract agree", () => {
  const sql = connect(testEnv.dbUrl);
  let rows: ActionRow[] = [];
  beforeAll(async () => {
    rows = await sql<ActionRow[]>`select action, table_required, exclusive, fresh_session, defaults from partition_mgmt.admin_actions()`;
  });
  afterAll(async () => {
    await sql.end();
  });

  it("the same actions, in the same order", () => {
    expect([...ADMIN_ACTIONS]).toEqual(rows.map((r) => r.action));
  });

  it("the same table requirement and fresh-session flag", () => {
    expect([...TABLE_ACTIONS].sort()).toEqual(rows.filter((r) => r.table_required).map((r) => r.action).sort());
    expect([...FRESH_SESSION_ACTIONS].sort()).toEqual(rows.filter((r) => r.fresh_session).map((r) => r.action).sort());
  });

  it("no action that takes the table's lock counts as read-only; every one the CLI confirms takes it", () => {
    const exclusive = rows.filter((r) => r.exclusive).map((r) => r.action);
    expect(READ_ONLY_ACTIONS.filter((a) => exclusive.includes(a))).toEqual([]);
    expect(CONFIRMED_ACTIONS.filter((a) => !exclusive.includes(a))).toEqual([]);
  });

  it("every default in SQL is the contract's, and a parameter the contract accepts", () => {
    const accepted = new Set(Object.keys(AdminRequestSchema.shape));
    for (const r of rows) {
      for (const [name, value] of Object.entries(r.defaults)) {
        expect({ action: r.action, name, value }).toEqual({ action: r.action, name, value: ADMIN_DEFAULTS[name as keyof typeof ADMIN_DEFAULTS] });
        expect({ action: r.action, name, accepted: accepted.has(name) }).toEqual({ action: r.action, name, accepted: true });
      }
    }
  });
});
