// The migrations of every release, by file name and SHA-256, in supabase/released-migrations.json.
// A project that ran `supabase db push` on a release has those files recorded as applied in
// supabase_migrations.schema_migrations and never runs them again: a released migration that
// changes afterwards reaches nobody who already pushed it. So released migrations are append-only:
// every later change is a new migration file, named after the last released one
// (test/adoption/migration-files.test.ts holds the repository to it; `npm run release:record` records a
// release). A release marked `withdrawn` was never installed in a user's project: its files may be
// re-cut once by the next release, which records them again.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";

export const MIGRATIONS_DIR = join(REPO_ROOT, "supabase", "migrations");
export const RELEASED_MIGRATIONS_PATH = join(REPO_ROOT, "supabase", "released-migrations.json");

export interface ReleasedMigration { file: string; sha256: string }
export interface Release {
  version: string;
  /** why a release that no user's project ever pushed is re-cut by the next one */
  withdrawn?: string;
  migrations: ReleasedMigration[];
}
export interface ReleasedMigrations { releases: Release[] }

/** The migration files `supabase db push` applies, in the order it applies them. */
export function migrationFiles(): string[] {
  return readdirSync(MIGRATIONS_DIR).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
}

export function migrationSha256(file: string): string {
  return createHash("sha256").update(readFileSync(join(MIGRATIONS_DIR, file))).digest("hex");
}

export function readReleasedMigrations(): ReleasedMigrations {
  return JSON.parse(readFileSync(RELEASED_MIGRATIONS_PATH, "utf8")) as ReleasedMigrations;
}

/** Every migration file with its checksum: what a release records. */
export function currentMigrations(): ReleasedMigration[] {
  return migrationFiles().map((file) => ({ file, sha256: migrationSha256(file) }));
}

/**
 * What breaks the append-only rule, one sentence each: a released migration changed, renamed or
 * removed, or a new migration that sorts before a released one (db push would refuse it on a
 * project that pushed the release, or apply it out of order with --include-all).
 */
export function appendOnlyViolations(record: ReleasedMigrations, files: ReleasedMigration[] = currentMigrations()): string[] {
  const out: string[] = [];
  const now = new Map(files.map((m) => [m.file, m.sha256]));
  const released = new Map<string, { sha256: string; version: string }>();
  for (const r of record.releases) {
    if (r.withdrawn !== undefined) continue;
    for (const m of r.migrations) released.set(m.file, { sha256: m.sha256, version: r.version });
  }
  for (const [file, { sha256, version }] of released) {
    const current = now.get(file);
    if (current === undefined) out.push(`${file} (released in ${version}) is gone: released migrations stay; undo its objects in a new migration`);
    else if (current !== sha256) out.push(`${file} (released in ${version}) changed: put the change in a new migration after the last released one`);
  }
  const lastReleased = [...released.keys()].sort().at(-1);
  for (const { file } of files) {
    if (!released.has(file) && lastReleased !== undefined && file < lastReleased) {
      out.push(`${file} is new but sorts before the released ${lastReleased}: name it with a later timestamp`);
    }
  }
  return out;
}
