// The demo data generator: requested counts, deterministic across databases, no duplicates on rerun.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_DEMO, expectedCounts, generateDemoData, validateDemoOptions, type DemoDataOptions } from "../../scripts/lib/demo-data.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";

const small: DemoDataOptions = { ...DEFAULT_DEMO, seed: 7, companies: 2, programsPerCompany: 2, sitesPerProgram: 3, months: 4, petriPerSiteMonth: 25, gasifierPerSiteMonth: 8, observationsPerSubmission: 10, asOf: new Date() };

async function fingerprint(db: FreshDb): Promise<string> {
  const [r] = await db.sql<{ f: string }[]>`
    select md5(string_agg(t::text, '|' order by observation_id)) as f
    from (select observation_id, submission_id, site_id, program_id, petri_code, growth_index, placement, created_at
          from public.petri_observations) t`;
  const [g] = await db.sql<{ f: string }[]>`
    select md5(string_agg(t::text, '|' order by observation_id)) as f
    from (select observation_id, program_id, measure, chemical_type, created_at from public.gasifier_observations) t`;
  return `${r?.f}:${g?.f}`;
}

describe("demo data generator", () => {
  let a: FreshDb;
  let b: FreshDb;
  beforeAll(async () => {
    a = await freshDatabase("demo_a");
    b = await freshDatabase("demo_b");
  });
  afterAll(async () => {
    await a.drop();
    await b.drop();
  });

  it("produces exactly the requested counts", async () => {
    const got = await generateDemoData(a.sql, small);
    const want = expectedCounts(small);
    expect(got.skipped).toBe(false);
    expect({ ...got, skipped: undefined }).toEqual({ ...want, skipped: undefined });
    const [per] = await a.sql<{ min: number; max: number; months: number }[]>`
      select min(n)::int as min, max(n)::int as max, count(distinct m)::int as months from (
        select site_id, date_trunc('month', created_at) m, count(*) n from public.petri_observations group by 1, 2) x`;
    expect(per).toEqual({ min: small.petriPerSiteMonth, max: small.petriPerSiteMonth, months: small.months });
  });

  it("is deterministic: the same seed gives the same rows in another database", async () => {
    await generateDemoData(b.sql, small);
    expect(await fingerprint(b)).toEqual(await fingerprint(a));
  });

  it("writes no rows from the future and some gasifier rows without program_id", async () => {
    const [r] = await a.sql<{ future: number; nullprog: number }[]>`
      select (select count(*) from public.petri_observations where created_at > now())::int as future,
             (select count(*) from public.gasifier_observations where program_id is null)::int as nullprog`;
    expect(r?.future).toBe(0);
    expect(r?.nullprog).toBeGreaterThan(0);
  });

  it("does not duplicate data when run again", async () => {
    const again = await generateDemoData(a.sql, small);
    expect(again.skipped).toBe(true);
    expect(again.petri).toBe(expectedCounts(small).petri);
  });

  it("rejects bad options with a message naming the option", () => {
    expect(() => validateDemoOptions({ ...small, months: 0 })).toThrow(/months must be at least 1, got 0/);
    expect(() => validateDemoOptions({ ...small, sitesPerProgram: 2.5 })).toThrow(/sitesPerProgram must be a non-negative integer/);
    expect(() => validateDemoOptions({ ...small, gasifierNullProgramShare: 2 })).toThrow(/gasifierNullProgramShare/);
  });
});
