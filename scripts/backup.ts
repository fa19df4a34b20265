// `npx tsx scripts/backup.ts [database-url]`: pg_dump -Fc of the observation tables (the plan's
// "Backup Critical Data"), by default against the local stack's database.
import { existsSync } from "node:fs";
import { backupTables } from "./lib/backup.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";

const url = process.argv[2] ?? (existsSync(DEV_STACK.envFile) ? readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL : undefined);
if (!url) {
  console.error("usage: tsx scripts/backup.ts <database-url> (or run npm start first)");
  process.exit(2);
}
console.log(`backup written to ${backupTables(url)}`);
