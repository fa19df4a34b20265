// The bundle's SQL has two forms. supabase/schemas/ is the current source, one file per concept
// (Supabase's declarative schemas): where a reader finds each function, table and policy as it is
// now. supabase/migrations/ is the released history that `supabase db push` applies, frozen once
// released. Both are built here on the same customer project (the demo app) so that their catalogs
// can be compared, and a new migration is produced from their difference (scripts/db-diff.ts).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { catalogSnapshot, diffCatalog, type CatalogChange, type CatalogScope } from "./catalog.ts";
import { REPO_ROOT } from "./cluster.ts";
import { applyDemoApp } from "./demo-app.ts";
import { pushMigrations, type PushOptions } from "./push-migrations.ts";

export const SCHEMAS_DIR = join(REPO_ROOT, "supabase", "schemas");

/** The source files, in the order they are applied (their names' order, as Supabase applies schema_paths). */
export function schemaFiles(dir = SCHEMAS_DIR): string[] {
  return readdirSync(dir).filter((f) => /^\d{2}_[a-z0-9_]+\.sql$/.test(f)).sort();
}

/**
 * What the comparison covers: every schema the bundle creates or changes (public: the read API,
 * the partitioned tables, the column and triggers on the app's tables), with every definition,
 * and the rows the migrations seed (the registry of the trees built at push time, settings).
 */
export const SOURCE_SCOPE: CatalogScope = {
  schemas: ["public", "private", "analytics", "partition_mgmt", "partitions", "partitions_archive"],
  definitions: {
    rowsOf: [
      { table: "partition_mgmt.managed_tables", ignore: ["created_at"] },
      { table: "partition_mgmt.maintenance_settings" },
      { table: "partition_mgmt.admin_action" },
      { table: "partition_mgmt.site_granularity" },
      { table: "partition_mgmt.key_aliases" },
      { table: "partition_mgmt.partition_registry", ignore: ["id", "created_at"] },
      { table: "private.deploy_report", ignore: ["id", "at"] },
    ],
  },
};

/**
 * Applies the sources to dbUrl as the non-superuser `postgres` (the role the push runs as), each
 * file in a transaction of its own. Function bodies are checked when called, not when created
 * (as pg_dump restores do): the files are ordered by concept, not by what each body calls.
 */
export async function applySchemaSources(dbUrl: string, dir = SCHEMAS_DIR): Promise<string[]> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const files = schemaFiles(dir);
  try {
    for (const f of files) {
      const text = readFileSync(join(dir, f), "utf8");
      try {
        await sql.begin(async (tx) => {
          await tx.unsafe("set local check_function_bodies = off");
          await tx.unsafe(text);
        });
      } catch (e) {
        throw new Error(`supabase/schemas/${f} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
    return files;
  } finally {
    await sql.end();
  }
}

/** The demo app, then the bundle from its migrations (the real CLI's push), as users get it. */
export async function buildFromMigrations(dbUrl: string, push: PushOptions = {}): Promise<void> {
  await applyDemoApp(dbUrl);
  await pushMigrations(dbUrl, push);
}

/** The demo app, then the bundle from its sources. */
export async function buildFromSources(dbUrl: string, dir = SCHEMAS_DIR): Promise<void> {
  await applyDemoApp(dbUrl);
  await applySchemaSources(dbUrl, dir);
}

/** Every catalog fact in which the database built from the migrations differs from the one built from the sources. */
export async function compareBuilds(fromMigrationsUrl: string, fromSourcesUrl: string, scope: CatalogScope = SOURCE_SCOPE): Promise<CatalogChange[]> {
  const a = postgres(fromMigrationsUrl, { max: 1, onnotice: () => {} });
  const b = postgres(fromSourcesUrl, { max: 1, onnotice: () => {} });
  try {
    return diffCatalog(await catalogSnapshot(a, scope), await catalogSnapshot(b, scope));
  } finally {
    await a.end();
    await b.end();
  }
}

/** One line per difference, for an error message: the object, the fact, and both values cut short. */
export function describeChanges(changes: CatalogChange[], limit = 40): string {
  const cut = (v: string | null) => (v === null ? "(absent)" : JSON.stringify(v.length > 160 ? `${v.slice(0, 160)}…` : v));
  const lines = changes.slice(0, limit).map((c) => `${c.object} | ${c.fact}: migrations ${cut(c.before)} / sources ${cut(c.after)}`);
  if (changes.length > limit) lines.push(`… and ${changes.length - limit} more`);
  return lines.join("\n");
}
