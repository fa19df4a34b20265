// The test stack's transaction pooler (scripts/lib/pooler.ts): its admin console.
import { join } from "node:path";
import { runProgram } from "../../scripts/lib/processes.ts";
import { requireEnv } from "./env.ts";

/** One command on PgBouncer's admin console (simple query protocol only, so psql); rows as objects. */
export async function poolerAdminConsole(command: string): Promise<Record<string, string>[]> {
  const psql = join(requireEnv("TEST_PG_BIN"), "psql");
  const res = await runProgram(psql, [requireEnv("TEST_POOLER_ADMIN_URL"), "-X", "-A", "-F", "\t", "-P", "footer=off", "-c", command]);
  if (res.status !== 0) throw new Error(`psql -c '${command}' on the pooler's admin console failed: ${res.stderr}`);
  const [head = "", ...rows] = res.stdout.trimEnd().split("\n");
  const cols = head.split("\t");
  return rows.map((r) => Object.fromEntries(r.split("\t").map((v, i) => [cols[i], v])));
}
