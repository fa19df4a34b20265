// A private PostgreSQL cluster that stands in for Supabase's hosted database: Debian's PostgreSQL 15
// unless told otherwise (`pgBin`; the test suite's PostgreSQL 17 leg uses PG17_BIN).
// `supabase start` needs Docker; this runs the Debian server binaries directly, as the
// `postgres` OS user when we are root (PostgreSQL refuses to run as root).
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { profileSettings, serverLimits, type ServerLimits } from "./compute-profiles.ts";
import { runProgram, type ProgramOptions, type ProgramRun } from "./processes.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
/** Debian trixie's PostgreSQL 17 with pg_cron, pgTAP and wal2json, unpacked by scripts/ensure-pg17.sh. */
export const PG17_ROOT = process.env.PG17_ROOT ?? "/opt/supabase-partitioning/postgresql-17";
export const PG17_BIN = join(PG17_ROOT, "usr", "lib", "postgresql", "17", "bin");
export const LOCAL_PASSWORD = "postgres";
const SQL_DIR = join(REPO_ROOT, "scripts", "sql");

export interface ClusterOptions {
  /** folder name under .local/db and the label in messages */
  name: string;
  port: number;
  /** throwaway clusters trade durability for speed (fsync off) */
  throwaway?: boolean;
  /** the Supabase compute profile and lock setting (default: from SUPABASE_COMPUTE, Micro) */
  limits?: ServerLimits;
  /** the server's binaries (default PG_BIN: Debian's PostgreSQL 15) */
  pgBin?: string;
}

export interface Cluster {
  name: string;
  port: number;
  dataDir: string;
  /** the folder of its initdb, pg_ctl, postgres and psql */
  pgBin: string;
  /** URL for the non-superuser `postgres` role: what users and the Supabase CLI connect as */
  url: (database?: string) => string;
  /** URL for the bootstrap superuser: infrastructure only */
  adminUrl: (database?: string) => string;
}

export const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0;

export async function run(cmd: string, args: string[], opts: ProgramOptions & { asPostgres?: boolean; allowFail?: boolean } = {}): Promise<ProgramRun> {
  const [file, argv] = opts.asPostgres && isRoot() ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  const res = await runProgram(file, argv, opts);
  if (res.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${res.status}):\n${res.stderr}${res.stdout}`);
  }
  return res;
}

/** Where the cluster lives: `.local/db/<name>` in the repo, unless the postgres OS user cannot reach it. */
function dataDirFor(name: string): string {
  const inRepo = join(REPO_ROOT, ".local", "db", name);
  if (!isRoot()) return inRepo;
  // Synchronous so that clusterFor stays a plain function: `test -x` does one access(2) and exits
  // (milliseconds even on a loaded machine), far from the 60 s a blocked test worker may take.
  const reachable = spawnSync("runuser", ["-u", "postgres", "--", "test", "-x", REPO_ROOT]).status === 0;
  if (reachable) return inRepo;
  const key = createHash("sha1").update(REPO_ROOT).digest("hex").slice(0, 12);
  return join("/var/lib/postgresql/supabase-partitioning", key, name);
}

export function clusterFor(opts: ClusterOptions): Cluster {
  const dataDir = dataDirFor(opts.name);
  const enc = encodeURIComponent(LOCAL_PASSWORD);
  return {
    name: opts.name,
    port: opts.port,
    dataDir,
    pgBin: opts.pgBin ?? PG_BIN,
    url: (db = "postgres") => `postgresql://postgres:${enc}@127.0.0.1:${opts.port}/${db}`,
    adminUrl: (db = "postgres") => `postgresql://supabase_admin:${enc}@127.0.0.1:${opts.port}/${db}`,
  };
}

export async function isRunning(c: Cluster): Promise<boolean> {
  if (!existsSync(join(c.dataDir, "PG_VERSION"))) return false;
  return (await run(join(c.pgBin, "pg_ctl"), ["status", "-D", c.dataDir], { asPostgres: true, allowFail: true })).status === 0;
}

