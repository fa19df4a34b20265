// The backup step before a migration (scripts/lib/backup.ts): pg_dump -Fc of the observation
// tables, then a restore of it after the rows were lost, proven once.
// Covers: the dump lists data for both tables; after every row is deleted, pg_restore --data-only
// brings back exactly the same rows (count and content hash of each table).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { backupTables, restoreTableData } from "../../scripts/lib/backup.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";

describe("backup before the migration", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("mig_backup");
    await loadSmallDemo(db.sql, { petriPerSiteMonth: 20, gasifierPerSiteMonth: 10 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  const fingerprint = async () => (await db.sql<{ p: string; g: string }[]>`
    select (select count(*) || ':' || coalesce(md5(string_agg(t::text, ',' order by observation_id)), '') from public.petri_observations t) as p,
           (select count(*) || ':' || coalesce(md5(string_agg(t::text, ',' order by observation_id)), '') from public.gasifier_observations t) as g`)[0];

  it("restores exactly the rows it saved", async () => {
    const before = await fingerprint();
    const file = await backupTables(db.url);
    try {
      await db.sql`delete from public.petri_observations`;
      await db.sql`delete from public.gasifier_observations`;
      expect((await fingerprint())?.p).toMatch(/^0:/);
      await restoreTableData(db.url, file);
      expect(await fingerprint()).toEqual(before);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
