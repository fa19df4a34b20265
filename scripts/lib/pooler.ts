// The local stand-in for Supavisor, the hosted transaction pooler (port 6543): Debian's PgBouncer in
// transaction mode, one process of our own in front of each local cluster (never the Debian
// service). Its settings are the ones supabase/config.toml declares under [db.pooler], as the
// Supabase CLI declares its local pooler (enabled, port 54329, pool_mode, default_pool_size,
// max_client_conn). Clients authenticate as on the Supabase image: PgBouncer looks every role's
// SCRAM secret up in the database with auth_query, so postgres, authenticator and any role with
// the local password log in through it, and it logs in to the server with the client's SCRAM keys.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse as parseToml } from "smol-toml";
import { LOCAL_PASSWORD, REPO_ROOT, type Cluster } from "./cluster.ts";
import { runProgram, type ProgramRun } from "./processes.ts";

export const PGBOUNCER_BIN = process.env.PGBOUNCER_BIN ?? "/usr/sbin/pgbouncer";

export interface PoolerSettings {
  enabled: boolean;
  port: number;
  poolMode: "transaction" | "session";
  /** server connections per (database, role) pair */
  defaultPoolSize: number;
  maxClientConn: number;
}

/** The [db.pooler] section of supabase/config.toml; a missing key takes the CLI's default. */
export function poolerSettings(configToml = join(REPO_ROOT, "supabase", "config.toml")): PoolerSettings {
  const config = parseToml(readFileSync(configToml, "utf8")) as { db?: { pooler?: Record<string, unknown> } };
  const p = config.db?.pooler ?? {};
  const settings: PoolerSettings = {
    enabled: p.enabled === undefined ? false : p.enabled === true,
    port: Number(p.port ?? 54329),
    poolMode: (p.pool_mode ?? "transaction") as PoolerSettings["poolMode"],
    defaultPoolSize: Number(p.default_pool_size ?? 20),
    maxClientConn: Number(p.max_client_conn ?? 100),
  };
  if (settings.poolMode !== "transaction" && settings.poolMode !== "session") {
    throw new Error(`${configToml}: [db.pooler] pool_mode = "${String(p.pool_mode)}" is not a pooler mode; use "transaction" or "session"`);
  }
  for (const key of ["port", "defaultPoolSize", "maxClientConn"] as const) {
    if (!Number.isInteger(settings[key]) || settings[key] < 1) {
      throw new Error(`${configToml}: [db.pooler] ${key} = ${String(settings[key])} must be a positive integer`);
    }
  }
  return settings;
}

export interface Pooler {
  port: number;
  dir: string;
  /** URL for the non-superuser `postgres` role through the pooler */
  url: (database?: string) => string;
  /** URL of PgBouncer's admin console (SHOW POOLS, SHOW CONFIG), as the bootstrap superuser */
  adminConsoleUrl: string;
}

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0;

async function run(cmd: string, args: string[], allowFail = false): Promise<ProgramRun> {
  const [file, argv] = isRoot() ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  const res = await runProgram(file, argv);
  if (res.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${res.status}):\n${res.stderr}${res.stdout}`);
  return res;
}

export function poolerFor(cluster: Cluster, port: number): Pooler {
  const enc = encodeURIComponent(LOCAL_PASSWORD);
  return {
    port,
    // beside the cluster's data directory, so it is as reachable by the postgres OS user
    dir: join(cluster.dataDir, "..", `${cluster.name}-pooler`),
    url: (db = "postgres") => `postgresql://postgres:${enc}@127.0.0.1:${port}/${db}`,
    adminConsoleUrl: `postgresql://supabase_admin:${enc}@127.0.0.1:${port}/pgbouncer`,
  };
}

const pidFile = (p: Pooler) => join(p.dir, "pgbouncer.pid");

/** The running PgBouncer's pid, or null. */
export function poolerPid(p: Pooler): number | null {
  if (!existsSync(pidFile(p))) return null;
  const pid = Number(readFileSync(pidFile(p), "utf8").trim());
  if (!(pid > 0)) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

function iniText(cluster: Cluster, p: Pooler, s: PoolerSettings): string {
  return [
    "; Written by scripts/lib/pooler.ts from supabase/config.toml [db.pooler]; rewritten on every start.",
    "[databases]",
    // every database of the cluster, under its own name
    `* = host=127.0.0.1 port=${cluster.port}`,
    "",
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${p.port}`,
    "unix_socket_dir =",
    `pidfile = ${pidFile(p)}`,
    `logfile = ${join(p.dir, "pgbouncer.log")}`,
    `pool_mode = ${s.poolMode}`,
    `default_pool_size = ${s.defaultPoolSize}`,
    "reserve_pool_size = 0",
    `max_client_conn = ${s.maxClientConn}`,
    "auth_type = scram-sha-256",
    `auth_file = ${join(p.dir, "userlist.txt")}`,
    // as the Supabase image does (there through pgbouncer.get_auth as the role pgbouncer): each
    // role's secret comes from the database; the bootstrap superuser reads it here
    "auth_user = supabase_admin",
    "auth_query = SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1",
    "admin_users = supabase_admin",
    "stats_users = postgres",
    // startup parameters drivers send that PgBouncer would otherwise refuse
    "ignore_startup_parameters = extra_float_digits, options, search_path, statement_timeout",
    "server_reset_query =",
    "log_connections = 0",
    "log_disconnections = 0",
    "",
  ].join("\n");
}

/** Starts (or restarts, with the current settings) PgBouncer in front of the cluster. */
export async function startPooler(cluster: Cluster, port: number, settings: PoolerSettings = poolerSettings()): Promise<Pooler> {
  if (!existsSync(PGBOUNCER_BIN)) {
    throw new Error(`${PGBOUNCER_BIN} not found: install Debian's pgbouncer (scripts/ensure-deps.sh does it as root: apt-get install -y pgbouncer)`);
  }
  const p = poolerFor(cluster, port);
  await stopPooler(p);
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(join(p.dir, "pgbouncer.ini"), iniText(cluster, p, settings));
  writeFileSync(join(p.dir, "userlist.txt"), `"supabase_admin" "${LOCAL_PASSWORD}"\n`, { mode: 0o600 });
  if (isRoot()) {
    await runProgram("chown", ["-R", "postgres:postgres", p.dir]);
  }
  const res = await run(PGBOUNCER_BIN, ["-d", "-q", join(p.dir, "pgbouncer.ini")], true);
  const deadline = Date.now() + 10_000;
  while (poolerPid(p) === null && Date.now() < deadline) await sleep(100);
  if (poolerPid(p) === null) {
    const logFile = join(p.dir, "pgbouncer.log");
    const log = existsSync(logFile) ? readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-15).join("\n") : "(no log file)";
    throw new Error(`pgbouncer in front of cluster ${cluster.name} did not start on port ${port} (exit ${res.status}):\n${res.stderr}\nlast lines of ${logFile}:\n${log}`);
  }
  return p;
}

/** True while the process runs (a zombie, exited but not yet reaped, does not). */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Stops the pooler and waits until its process is gone; false when it was not running. */
export async function stopPooler(p: Pooler): Promise<boolean> {
  const pid = poolerPid(p);
  if (pid === null) return false;
  process.kill(pid, "SIGTERM"); // immediate shutdown: the clients are ours and are going too
  // PgBouncer removes its pid file before it exits: wait for the process itself
  const deadline = Date.now() + 10_000;
  while (processRunning(pid) && Date.now() < deadline) await sleep(50);
  if (processRunning(pid)) process.kill(pid, "SIGKILL");
  rmSync(pidFile(p), { force: true });
  return true;
}
