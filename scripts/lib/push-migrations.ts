// Applies supabase/migrations with the real Supabase CLI, as the non-superuser `postgres`,
// exactly the way users deploy (`supabase db push`). A second push applies nothing.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";

export const SUPABASE_BIN = join(REPO_ROOT, "node_modules", ".bin", "supabase");

export interface PushOptions {
  /** the project directory holding supabase/ (default: this checkout) */
  workdir?: string;
  /** `--dry-run`: list what would be applied, apply nothing */
  dryRun?: boolean;
}

export interface PushResult {
  /** the migration files applied, in order */
  applied: string[];
  /** with dryRun: the migration files the push would apply, in order */
  wouldApply: string[];
  output: string;
}

export function pushMigrations(dbUrl: string, options: PushOptions = {}): PushResult {
  const args = ["db", "push", `--remote=${dbUrl}`, "--workdir", options.workdir ?? REPO_ROOT, options.dryRun ? "--dry-run" : "--yes"];
  const res = spawnSync(SUPABASE_BIN, args, {
    encoding: "utf8",
    env: { ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`supabase db push${options.dryRun ? " --dry-run" : ""} failed (exit ${res.status}):\n${output}`);
  const applied = [...output.matchAll(/Applying migration (\S+)\.\.\./g)].map((m) => m[1] ?? "");
  const wouldApply = [...output.matchAll(/^ • (\S+\.sql)$/gm)].map((m) => m[1] ?? "");
  return { applied, wouldApply, output };
}
