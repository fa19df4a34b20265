// `npm run gen:types`: regenerates supabase/types/database.types.ts from a migrated database.
//
//   npm run gen:types                                  # the local stack (`npm start`; .env.local)
//   npm run gen:types -- --db-url postgresql://…       # any migrated database
//
// Commit the result: a test regenerates it against the migrated test template and fails when the
// committed file differs.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative } from "node:path";
import { commandLine, runCli, UsageError } from "./lib/cli.ts";
import { REPO_ROOT } from "./lib/cluster.ts";
import { DATABASE_TYPES_PATH, generateDatabaseTypes } from "./lib/database-types.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";

const NAME = "npm run gen:types";
const USAGE = `usage: npm run gen:types [-- --db-url <url>]

Writes ${relative(REPO_ROOT, DATABASE_TYPES_PATH)} with supabase gen types from a migrated database
(default: SUPABASE_DB_URL, else the local stack's, from .env.local). Commit the result.

options:
  --db-url <url>   a migrated database
  -h, --help       this help`;

const { values } = commandLine({ name: NAME, usage: USAGE, options: { "db-url": { type: "string" } } });

function dbUrl(): string {
  if (values["db-url"]) return values["db-url"];
  if (process.env.SUPABASE_DB_URL) return process.env.SUPABASE_DB_URL;
  if (existsSync(DEV_STACK.envFile)) {
    const fromFile = readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL;
    if (fromFile) return fromFile;
  }
  throw new UsageError("no database: run `npm start` first, or pass --db-url <url of a migrated database>");
}

await runCli(NAME, USAGE, async () => {
  const url = dbUrl();
  const types = generateDatabaseTypes(url);
  mkdirSync(dirname(DATABASE_TYPES_PATH), { recursive: true });
  writeFileSync(DATABASE_TYPES_PATH, types);
  console.log(`wrote ${relative(REPO_ROOT, DATABASE_TYPES_PATH)} (${types.split("\n").length} lines) from ${new URL(url).host}`);
});
