// `npm run generate` as a user runs it, against a hosted-like database: a database of the test
// cluster (postgres is not a superuser, the database-wide statement_timeout is hosted's) whose
// auth.users also has hosted's unique index on email (users_email_partial_key, GoTrue's).
// Covers: one month of history (no program ends before it starts), seeds added one after another,
// before the swap, after it (gasifier rows without program_id included) and after a finalize, the
// counts each run adds; a seed already loaded adds nothing and says so; invalid options and
// combinations, an unreachable database and a database without the demo app each get one line
// (and the usage for options), never a stack trace.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { DEFAULT_DEMO, type DemoCounts, type DemoDataOptions, expectedCounts } from "../../scripts/lib/demo-data.ts";
import { finalize, migrateOnline } from "../../scripts/lib/migration-driver.ts";
import { asSuperuser, emptyDatabase, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { capture, type Captured, STACK_LINE } from "../helpers/processes.ts";

/** npm run generate -- <args>, with no database in the environment but the one given. */
async function generate(args: string[]): Promise<Captured> {
  const env = { ...process.env };
  delete env.SUPABASE_DB_URL;
  return capture("npm", ["run", "--silent", "generate", "--", ...args], { cwd: REPO_ROOT, env });
}

/** The flags of a demo shape. */
function flags(o: Partial<DemoDataOptions>): string[] {
  const names: Partial<Record<keyof DemoDataOptions, string>> = {
    seed: "--seed", companies: "--companies", programsPerCompany: "--programs-per-company", sitesPerProgram: "--sites-per-program",
    months: "--months", petriPerSiteMonth: "--petri-per-site-month", gasifierPerSiteMonth: "--gasifier-per-site-month",
  };
  return Object.entries(o).flatMap(([k, v]) => [names[k as keyof DemoDataOptions] ?? "", String(v)]);
}

const SHAPE = { companies: 1, programsPerCompany: 3, sitesPerProgram: 2, petriPerSiteMonth: 30, gasifierPerSiteMonth: 20 };

describe("npm run generate on a hosted-like database", () => {
  let db: FreshDb;
  let want: DemoCounts;

  const counts = async (): Promise<DemoCounts> => {
    const [r] = await db.sql<DemoCounts[]>`
      select (select count(*) from public.companies)::int as companies, (select count(*) from public.users)::int as users,
             (select count(*) from public.pilot_programs)::int as programs, (select count(*) from public.sites)::int as sites,
             (select count(*) from public.submissions)::int as submissions,
             (select count(*) from public.petri_observations)::int as petri, (select count(*) from public.gasifier_observations)::int as gasifier`;
    return r!;
  };
  const add = (o: Partial<DemoDataOptions>) => {
    const e = expectedCounts({ ...DEFAULT_DEMO, ...o });
    want = Object.fromEntries(Object.entries(want).map(([k, v]) => [k, v + e[k as keyof DemoCounts]])) as unknown as DemoCounts;
  };

  beforeAll(async () => {
    db = await freshDatabase("generate_cli", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    // hosted's auth schema: one account per email (GoTrue's partial unique index)
    await asSuperuser(async (admin) => {
      await admin.unsafe(`alter table auth.users add column if not exists is_sso_user boolean not null default false`);
      await admin.unsafe(`create unique index if not exists users_email_partial_key on auth.users (email) where is_sso_user = false`);
    }, db.name);
    want = await counts();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("one month of history: every program starts and ends in order, none has ended yet", async () => {
    const o = { seed: 101, months: 1, ...SHAPE };
    const r = await generate(["--db-url", db.url, ...flags(o)]);
    expect(r.stderr).not.toMatch(STACK_LINE);
    expect(r.code, r.stderr).toBe(0);
    add(o);
    expect(await counts()).toEqual(want);
    const programs = await db.sql<{ ordered: boolean; status: string }[]>`
      select end_date >= start_date as ordered, status::text from public.pilot_programs p
      join public.companies c using (company_id) where c.company_id = md5('101:company:1')::uuid`;
    expect(programs).toHaveLength(3);
    expect(programs.every((p) => p.ordered && p.status === "active")).toBe(true);
  });

  it("another seed adds to the first (hosted's one account per email holds)", async () => {
    const o = { seed: 102, months: 3, ...SHAPE };
    const r = await generate(["--db-url", db.url, ...flags(o)]);
    expect(r.code, r.stderr).toBe(0);
    add(o);
    expect(await counts()).toEqual(want);
    const [nullprog] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.gasifier_observations where program_id is null`;
    expect(nullprog?.n).toBeGreaterThan(0);
  });

  it("a seed already loaded adds nothing and says so", async () => {
    const r = await generate(["--db-url", db.url, ...flags({ seed: 102, months: 3, ...SHAPE })]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/seed 102 is already loaded in 127\.0\.0\.1:\d+: nothing added \(pass another --seed to add more\)/);
    expect(await counts()).toEqual(want);
  });

  it("after the swap of both tables, with gasifier rows without program_id, and after a finalize", async () => {
    for (const t of ["petri", "gasifier"]) expect((await migrateOnline(db.sql, t, { batchSize: 500, swap: true })).phase).toBe("swapped");
    const swapped = { seed: 103, months: 3, ...SHAPE };
    const r = await generate(["--db-url", db.url, ...flags(swapped)]);
    expect(r.stderr).not.toMatch(STACK_LINE);
    expect(r.code, r.stderr).toBe(0);
    add(swapped);
    expect(await counts()).toEqual(want);
    // the new rows are in the partitioned tables, each with its program (the swapped table requires one)
    const [kinds] = await db.sql<{ petri: string; gasifier: string; keyless: number }[]>`
      select (select relkind::text from pg_class where oid = 'public.petri_observations'::regclass) as petri,
             (select relkind::text from pg_class where oid = 'public.gasifier_observations'::regclass) as gasifier,
             (select count(*)::int from public.gasifier_observations where program_id is null) as keyless`;
    expect(kinds).toEqual({ petri: "p", gasifier: "p", keyless: 0 });

    await finalize(db.sql, "petri");
    const later = { seed: 104, months: 1, ...SHAPE };
    const again = await generate(["--db-url", db.url, ...flags(later)]);
    expect(again.code, again.stderr).toBe(0);
    add(later);
    expect(await counts()).toEqual(want);
  }, 240_000);

  it("invalid options and combinations: one line naming the option, then the usage, exit 2", async () => {
    const cases: [string[], RegExp][] = [
      [["--months", "0"], /^npm run generate: --months must be at least 1, got 0$/],
      [["--months", "121"], /^npm run generate: --months must be at most 120, got 121$/],
      [["--months", "2.5"], /^npm run generate: --months must be an integer of at least 0, got "2\.5"$/],
      [["--companies", "0"], /^npm run generate: --companies must be at least 1, got 0$/],
      [["--seed=-1"], /^npm run generate: --seed must be an integer of at least 0, got "-1"$/],
      [["--petri-per-site-month", "0", "--gasifier-per-site-month", "0"], /^npm run generate: --petri-per-site-month and --gasifier-per-site-month are both 0: nothing to generate$/],
      [["--months"], /^npm run generate: --months needs a value$/],
      [["--db-url", "not a url"], /^npm run generate: --db-url is not a postgresql:\/\/ URL: "not a url"$/],
      [["--frobnicate", "1"], /^npm run generate: unknown option --frobnicate$/],
    ];
    for (const [args, line] of cases) {
      const r = await generate(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.split("\n")[0], args.join(" ")).toMatch(line);
      expect(r.stderr).toMatch(/^usage: npm run generate -- \[options\]$/m);
      expect(r.stderr).not.toMatch(STACK_LINE);
    }
  }, 120_000);

  it("an unreachable database or one without the demo app: one line with what to do, exit 1", async () => {
    const refused = await generate(["--db-url", "postgresql://postgres:postgres@127.0.0.1:1/postgres", "--seed", "105"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^npm run generate: cannot connect to 127\.0\.0\.1:1 \(from --db-url\): .*ECONNREFUSED/);
    expect(refused.stderr).not.toMatch(STACK_LINE);

    const bare = await emptyDatabase(`t_generate_bare_${process.pid}`);
    try {
      const r = await generate(["--db-url", bare.url, "--seed", "106"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^npm run generate: 127\.0\.0\.1:\d+ has no demo app schema/);
      expect(r.stderr).not.toMatch(STACK_LINE);
    } finally {
      await bare.drop();
    }
  }, 60_000);
});