async function initCluster(c: Cluster, opts: ClusterOptions): Promise<void> {
  mkdirSync(c.dataDir, { recursive: true });
  if (isRoot()) {
    // Every folder from .local (or the fallback root) down to the new, empty data directory must
    // belong to (or be reachable by) the postgres OS user. Not recursive: other clusters may be
    // running under .local at the same time.
    const top = c.dataDir.startsWith(REPO_ROOT) ? join(REPO_ROOT, ".local") : "/var/lib/postgresql/supabase-partitioning";
    const chain: string[] = [];
    for (let d = c.dataDir; d.length >= top.length; d = dirname(d)) chain.unshift(d);
    await run("chown", ["postgres:postgres", ...chain]);
  }
  chmodSync(c.dataDir, 0o700);
  const pwfile = join(c.dataDir, "..", `.${opts.name}.pw`);
  writeFileSync(pwfile, `${LOCAL_PASSWORD}\n`, { mode: 0o644 });
  try {
    await run(join(c.pgBin, "initdb"), [
      "-D", c.dataDir, "-U", "supabase_admin", "--pwfile", pwfile,
      "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
    ], { asPostgres: true });
  } finally {
    rmSync(pwfile, { force: true });
  }
  // Since the minor releases that added output_plugin_libraries (Debian's 17.12 and 15.20 have it,
  // 15.18 has not), a logical decoding plugin must be listed there to be loaded; Realtime decodes
  // with wal2json. A server without the setting refuses the line, so ask the server first.
  const pluginList = await run(join(c.pgBin, "postgres"), ["-C", "output_plugin_libraries", "-D", c.dataDir], { asPostgres: true, allowFail: true });
  const conf = [
    "",
    "# --- supabase-partitioning local stack ---",
    `port = ${opts.port}`,
    "listen_addresses = '127.0.0.1'",
    "unix_socket_directories = ''",
    "shared_preload_libraries = 'pg_cron,pg_stat_statements'",
    "cron.database_name = 'postgres'",
    // jobs run in background workers: no libpq login (and so no password) is needed for cron
    "cron.use_background_workers = on",
    ...(pluginList.status === 0 ? ["output_plugin_libraries = 'pgoutput, test_decoding, wal2json'"] : []),
    // the Supabase compute profile (connections, locks, memory): rewritten on every start
    `include_if_exists = '${PROFILE_FILE}'`,
    "pg_stat_statements.track = all",
    "log_min_messages = warning",
    "log_line_prefix = '%m [%p] %u@%d '",
    ...(opts.throwaway ? ["fsync = off", "synchronous_commit = off", "full_page_writes = off"] : []),
  ].join("\n");
  writeFileSync(join(c.dataDir, "postgresql.conf"), readFileSync(join(c.dataDir, "postgresql.conf"), "utf8") + conf + "\n");
  writeFileSync(join(c.dataDir, "pg_hba.conf"), [
    "host all all 127.0.0.1/32 scram-sha-256",
    "host all all ::1/128 scram-sha-256",
    // read replicas (scripts/lib/replica.ts) stream with pg_basebackup -R as supabase_admin
    "host replication all 127.0.0.1/32 scram-sha-256",
    "",
  ].join("\n"));
  if (isRoot()) await run("chown", ["postgres:postgres", join(c.dataDir, "postgresql.conf"), join(c.dataDir, "pg_hba.conf")]);
}

const PROFILE_FILE = "compute-profile.conf";

/**
 * Writes the profile's settings and the port asked for (a folder made earlier for another port
 * would otherwise start on that one, and the caller would find nothing on its own); true when they
 * changed (a running cluster must restart).
 */
async function writeProfile(c: Cluster, limits: ServerLimits): Promise<boolean> {
  const file = join(c.dataDir, PROFILE_FILE);
  const text = [`port = ${c.port}`, ...profileSettings(limits)].join("\n");
  if (existsSync(file) && readFileSync(file, "utf8") === text) return false;
  writeFileSync(file, text);
  if (isRoot()) await run("chown", ["postgres:postgres", file]);
  return true;
}

