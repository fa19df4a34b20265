// The install record, supabase/partitioning-bundle.json in the user's repo: what the installer put
// there, so that the next install (a newer release) adds only what is new.
//   - migrations: each of ours, by its name in the bundle, with the name it was installed under,
//     its SHA-256 and the release it came with. Installed migrations are history: a later install
//     never copies, renames or rewrites one (except a release that was withdrawn, see install.ts).
//   - files: every file of our functions' code and import map (path relative to supabase/ ->
//     SHA-256 of what we wrote). Functions are not history: a later install replaces them, but never
//     over a file that changed since we wrote it.
//   - config: the [functions.<name>] sections we appended to config.toml, as text.
// Keep it under version control with the rest of supabase/.
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { InstallRefusal } from "./refusal.ts";

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

export const InstalledMigrationSchema = z.object({
  /** its file name in the bundle: 20250102000200_partition_tree.sql */
  source: z.string(),
  /** its file name in the repo's supabase/migrations */
  installed: z.string(),
  sha256: Sha256,
  /** the bundle version that installed it */
  release: z.string(),
});

export const InstallRecordSchema = z.object({
  about: z.string().optional(),
  bundle: z.string(),
  version: z.string(),
  migrations: z.array(InstalledMigrationSchema),
  functions: z.array(z.string()),
  files: z.record(z.string(), Sha256),
  config: z.record(z.string(), z.string()),
});

export type InstalledMigration = z.infer<typeof InstalledMigrationSchema>;
export type InstallRecord = z.infer<typeof InstallRecordSchema>;

export const RECORD_ABOUT = "Written by `supabase-partitioning install`: what it installed in this repo. "
  + "The next install reads it to add only what a newer release adds; keep it under version control.";

/** The record in a repo, undefined before the first install. */
export function readInstallRecord(path: string, shownAs: string): InstallRecord | undefined {
  if (!existsSync(path)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new InstallRefusal(`${shownAs} is not valid JSON (${e instanceof Error ? e.message : String(e)}); restore it from version control`);
  }
  const parsed = InstallRecordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InstallRefusal(`${shownAs} is not an install record (${issue?.path.join(".") || "top level"}: ${issue?.message}); restore it from version control`);
  }
  return parsed.data;
}

export function serializeInstallRecord(record: InstallRecord): string {
  return `${JSON.stringify({ about: RECORD_ABOUT, ...record }, null, 2)}\n`;
}
