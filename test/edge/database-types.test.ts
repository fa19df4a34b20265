// The generated database types (`npm run gen:types`) of both states are current and expose no
// partition: supabase/types/database.types.ts (before the swap) and database-after-swap.types.ts
// (both tables swapped and finalized).
// Covers: regenerating with the Supabase CLI against a database cloned from the migrated template,
// after creating a program and a site (so the partition tree has partitions to leak), yields the
// committed before-swap file byte for byte; the same database after swapForTypes (the online
// migration of both tables, the swap, finalize) yields the committed after-swap file; neither lists
// a partition from partition_mgmt.partition_registry or the `partitions` schema; the live tables and
// the read API are in both; what the swap changes for an app's types: the *_partitioned copies are
// gone, no *_old table is left, the gasifier table's program_id (a partition key) is NOT NULL in Row
// and Insert, every other table, view, function and enum reads the same.
// The template itself is never connected to: a connection would block the other suites' clones.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_TYPES_PATHS, generateDatabaseTypes, swapForTypes } from "../../scripts/lib/database-types.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";

/** The text of one table's (or view's) entry: `"name": {` to the start of the next entry. */
function entry(types: string, name: string): string {
  const start = types.indexOf(`"${name}": {`);
  if (start === -1) return "";
  const next = types.slice(start + 1).search(/\},"[a-z_]+": \{|\n {10}\}/);
  return types.slice(start, next === -1 ? undefined : start + 1 + next);
}

/** The names listed under Tables (everything between `Tables: {` and `Views: {`). */
function tableNames(types: string): string[] {
  const section = types.slice(types.indexOf("Tables: {"), types.indexOf("Views: {"));
  return [...section.matchAll(/"([a-z_]+)": \{\n\s+Row:/g)].map((m) => m[1]!);
}

/** What a table's Row, Insert or Update says of one column. */
function column(types: string, table: string, part: "Row" | "Insert" | "Update", name: string): string | undefined {
  const text = entry(types, table);
  const block = text.slice(text.indexOf(`${part}: {`));
  return new RegExp(`"${name}"(\\??: [^,\\n]+)`).exec(block)?.[1];
}

describe("generated database types", () => {
  let db: FreshDb;
  let before: string;
  let after: string;
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
    before = await generateDatabaseTypes(db.url, "before-swap");
    await swapForTypes(db.sql);
    const rows = await db.sql<{ partition_name: string }[]>`select partition_name from partition_mgmt.partition_registry`;
    partitionNames = rows.map((r) => r.partition_name);
    after = await generateDatabaseTypes(db.url, "after-swap");
  }, 600_000);

  afterAll(async () => {
    await db?.drop();
  });

  it("the committed files are what the migrations generate (run `npm run gen:types` after changing them)", () => {
    expect(before, "supabase/types/database.types.ts is stale: run `npm run gen:types` and commit it")
      .toBe(readFileSync(DATABASE_TYPES_PATHS["before-swap"], "utf8"));
    expect(after, "supabase/types/database-after-swap.types.ts is stale: run `npm run gen:types` and commit it")
      .toBe(readFileSync(DATABASE_TYPES_PATHS["after-swap"], "utf8"));
  });

  it("list no partition, though the database has partitions", () => {
    expect(partitionNames.length).toBeGreaterThan(4);
    for (const types of [before, after]) {
      expect(partitionNames.filter((name) => types.includes(name))).toEqual([]);
      expect(types).not.toMatch(/petri_p_|gasifier_p_|_default\b|"partitions"/);
    }
  });

  it("list the live tables and the read API the frontend uses", () => {
    for (const types of [before, after]) {
      for (const name of ["petri_observations", "gasifier_observations", "get_observations_optimized", "get_daily_metrics", "get_observation_by_id"]) {
        expect(types).toContain(`"${name}"`);
      }
    }
  });

  it("after the swap: no *_partitioned copy and no *_old table; the other tables as before", () => {
    expect(tableNames(before)).toEqual(expect.arrayContaining(["petri_observations_partitioned", "gasifier_observations_partitioned"]));
    expect(tableNames(after).filter((t) => /_partitioned$|_old$/.test(t))).toEqual([]);
    expect(tableNames(after)).toEqual(tableNames(before).filter((t) => !t.endsWith("_partitioned")));
  });

  it("after the swap: gasifier program_id is NOT NULL in Row and Insert (a partition key), as in the copy before it", () => {
    expect(column(before, "gasifier_observations", "Row", "program_id")).toBe(": string | null");
    expect(column(before, "gasifier_observations", "Insert", "program_id")).toBe("?: string | null");
    expect(column(after, "gasifier_observations", "Row", "program_id")).toBe(": string");
    // the database accepts a row without it (its site's program is filled in); the generated type does not
    expect(column(after, "gasifier_observations", "Insert", "program_id")).toBe(": string");
    expect(column(after, "gasifier_observations", "Update", "program_id")).toBe("?: string");
    for (const part of ["Row", "Insert", "Update"] as const) {
      expect(column(after, "gasifier_observations", part, "program_id")).toBe(column(before, "gasifier_observations_partitioned", part, "program_id"));
    }
  });

  it("after the swap: nothing else changes (the petri table, the views, the read API of petri, the enums)", () => {
    const body = (types: string) => types.slice(types.indexOf("export type Json"));
    let expected = body(before);
    for (const copy of ["petri_observations_partitioned", "gasifier_observations_partitioned"]) expected = expected.replace(`${entry(expected, copy)}},`, "");
    const gasifier = entry(expected, "gasifier_observations");
    const swappedGasifier = gasifier
      .replace(/("program_id"): string \| null,/, "$1: string,")
      .replace(/("program_id")\?: string \| null,(.*\n\s*\}\n\s*Update)/, "$1: string,$2")
      .replace(/("program_id")\?: string \| null,(.*\n\s*\}\n\s*Relationships)/, "$1?: string,$2");
    expected = expected.replace(gasifier, swappedGasifier);
    // get_gasifier_observations_optimized returns the table's rows
    const fn = expected.slice(expected.indexOf('"get_gasifier_observations_optimized":'), expected.indexOf('"get_observation_aggregates":'));
    expected = expected.replace(fn, fn.replace('"program_id": string | null,', '"program_id": string,'));
    expect(body(after)).toBe(expected);
  });
});
