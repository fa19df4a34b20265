// supabase db push with the real CLI: every file recorded, a second push applies nothing.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { REPO_ROOT } from "../scripts/lib/cluster.ts";
import { pushMigrations } from "../scripts/lib/migrations.ts";
import { testEnv } from "./helpers/env.ts";
import { withDatabase } from "./helpers/db.ts";

const DB = `t_push_${process.pid}`;

describe("supabase db push", () => {
  const admin = postgres(testEnv.adminUrl, { max: 1, onnotice: () => {} });
  beforeAll(async () => {
    // an empty database made from template1, which carries the bootstrap only
    await admin.unsafe(`create database ${DB} owner postgres`);
  });
  afterAll(async () => {
    await admin.unsafe(`drop database if exists ${DB} with (force)`);
    await admin.end();
  });

  it("applies every migration once and nothing the second time", async () => {
    const files = readdirSync(join(REPO_ROOT, "supabase", "migrations")).filter((f) => f.endsWith(".sql")).sort();
    expect(files.length).toBeGreaterThan(0);
    const url = withDatabase(testEnv.dbUrl, DB);

    const first = pushMigrations(url);
    expect(first.applied).toEqual(files);

    const second = pushMigrations(url);
    expect(second.applied).toEqual([]);
    expect(second.output).toMatch(/up to date/i);

    const sql = postgres(url, { max: 1, onnotice: () => {} });
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