/** psql as the bootstrap superuser against one database, with ON_ERROR_STOP. */
export async function psqlAdmin(c: Cluster, database: string, args: string[], input?: string): Promise<string> {
  const res = await run(join(c.pgBin, "psql"), [c.adminUrl(database), "-X", "-q", "-v", "ON_ERROR_STOP=1", ...args], {
    input,
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
  });
  return res.stdout;
}

async function bootstrap(c: Cluster): Promise<void> {
  await psqlAdmin(c, "postgres", ["-f", join(SQL_DIR, "bootstrap-cluster.sql")]);
  for (const db of ["template1", "postgres"]) {
    await psqlAdmin(c, db, ["-v", `DBNAME=${db}`, "-f", join(SQL_DIR, "bootstrap-database.sql")]);
  }
  await psqlAdmin(c, "postgres", ["-f", join(SQL_DIR, "bootstrap-cron.sql")]);
}

/**
 * Start (creating and bootstrapping it first if needed) a cluster. Idempotent: a second call
 * finds it running and only re-applies the idempotent bootstrap.
 */
export async function ensureCluster(opts: ClusterOptions & { fresh?: boolean }): Promise<Cluster & { created: boolean; wasRunning: boolean }> {
  const c = clusterFor(opts);
  if (opts.fresh) await destroyCluster(c);
  let created = false;
  if (!existsSync(join(c.dataDir, "PG_VERSION"))) {
    await initCluster(c, opts);
    created = true;
  }
  const wasRunning = await isRunning(c);
  const changed = await writeProfile(c, opts.limits ?? serverLimits());
  const logFile = join(c.dataDir, "..", `${opts.name}.log`);
  if (isRoot()) {
    writeFileSync(logFile, "", { flag: "a" });
    await run("chown", ["postgres:postgres", logFile]);
  }
  if (wasRunning && changed) {
    // max_connections, max_locks_per_transaction and shared_buffers take a restart
    await pgCtlStart(c, "restart", logFile);
  } else if (!wasRunning) {
    await pgCtlStart(c, "start", logFile);
  }
  await bootstrap(c);
  return { ...c, created, wasRunning };
}

export async function stopCluster(c: Cluster, mode: "fast" | "immediate" = "fast"): Promise<boolean> {
  if (!(await isRunning(c))) return false;
  await run(join(c.pgBin, "pg_ctl"), ["stop", "-D", c.dataDir, "-m", mode, "-w", "-t", "60"], { asPostgres: true });
  return true;
}

export async function startStoppedCluster(c: Cluster): Promise<void> {
  if (await isRunning(c)) return;
  await pgCtlStart(c, "start", join(c.dataDir, "..", `${c.name}.log`));
}

/** pg_ctl start or restart; when the server does not come up, the error carries its log's last lines. */
async function pgCtlStart(c: Cluster, action: "start" | "restart", logFile: string): Promise<void> {
  const args = [action, "-D", c.dataDir, "-l", logFile, ...(action === "restart" ? ["-m", "fast"] : []), "-w", "-t", "60"];
  const res = await run(join(c.pgBin, "pg_ctl"), args, { asPostgres: true, allowFail: true });
  if (res.status === 0) return;
  const log = existsSync(logFile) ? readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-15).join("\n") : "(no log file)";
  throw new Error(`pg_ctl ${action} of cluster ${c.name} (port ${c.port}, ${c.dataDir}) failed (exit ${res.status}):\n` +
    `${res.stderr}${res.stdout}\nlast lines of ${logFile}:\n${log}`);
}

/**
 * The first port from `from` on that nothing on 127.0.0.1 listens on. For clusters started while
 * the suite has many connections open: give it a port below the kernel's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default), or a client socket's local
 * port may take it and the server cannot bind.
 */
export async function freeLocalPort(from: number, tries = 100): Promise<number> {
  for (let port = from; port < from + tries; port++) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port on 127.0.0.1 in ${from}..${from + tries - 1}: stop what listens there or pass another base`);
}

export async function destroyCluster(c: Cluster): Promise<void> {
  await stopCluster(c, "immediate");
  rmSync(c.dataDir, { recursive: true, force: true });
}
