// The local stack: which ports and folders each stack uses, and the connection details file.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";
import { makeApiKeys } from "./jwt-keys.ts";
import { poolerSettings } from "./pooler.ts";

export interface StackProfile {
  name: string;
  dbPort: number;
  functionsPort: number;
  /** the transaction pooler in front of the database (scripts/lib/pooler.ts) */
  poolerPort: number;
  /** the read replica, when one is asked for (scripts/lib/replica.ts) */
  replicaPort: number;
  envFile: string;
  /**
   * Deno workers per function (scripts/serve-functions.ts --workers), as the platform's isolates:
   * 2 on both stacks, so that neither the suites nor a developer's session can come to rely on one
   * isolate's module state, at the cost of one more Deno process per function; FUNCTIONS_WORKERS=N
   * picks another number.
   */
  workersPerFunction: number;
}

const workersFromEnv = (): number => Number(process.env.FUNCTIONS_WORKERS ?? 2);

/** `npm start`: the Supabase CLI's local defaults (API 54321, DB 54322). */
export const DEV_STACK: StackProfile = {
  name: "dev",
  dbPort: 54322,
  functionsPort: 54321,
  poolerPort: poolerSettings().port,
  replicaPort: 54328,
  envFile: join(REPO_ROOT, ".env.local"),
  workersPerFunction: workersFromEnv(),
};

/**
 * `npm test`: its own throwaway cluster on other ports, so both can run at once.
 * TEST_PORT_BASE=N moves it to N (database), N+1 (functions), N+3 (pooler; N+2 is the PostgreSQL 17
 * leg's database), N+4 (the read replica) and N+5 (TEST_REPLICA_STACK's functions) so several runs
 * can coexist.
 */
const testBase = Number(process.env.TEST_PORT_BASE ?? 54330);
export const TEST_STACK: StackProfile = {
  name: testBase === 54330 ? "test" : `test-${testBase}`,
  dbPort: testBase,
  functionsPort: testBase + 1,
  poolerPort: testBase + 3,
  replicaPort: testBase + 4,
  envFile: join(REPO_ROOT, ".local", testBase === 54330 ? "test.env" : `test-${testBase}.env`),
  workersPerFunction: workersFromEnv(),
};

/**
 * The test stack's second functions server, the one whose read function has a replica
 * (DB_REPLICA_URL): the replica suites call it; the other suites keep reading the primary, so a
 * read right after a write never waits for replay.
 */
export const TEST_REPLICA_STACK: StackProfile = {
  ...TEST_STACK,
  name: `${TEST_STACK.name}-replica`,
  functionsPort: testBase + 5,
  envFile: TEST_STACK.envFile.replace(/\.env$/, "-replica.env"),
};

// Same value as the Supabase CLI's local stack: local development only, never a hosted secret.
export const LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";

export type StackEnv = Record<
  | "SUPABASE_URL"
  | "SUPABASE_FUNCTIONS_URL"
  | "SUPABASE_DB_URL"
  | "DB_POOLER_URL"
  | "SUPABASE_ANON_KEY"
  | "SUPABASE_SERVICE_ROLE_KEY"
  | "JWT_SECRET"
  | "FUNCTIONS_PORT"
  | "DB_ADMIN_URL",
  string
> & Partial<Record<ReplicaEnvKey, string>>;

/**
 * The read function's replica secrets (supabase/functions/_shared/replica.ts): its URL, the lag
 * bound in ms past which reads go to the primary, how often (ms) an isolate checks the lag.
 */
export const REPLICA_ENV_KEYS = ["DB_REPLICA_URL", "DB_REPLICA_MAX_LAG_MS", "DB_REPLICA_CHECK_MS", "DB_REPLICA_LOCK_TIMEOUT_MS"] as const;
export type ReplicaEnvKey = (typeof REPLICA_ENV_KEYS)[number];

/** dbUrl is the direct connection, poolerUrl the same database through the transaction pooler. */
export async function stackEnv(
  profile: StackProfile,
  dbUrl: string,
  poolerUrl: string,
  adminUrl: string,
  replica: Partial<Record<ReplicaEnvKey, string>> = {},
): Promise<StackEnv> {
  const { anonKey, serviceRoleKey } = await makeApiKeys(LOCAL_JWT_SECRET);
  const apiUrl = `http://127.0.0.1:${profile.functionsPort}`;
  return {
    SUPABASE_URL: apiUrl,
    SUPABASE_FUNCTIONS_URL: `${apiUrl}/functions/v1`,
    SUPABASE_DB_URL: dbUrl,
    DB_POOLER_URL: poolerUrl,
    SUPABASE_ANON_KEY: anonKey,
    SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
    JWT_SECRET: LOCAL_JWT_SECRET,
    FUNCTIONS_PORT: String(profile.functionsPort),
    DB_ADMIN_URL: adminUrl,
    ...replica,
  };
}

export function writeEnvFile(path: string, env: StackEnv): void {
  const lines = [
    "# Written by the local stack (scripts/lib/stack.ts). Local development values only.",
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    "",
  ];
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, lines.join("\n"), { mode: 0o600 });
}

const pidFile = (p: StackProfile) => join(REPO_ROOT, ".local", `functions-${p.name}.pid`);
export const functionsLogFile = (p: StackProfile) => join(REPO_ROOT, ".local", `functions-${p.name}.log`);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForHttp(url: string, timeoutMs: number, isDead: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isDead()) throw new Error("the functions server exited during start-up");
    try {
      const res = await fetch(url, { method: "OPTIONS" });
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`functions server did not answer at ${url} within ${timeoutMs} ms`);
}

/** Serves supabase/functions in the background (detached); idempotent. */
export async function startFunctionsDaemon(p: StackProfile): Promise<{ pid: number; started: boolean }> {
  const pf = pidFile(p);
  if (existsSync(pf)) {
    const pid = Number(readFileSync(pf, "utf8"));
    if (pid > 0 && alive(pid)) return { pid, started: false };
    rmSync(pf, { force: true });
  }
  // .local also holds the clusters unless the postgres OS user cannot reach the repo: then they
  // live elsewhere and nothing has created it yet
  mkdirSync(join(REPO_ROOT, ".local"), { recursive: true });
  const log = openSync(functionsLogFile(p), "a");
  const child = spawn(
    join(REPO_ROOT, "node_modules", ".bin", "tsx"),
    [join(REPO_ROOT, "scripts", "serve-functions.ts"), "--env-file", p.envFile, "--workers", String(p.workersPerFunction)],
    { cwd: REPO_ROOT, detached: true, stdio: ["ignore", log, log] },
  );
  child.unref();
  const pid = child.pid ?? 0;
  writeFileSync(pf, String(pid));
  let exited = false;
  child.on("exit", () => (exited = true));
  try {
    await waitForHttp(`http://127.0.0.1:${p.functionsPort}/functions/v1/health`, 120_000, () => exited);
  } catch (e) {
    const tail = readFileSync(functionsLogFile(p), "utf8").split("\n").slice(-30).join("\n");
    throw new Error(`${(e as Error).message}\n--- ${functionsLogFile(p)} ---\n${tail}`);
  }
  return { pid, started: true };
}

export function stopFunctionsDaemon(p: StackProfile): boolean {
  const pf = pidFile(p);
  if (!existsSync(pf)) return false;
  const pid = Number(readFileSync(pf, "utf8"));
  rmSync(pf, { force: true });
  if (!(pid > 0) || !alive(pid)) return false;
  try {
    process.kill(-pid, "SIGTERM"); // the whole process group: tsx, node and the Deno workers
  } catch {
    process.kill(pid, "SIGTERM");
  }
  return true;
}
