// Loads deterministic demo data into a database.
//   npm run generate -- [--db-url URL] [--seed N] [--companies N] [--programs-per-company N]
//                       [--sites-per-program N] [--months N] [--petri-per-site-month N]
//                       [--gasifier-per-site-month N]
import postgres from "postgres";
import { DEFAULT_DEMO, expectedCounts, generateDemoData, type DemoDataOptions } from "./lib/demo-data.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";
import { existsSync } from "node:fs";

type NumericOption = Exclude<keyof DemoDataOptions, "asOf">;
const flags: Record<string, NumericOption> = {
  "--seed": "seed",
  "--companies": "companies",
  "--programs-per-company": "programsPerCompany",
  "--sites-per-program": "sitesPerProgram",
  "--months": "months",
  "--petri-per-site-month": "petriPerSiteMonth",
  "--gasifier-per-site-month": "gasifierPerSiteMonth",
  "--observations-per-submission": "observationsPerSubmission",
};

function parseArgs(argv: string[]): { dbUrl: string; opts: DemoDataOptions } {
  const opts: DemoDataOptions = { ...DEFAULT_DEMO };
  let dbUrl = process.env.SUPABASE_DB_URL ?? "";
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] ?? "";
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--db-url") {
      dbUrl = value;
      continue;
    }
    const key = flags[flag];
    if (!key) throw new Error(`unknown option ${flag}; known: --db-url ${Object.keys(flags).join(" ")}`);
    const n = Number(value);
    if (!Number.isFinite(n)) throw new Error(`${flag} must be a number, got "${value}"`);
    opts[key] = n;
  }
  if (!dbUrl && existsSync(DEV_STACK.envFile)) dbUrl = readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL ?? "";
  if (!dbUrl) throw new Error("no database: pass --db-url or run `npm start` first (it writes .env.local)");
  return { dbUrl, opts };
}

const { dbUrl, opts } = parseArgs(process.argv.slice(2));
const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
const t0 = performance.now();
try {
  const want = expectedCounts(opts);
  console.log(`generating ${want.petri.toLocaleString()} petri + ${want.gasifier.toLocaleString()} gasifier observations (seed ${opts.seed})`);
  const got = await generateDemoData(sql, opts, (step) => console.log(`  … ${step}`));
  const secs = (performance.now() - t0) / 1000;
  if (got.skipped) console.log("demo data for this seed is already loaded; nothing to do");
  console.table(got);
  if (!got.skipped) {
    const rate = Math.round((got.petri + got.gasifier) / secs * 60);
    console.log(`done in ${secs.toFixed(1)} s (${rate.toLocaleString()} observations/min)`);
  }
} finally {
  await sql.end();
}
