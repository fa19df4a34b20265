// `npm run gen:types`: regenerates supabase/types/database.types.ts from a migrated database.
//
//   npm run gen:types                                  # the local stack (`npm start`; .env.local)
//   npm run gen:types -- --db-url postgresql://…       # any migrated database
//
// Commit the result: a test regenerates it against the migrated test template and fails when the
// committed file differs.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative } from "node:path";
import { REPO_ROOT } from "./lib/cluster.ts";
import { DATABASE_TYPES_PATH, generateDatabaseTypes } from "./lib/database-types.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";

function dbUrl(argv: readonly string[]): string {
  const at = argv.indexOf("--db-url");
  if (at !== -1) {
    const value = argv[at + 1];
    if (!value) throw new Error("--db-url needs a value");
    return value;
  }
  if (process.env.SUPABASE_DB_URL) return process.env.SUPABASE_DB_URL;
  if (existsSync(DEV_STACK.envFile)) {
    const fromFile = readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL;
    if (fromFile) return fromFile;
  }
  throw new Error("no database: run `npm start` first, or pass --db-url <url of a migrated database>");
}

const url = dbUrl(process.argv.slice(2));
const types = generateDatabaseTypes(url);
mkdirSync(dirname(DATABASE_TYPES_PATH), { recursive: true });
writeFileSync(DATABASE_TYPES_PATH, types);
console.log(`wrote ${relative(REPO_ROOT, DATABASE_TYPES_PATH)} (${types.split("\n").length} lines) from ${new URL(url).host}`);
