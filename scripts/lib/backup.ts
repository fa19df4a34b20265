// The plan's backup step: `pg_dump -Fc` of the tables a migration touches, against the target
// database, before anything changes. Restoring it (data only, into the existing tables) is what
// test/migration/migration-backup.test.ts proves once.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { PG17_BIN, PG_BIN, REPO_ROOT } from "./cluster.ts";
import { runOrThrow } from "./processes.ts";

export const MIGRATION_TABLES = ["public.petri_observations", "public.gasifier_observations"];

const run = (bin: string, cmd: string, args: string[]): Promise<string> => runOrThrow(join(bin, cmd), args, {}, cmd);

/**
 * pg_dump refuses a server newer than itself ("aborting because of server version mismatch":
 * 15.18's pg_dump against 17.12). Up to 15 the Debian 15 client dumps as before; a newer server
 * (17 on new Supabase projects) gets the PostgreSQL 17 client that scripts/ensure-pg17.sh installs.
 */
async function clientFor(dbUrl: string): Promise<string> {
  const major = Math.floor(Number((await run(PG_BIN, "psql", [dbUrl, "-X", "-A", "-t", "-c", "show server_version_num"])).trim()) / 10000);
  if (major <= 15) return PG_BIN;
  if (existsSync(join(PG17_BIN, "pg_dump"))) return PG17_BIN;
  throw new Error(`pg_dump ${PG_BIN} cannot dump PostgreSQL ${major}: install the PostgreSQL 17 client with scripts/ensure-pg17.sh (as root)`);
}

/** Dumps the tables (custom format) to .local/backups/<db>-<timestamp>.dump; returns the path. */
export async function backupTables(dbUrl: string, tables = MIGRATION_TABLES, dir = join(REPO_ROOT, ".local", "backups")): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const db = new URL(dbUrl).pathname.slice(1) || "postgres";
  const file = join(dir, `${db}-${new Date().toISOString().replace(/[:.]/g, "-")}.dump`);
  const bin = await clientFor(dbUrl);
  await run(bin, "pg_dump", ["-Fc", "--no-owner", "--no-privileges", ...tables.flatMap((t) => ["-t", t]), "-f", file, dbUrl]);
  // a dump that cannot be listed is no backup
  const toc = await run(bin, "pg_restore", ["-l", file]);
  for (const t of tables) {
    const name = t.split(".").pop()!;
    if (!new RegExp(`TABLE DATA \\S+ ${name} `).test(toc)) throw new Error(`backup ${file} has no data for ${t}`);
  }
  return file;
}

/** Restores the rows of a backup into the existing (emptied) tables. */
export async function restoreTableData(dbUrl: string, file: string, tables = MIGRATION_TABLES): Promise<void> {
  await run(await clientFor(dbUrl), "pg_restore", ["--data-only", "--no-owner", "--exit-on-error", ...tables.flatMap((t) => ["-t", t.split(".").pop()!]), "-d", dbUrl, file]);
}
