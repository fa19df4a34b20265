// Applies supabase/migrations with the real Supabase CLI, as the non-superuser `postgres`,
// exactly the way users deploy (`supabase db push`). A second push applies nothing.
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";

export const SUPABASE_BIN = join(REPO_ROOT, "node_modules", ".bin", "supabase");

export interface PushResult {
  applied: string[];
  output: string;
}

const pushArgs = (dbUrl: string, workdir: string) => ["db", "push", `--remote=${dbUrl}`, "--yes", "--workdir", workdir];
const pushEnv = () => ({ ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" });
const appliedIn = (output: string) => [...output.matchAll(/Applying migration (\S+)\.\.\./g)].map((m) => m[1] ?? "");

export function pushMigrations(dbUrl: string, workdir = REPO_ROOT): PushResult {
  const res = spawnSync(SUPABASE_BIN, pushArgs(dbUrl, workdir), { encoding: "utf8", env: pushEnv(), maxBuffer: 64 * 1024 * 1024 });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`supabase db push failed (exit ${res.status}):\n${output}`);
  return { applied: appliedIn(output), output };
}

/**
 * The same push without blocking this process (a simulated app in the same process keeps running
 * while the CLI works). Resolves with the exit code instead of throwing, so a test can read what a
 * failed push printed.
 */
export function pushMigrationsAsync(dbUrl: string, workdir = REPO_ROOT): Promise<PushResult & { status: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(SUPABASE_BIN, pushArgs(dbUrl, workdir), { env: pushEnv() });
    let output = "";
    child.stdout.on("data", (d: Buffer) => { output += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { output += d.toString(); });
    child.on("error", reject);
    child.on("close", (code) => resolve({ applied: appliedIn(output), output, status: code ?? 1 }));
  });
}
