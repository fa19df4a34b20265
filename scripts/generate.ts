// `npm run generate -- [options]`: loads deterministic demo data into a database that has the demo
// app's schema (the local stack after `npm start`, or any database given with --db-url), before or
// after the swap.
import { existsSync } from "node:fs";
import postgres from "postgres";
import { CliFailure, commandLine, integerOption, runCli, UsageError } from "./lib/cli.ts";
import { DEFAULT_DEMO, type DemoDataOptions, expectedCounts, generateDemoData, validateDemoOptions } from "./lib/demo-data.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";

const NAME = "npm run generate";
const USAGE = `usage: npm run generate -- [options]

Adds demo companies, users, programs, sites, submissions and observations (petri and gasifier) to
a database with the demo app's schema, before or after the swap. Deterministic: the same options
give the same rows; a seed that is already loaded adds nothing (pass another --seed to add more).

options (defaults in brackets):
  --db-url <url>                    the database [SUPABASE_DB_URL, else .env.local from npm start]
  --seed <n>                        [${DEFAULT_DEMO.seed}]
  --companies <n>                   [${DEFAULT_DEMO.companies}]
  --programs-per-company <n>        [${DEFAULT_DEMO.programsPerCompany}]
  --sites-per-program <n>           [${DEFAULT_DEMO.sitesPerProgram}]
  --months <n>                      months of history ending with this one, 1 to 120 [${DEFAULT_DEMO.months}]
  --petri-per-site-month <n>        [${DEFAULT_DEMO.petriPerSiteMonth}]
  --gasifier-per-site-month <n>     [${DEFAULT_DEMO.gasifierPerSiteMonth}]
  --observations-per-submission <n> [${DEFAULT_DEMO.observationsPerSubmission}]
  -h, --help                        this help

example: npm run generate -- --seed 7 --months 12 --sites-per-program 10`;

/** flag -> option, each a non-negative integer (validateDemoOptions checks the ranges) */
const NUMERIC_FLAGS = {
  seed: "seed",
  companies: "companies",
  "programs-per-company": "programsPerCompany",
  "sites-per-program": "sitesPerProgram",
  months: "months",
  "petri-per-site-month": "petriPerSiteMonth",
  "gasifier-per-site-month": "gasifierPerSiteMonth",
  "observations-per-submission": "observationsPerSubmission",
} as const satisfies Record<string, keyof DemoDataOptions>;

const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: {
    "db-url": { type: "string" },
    ...Object.fromEntries(Object.keys(NUMERIC_FLAGS).map((flag) => [flag, { type: "string" as const }])),
  },
});

/** The options, or a UsageError naming what is wrong with them (one line). */
function demoOptions(): DemoDataOptions {
  const opts: DemoDataOptions = { ...DEFAULT_DEMO };
  for (const [flag, key] of Object.entries(NUMERIC_FLAGS)) {
    const n = integerOption(`--${flag}`, (values as Record<string, string | undefined>)[flag]);
    if (n !== undefined) opts[key] = n;
  }
  try {
    validateDemoOptions(opts);
  } catch (err) {
    // "demo option months must be at least 1, got 0" -> "--months must be at least 1, got 0"
    const flag = Object.entries(NUMERIC_FLAGS).find(([, key]) => (err as Error).message.includes(`option ${key} `))?.[0];
    throw new UsageError(flag ? (err as Error).message.replace(/^demo option \S+/, `--${flag}`) : (err as Error).message);
  }
  if (opts.petriPerSiteMonth === 0 && opts.gasifierPerSiteMonth === 0) {
    throw new UsageError("--petri-per-site-month and --gasifier-per-site-month are both 0: nothing to generate");
  }
  return opts;
}

function databaseUrl(): { url: string; from: string } {
  const given = values["db-url"] as string | undefined;
  const candidates: [string | undefined, string][] = [
    [given, "--db-url"],
    [process.env.SUPABASE_DB_URL, "SUPABASE_DB_URL"],
    [existsSync(DEV_STACK.envFile) ? readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL : undefined, ".env.local"],
  ];
  const [url, from] = candidates.find(([u]) => u) ?? [];
  if (!url || !from) throw new UsageError("no database: pass --db-url <postgresql://…>, or run `npm start` first (it writes .env.local)");
  try {
    const u = new URL(url);
    if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error("not postgres");
  } catch {
    throw new UsageError(`${from} is not a postgresql:// URL: "${url.replace(/:[^:@/]*@/, ":***@")}"`);
  }
  return { url, from };
}

await runCli(NAME, USAGE, async () => {
  const opts = demoOptions();
  const { url, from } = databaseUrl();
  const host = new URL(url).host;
  // prepare: false, so the transaction pooler (Supavisor, port 6543) works as well as a direct connection
  const sql = postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10 });
  const t0 = performance.now();
  try {
    const [app] = await sql<{ ok: boolean }[]>`select to_regclass('public.petri_observations') is not null and to_regclass('public.companies') is not null as ok`
      .catch((err: unknown) => {
        const code = (err as { code?: string }).code;
        throw new CliFailure(`cannot connect to ${host} (from ${from}): ${(err as Error).message}${code && !(err as Error).message.includes(code) ? ` (${code})` : ""}`,
          from === ".env.local" ? ["is the local stack running? npm start"] : ["check the URL, and that the database accepts connections from here"]);
      });
    if (!app?.ok) throw new CliFailure(`${host} has no demo app schema (public.companies, public.petri_observations)`, ["npm start builds it on the local stack; elsewhere push demo-app/supabase/migrations first"]);
    const want = expectedCounts(opts);
    console.log(`generating ${want.petri.toLocaleString()} petri + ${want.gasifier.toLocaleString()} gasifier observations (seed ${opts.seed}) into ${host}`);
    const got = await generateDemoData(sql, opts, (step) => console.log(`  … ${step}`));
    const secs = (performance.now() - t0) / 1000;
    if (got.skipped) {
      console.log(`seed ${opts.seed} is already loaded in ${host}: nothing added (pass another --seed to add more). The database holds:`);
    }
    console.table(got);
    if (!got.skipped) {
      const rate = Math.round((want.petri + want.gasifier) / secs * 60);
      console.log(`done in ${secs.toFixed(1)} s (${rate.toLocaleString()} observations/min)`);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
});
