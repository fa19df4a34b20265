// Scratch databases on a local cluster, for the scripts that build the bundle somewhere the user's
// own databases are not touched (gen:types, db:diff).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import postgres from "postgres";
import { UsageError } from "./cli.ts";
import { readEnvFile } from "./env-file.ts";
import { DEV_STACK } from "./stack.ts";

/** The superuser URL given with --admin-url, else the local stack's (.env.local). */
export function localAdminUrl(given: string | undefined): string {
  if (given) return given;
  if (existsSync(DEV_STACK.envFile)) {
    const fromFile = readEnvFile(DEV_STACK.envFile).DB_ADMIN_URL;
    if (fromFile) return fromFile;
  }
  throw new UsageError("no cluster: run `npm start` first, or pass --admin-url <superuser url of a local cluster>");
}

/** database on the cluster of url, as the project's own role `postgres` (the push and the app connect so; same password locally). */
export function asPostgres(url: string, database: string): string {
  const u = new URL(url);
  u.username = "postgres";
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates one empty database per label (owned by postgres), runs fn with their URLs, drops them whatever happens. */
export async function withScratchDatabases<T>(admin: string, labels: string[], fn: (urls: string[]) => Promise<T>): Promise<T> {
  const names = labels.map((l) => `${l}_${randomBytes(3).toString("hex")}`);
  const server = postgres(admin, { max: 1, onnotice: () => {} });
  try {
    for (const n of names) await server.unsafe(`create database ${n} owner postgres`);
    return await fn(names.map((n) => asPostgres(admin, n)));
  } finally {
    for (const n of names) await server.unsafe(`drop database if exists ${n} with (force)`);
    await server.end();
  }
}
