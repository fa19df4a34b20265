// The generated database types (supabase/types/database.types.ts, `npm run gen:types`) are current
// and expose no partition.
// Covers: regenerating with the Supabase CLI against a database cloned from the migrated template,
// after creating a program and a site (so the partition tree has partitions to leak), yields the
// committed file byte for byte; no partition name from partition_mgmt.partition_registry, and no
// `partitions` schema, appears in it; the read API and the live tables do.
// The template itself is never connected to: a connection would block the other suites' clones.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_TYPES_PATH, generateDatabaseTypes } from "../scripts/lib/database-types.ts";
import { freshDatabase, type FreshDb } from "./helpers/db.ts";

describe("generated database types", () => {
  let db: FreshDb;
  let generated: string;
  let partitionNames: string[];

  beforeAll(async () => {
    db = await freshDatabase("database_types", { treeShape: "literal" });
    const company = randomUUID();
    const program = randomUUID();
    await db.sql`insert into public.companies (company_id, name) values (${company}, 'Types Co')`;
    await db.sql`
      insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
      values (${program}, 'Types program', (now() - interval '2 months')::date, (now() + interval '1 month')::date, ${company})`;
    await db.sql`insert into public.sites (program_id, name) values (${program}, 'Types site')`;
    const rows = await db.sql<{ partition_name: string }[]>`select partition_name from partition_mgmt.partition_registry`;
    partitionNames = rows.map((r) => r.partition_name);
    generated = generateDatabaseTypes(db.url);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it("the committed file is what the migrations generate (run `npm run gen:types` after changing them)", () => {
    const committed = readFileSync(DATABASE_TYPES_PATH, "utf8");
    expect(generated, "supabase/types/database.types.ts is stale: run `npm run gen:types` and commit it").toBe(committed);
  });

  it("lists no partition, though the database has partitions", () => {
    expect(partitionNames.length).toBeGreaterThan(4);
    expect(partitionNames.filter((name) => generated.includes(name))).toEqual([]);
    expect(generated).not.toMatch(/petri_p_|gasifier_p_|_default\b|"partitions"/);
  });

  it("lists the live tables and the read API the frontend uses", () => {
    for (const name of ["petri_observations", "gasifier_observations", "get_observations_optimized", "get_daily_metrics"]) {
      expect(generated).toContain(`"${name}"`);
    }
  });
});
