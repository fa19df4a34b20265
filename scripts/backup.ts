// `npx tsx scripts/backup.ts [database-url]`: pg_dump -Fc of the observation tables (the plan's
// "Backup Critical Data"), by default against the local stack's database.
import { existsSync } from "node:fs";
import { backupTables, MIGRATION_TABLES } from "./lib/backup.ts";
import { commandLine, runCli, UsageError } from "./lib/cli.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { DEV_STACK } from "./lib/stack.ts";

const NAME = "scripts/backup.ts";
const USAGE = `usage: npx tsx scripts/backup.ts [<database-url>]

Dumps ${MIGRATION_TABLES.join(" and ")} with pg_dump -Fc (rows and definitions) into
.local/backups/<database>-<time>.dump, and checks that the dump lists both tables' data.
<database-url>: the direct connection string (postgresql://postgres:<password>@db.<ref>.supabase.co:5432/postgres);
without it, SUPABASE_DB_URL, else the local stack's (.env.local, written by npm start).

options:
  -h, --help   this help`;

const { positionals } = commandLine({ name: NAME, usage: USAGE, options: {}, maxPositionals: 1 });

await runCli(NAME, USAGE, async () => {
  const url = positionals[0] ?? process.env.SUPABASE_DB_URL ?? (existsSync(DEV_STACK.envFile) ? readEnvFile(DEV_STACK.envFile).SUPABASE_DB_URL : undefined);
  if (!url) throw new UsageError("no database: give its URL, or run npm start first (it writes .env.local)");
  let host: string;
  try {
    const u = new URL(url);
    if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error("not postgres");
    host = u.host;
  } catch {
    throw new UsageError(`not a postgresql:// URL: "${url.replace(/:[^:@/]*@/, ":***@")}"`);
  }
  console.log(`backing up ${MIGRATION_TABLES.join(", ")} of ${host}`);
  console.log(`backup written to ${await backupTables(url)}`);
});
