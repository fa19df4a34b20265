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
 * TEST_PORT_BASE=N moves every port a run binds to N + an offset of TEST_PORT_OFFSETS, so several
 * runs can coexist. The default base lies below the ephemeral port range of Linux (32768–60999),
 * macOS and Windows (49152–65535): the suites open thousands of client sockets, each on a port the
 * kernel picks from that range, and a cluster or pooler started mid-run on a fixed port inside it
 * can find the port taken by one of them ("could not bind … Address already in use").
 */
export const DEFAULT_TEST_PORT_BASE = 24330;
export const TEST_PORT_OFFSETS = {
  db: 0,
  functions: 1,
  /** the PostgreSQL 17 leg's database */
  db17: 2,
  pooler: 3,
  replica: 4,
  /** TEST_REPLICA_STACK's functions server */
  replicaFunctions: 5,
  /** test/cli/bench-load-quick.test.ts: its cluster here, its pooler 3 above */
  benchLoadQuick: 10,
  /** the suites' own poolers and clusters: the first free port of 10 from here */
  poolerExtra: 20,
  poolerClients: 30,
  migrationCrash: 40,
  runbook: 50,
} as const;
/** How many ports from the base a run may bind. */
export const TEST_PORT_SPAN = 60;
/** This run's base (TEST_PORT_BASE, else the default); scripts/test.ts checks it with testPortBaseProblem. */
export const TEST_PORT_BASE = Number(process.env.TEST_PORT_BASE ?? DEFAULT_TEST_PORT_BASE);
/** The port `npm test` binds for a purpose (TEST_PORT_OFFSETS), from TEST_PORT_BASE. */
export const testPort = (purpose: keyof typeof TEST_PORT_OFFSETS): number => TEST_PORT_BASE + TEST_PORT_OFFSETS[purpose];

/** The kernel's ephemeral port range, where it can tell it (Linux); null elsewhere. */
export function ephemeralPortRange(): [number, number] | null {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    return low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high) ? [low, high] : null;
  } catch {
    return null;
  }
}

/**
 * Why a test port base will not do, or null: its ports (base .. base + TEST_PORT_SPAN - 1) must be
 * valid and lie outside the ephemeral range.
 */
export function testPortBaseProblem(base: number, range: [number, number] | null): string | null {
  const last = base + TEST_PORT_SPAN - 1;
  if (!Number.isInteger(base) || base < 1024 || last > 65535) {
    return `TEST_PORT_BASE=${base}: the test ports ${base}..${last} must lie in 1024..65535`;
  }
  if (range && base <= range[1] && last >= range[0]) {
    return `TEST_PORT_BASE=${base}: the test ports ${base}..${last} overlap the kernel's ephemeral port range ` +
      `${range[0]}..${range[1]} (/proc/sys/net/ipv4/ip_local_port_range), where the suites' own client sockets ` +
      `can take a port before a cluster binds it; pick a base below ${range[0] - TEST_PORT_SPAN + 1} or above ${range[1]} ` +
      `(default ${DEFAULT_TEST_PORT_BASE})`;
  }
  return null;
}

export const TEST_STACK: StackProfile = {
  name: TEST_PORT_BASE === DEFAULT_TEST_PORT_BASE ? "test" : `test-${TEST_PORT_BASE}`,
  dbPort: testPort("db"),
  functionsPort: testPort("functions"),
  poolerPort: testPort("pooler"),
  replicaPort: testPort("replica"),
  envFile: join(REPO_ROOT, ".local", TEST_PORT_BASE === DEFAULT_TEST_PORT_BASE ? "test.env" : `test-${TEST_PORT_BASE}.env`),
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
  functionsPort: testPort("replicaFunctions"),
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
