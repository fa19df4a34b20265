// Applies supabase/migrations with the real Supabase CLI, as the non-superuser `postgres`,
// exactly the way users deploy (`supabase db push`). A second push applies nothing.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";

export const SUPABASE_BIN = join(REPO_ROOT, "node_modules", ".bin", "supabase");

export interface PushResult {
  applied: string[];
  output: string;
}

export function pushMigrations(dbUrl: string): PushResult {
  const res = spawnSync(SUPABASE_BIN, ["db", "push", `--remote=${dbUrl}`, "--yes", "--workdir", REPO_ROOT], {
    encoding: "utf8",
    env: { ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${res.stdout ?? ""}${res.stderr ?? ""}`;
  if (res.error) throw res.error;
  if (res.status !== 0) throw new Error(`supabase db push failed (exit ${res.status}):\n${output}`);
  const applied = [...output.matchAll(/Applying migration (\S+)\.\.\./g)].map((m) => m[1] ?? "");
  return { applied, output };
}
