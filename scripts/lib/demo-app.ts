// The demo app: a customer's Supabase project as our users have it before they add the bundle
// (demo-app/supabase/migrations: its tables, its own RLS policies, a trigger and a view of its own,
// a migration dated after the bundle's files). Every local database (dev stack, tests, bench) gets
// it first, as the existing project the bundle is pushed onto; it is never part of the bundle.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { REPO_ROOT } from "./cluster.ts";

export const DEMO_APP_DIR = join(REPO_ROOT, "demo-app");
export const DEMO_APP_MIGRATIONS_DIR = join(DEMO_APP_DIR, "supabase", "migrations");

/** The demo app's migration files, in the order its project applied them. */
export function demoAppMigrations(): string[] {
  return readdirSync(DEMO_APP_MIGRATIONS_DIR).filter((f) => /^\d{14}_.+\.sql$/.test(f)).sort();
}

/**
 * Builds the demo app in an empty database, as the non-superuser `postgres` (the owner of a hosted
 * project's tables), each file in a transaction of its own; a database that already has the app's
 * tables is left alone. Returns the files applied. Its history is not recorded in
 * supabase_migrations: like a project whose tables were made in the dashboard, the database has
 * only the bundle's migrations in its history after `supabase db push`.
 */
export async function applyDemoApp(dbUrl: string): Promise<string[]> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const [present] = await sql<{ present: boolean }[]>`select to_regclass('public.petri_observations') is not null as present`;
    if (present?.present) return [];
    const files = demoAppMigrations();
    for (const f of files) await sql.begin((tx) => tx.file(join(DEMO_APP_MIGRATIONS_DIR, f)));
    return files;
  } finally {
    await sql.end();
  }
}
