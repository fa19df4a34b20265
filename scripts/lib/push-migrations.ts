// Applies supabase/migrations with the real Supabase CLI, as the non-superuser `postgres`,
// exactly the way users deploy (`supabase db push`). A second push applies nothing.
import { spawn, spawnSync } from "node:child_process";
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

const pushArgs = (dbUrl: string, options: PushOptions) =>
  ["db", "push", `--remote=${dbUrl}`, "--workdir", options.workdir ?? REPO_ROOT, options.dryRun ? "--dry-run" : "--yes"];
const pushEnv = () => ({ ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" });
const resultOf = (output: string): PushResult => ({
  applied: [...output.matchAll(/Applying migration (\S+)\.\.\./g)].map((m) => m[1] ?? ""),
  wouldApply: [...output.matchAll(/^ • (\S+\.sql)$/gm)].map((m) => m[1] ?? ""),
  output,
});

export function pushMigrations(dbUrl: string, options: PushOptions = {}): PushResult {
  const res = spawnSync(SUPABASE_BIN, pushArgs(dbUrl, options), { encoding: "utf8", env: pushEnv(), maxBuffer: 64 * 1024 * 1024 });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`supabase db push${options.dryRun ? " --dry-run" : ""} failed (exit ${res.status}):\n${output}`);
  return resultOf(output);
}

/**
 * The same push without blocking this process (a simulated app in the same process keeps running
 * while the CLI works). Resolves with the exit code instead of throwing, so a test can read what a
 * failed push printed.
 */
export function pushMigrationsAsync(dbUrl: string, options: PushOptions = {}): Promise<PushResult & { status: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(SUPABASE_BIN, pushArgs(dbUrl, options), { env: pushEnv() });
    let output = "";
    child.stdout.on("data", (d: Buffer) => { output += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { output += d.toString(); });
    child.on("error", reject);
    child.on("close", (code) => resolve({ ...resultOf(output), status: code ?? 1 }));
  });
}
