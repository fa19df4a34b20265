// Applies supabase/migrations with the real Supabase CLI, as the non-superuser `postgres`,
// exactly the way users deploy (`supabase db push`). A second push applies nothing.
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";
import { runProgram } from "./processes.ts";

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

const pushArgs = (dbUrl: string, options: PushOptions) =>
  ["db", "push", `--remote=${dbUrl}`, "--workdir", options.workdir ?? REPO_ROOT, options.dryRun ? "--dry-run" : "--yes"];
const pushEnv = () => ({ ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" });
const resultOf = (output: string): PushResult => ({
  applied: [...output.matchAll(/Applying migration (\S+)\.\.\./g)].map((m) => m[1] ?? ""),
  wouldApply: [...output.matchAll(/^ • (\S+\.sql)$/gm)].map((m) => m[1] ?? ""),
  output,
});

/** `supabase db push`; throws with what the CLI printed when it fails. */
export async function pushMigrations(dbUrl: string, options: PushOptions = {}): Promise<PushResult> {
  const { status, ...result } = await pushMigrationsAsync(dbUrl, options);
  if (status !== 0) throw new Error(`supabase db push${options.dryRun ? " --dry-run" : ""} failed (exit ${status}):\n${result.output}`);
  return result;
}

/**
 * The push, resolving with the exit code instead of throwing, so a test can read what a failed push
 * printed.
 */
export async function pushMigrationsAsync(dbUrl: string, options: PushOptions = {}): Promise<PushResult & { status: number }> {
  const res = await runProgram(SUPABASE_BIN, pushArgs(dbUrl, options), { env: pushEnv() });
  return { ...resultOf(`${res.stdout}${res.stderr}`), status: res.status ?? 1 };
}
