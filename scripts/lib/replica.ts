// A streaming standby of a local cluster: the local stand-in for a Supabase read replica.
// Made as Supabase's own replica script makes one (supabase/postgres nix/tools/run-replica.sh.in:
// `pg_basebackup -X stream -C -S <slot> -R`), so it streams through a physical replication slot of
// the primary's and a stopped replica holds WAL back on the primary, where pg_replication_slots
// shows how far behind it is. It copies the primary's postgresql.conf and compute-profile.conf:
// the same compute profile (a hot standby refuses to start with fewer connections, locks or
// workers than its primary).
// Standby settings (STANDBY_SETTINGS), from supabase/postgres at 7db7e1a (2024-10-23):
// ansible/files/postgresql_config/custom_read_replica.conf.j2 (a replica's own file) names only
// `hot_standby = on`; postgresql.conf.j2 leaves max_standby_streaming_delay and
// hot_standby_feedback commented out, i.e. PostgreSQL's defaults, 30s and off. Supabase's
// read-replica guide (docs/guides/platform/read-replicas) documents no other value.
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import postgres from "postgres";
import { clusterFor, isRunning, LOCAL_PASSWORD, psqlAdmin, run, startStoppedCluster, stopCluster, type Cluster } from "./cluster.ts";

export const STANDBY_SETTINGS = {
  hot_standby: "on",
  max_standby_streaming_delay: "30s",
  hot_standby_feedback: "off",
} as const;

export interface Replica extends Cluster {
  /** the cluster it streams from */
  primary: Cluster;
  /** its physical replication slot on the primary; also its application_name in pg_stat_replication */
  slot: string;
}

const slotName = (name: string): string => name.replace(/[^a-z0-9_]/gi, "_").toLowerCase().slice(0, 63);

/** The replica `name` (default `<primary>-replica`) of `primary` on `port`; nothing is started. */
export function replicaFor(primary: Cluster, port: number, name = `${primary.name}-replica`): Replica {
  return { ...clusterFor({ name, port, pgBin: primary.pgBin }), primary, slot: slotName(name) };
}

/** Clusters made before replicas existed have no `replication` line in pg_hba.conf. */
async function allowReplicationConnections(primary: Cluster): Promise<void> {
  const hba = join(primary.dataDir, "pg_hba.conf");
  const text = readFileSync(hba, "utf8");
  if (/^host\s+replication\s/m.test(text)) return;
  writeFileSync(hba, `${text}host replication all 127.0.0.1/32 scram-sha-256\n`);
  await psqlAdmin(primary, "postgres", ["-c", "select pg_reload_conf()"]);
  await sleep(500); // the postmaster rereads pg_hba.conf on SIGHUP, asynchronously
}

async function dropSlot(r: Replica): Promise<void> {
  if (!(await isRunning(r.primary))) return;
  await psqlAdmin(r.primary, "postgres", ["-c",
    `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '${r.slot}' and not active`]);
}

/**
 * Start the replica, making it first (pg_basebackup of the running primary) if its data directory
 * does not exist. Idempotent. `fresh`: throw away an existing one (and its slot) first.
 */
export async function ensureReplica(
  primary: Cluster,
  opts: { port: number; name?: string; fresh?: boolean },
): Promise<Replica & { created: boolean; wasRunning: boolean }> {
  const r = replicaFor(primary, opts.port, opts.name);
  if (opts.fresh) await destroyReplica(r);
  let created = false;
  if (!existsSync(join(r.dataDir, "PG_VERSION"))) {
    if (!(await isRunning(primary))) throw new Error(`the primary ${primary.name} (port ${primary.port}) is not running: start it before its replica`);
    await allowReplicationConnections(primary);
    await dropSlot(r); // one an earlier replica of this name left would hold WAL for nobody
    const conninfo = `host=127.0.0.1 port=${primary.port} user=supabase_admin password=${LOCAL_PASSWORD} application_name=${r.slot}`;
    await run(join(r.pgBin, "pg_basebackup"), ["-d", conninfo, "-D", r.dataDir, "-X", "stream", "-C", "-S", r.slot, "-R", "-c", "fast"], { asPostgres: true });
    appendFileSync(join(r.dataDir, "postgresql.conf"), [
      "",
      `# --- read replica of ${primary.name} (scripts/lib/replica.ts) ---`,
      `port = ${r.port}`,
      ...Object.entries(STANDBY_SETTINGS).map(([k, v]) => `${k} = ${/^\d/.test(v) ? `'${v}'` : v}`),
      "",
    ].join("\n"));
    created = true;
  }
  const wasRunning = await isRunning(r);
  if (!wasRunning) await startStoppedCluster(r);
  return { ...r, created, wasRunning };
}

/** Stops the replica (its slot keeps WAL on the primary); true if it was running. */
export function stopReplica(r: Replica, mode: "fast" | "immediate" = "fast"): Promise<boolean> {
  return stopCluster(r, mode);
}

/** Starts a stopped replica again; it catches up from its slot. */
export async function startReplica(r: Replica): Promise<void> {
  await startStoppedCluster(r);
}

/** Stops it, drops its slot on the primary and deletes its data. */
export async function destroyReplica(r: Replica): Promise<void> {
  await stopCluster(r, "immediate");
  await dropSlot(r);
  rmSync(r.dataDir, { recursive: true, force: true });
}

async function scalar(url: string, query: string): Promise<string> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const [row] = await sql.unsafe<{ v: string }[]>(query);
    return row?.v ?? "";
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * The primary's WAL position after everything inserted so far (pg_current_wal_insert_lsn): what a
 * replica must replay to show every transaction committed before the call. Not pg_current_wal_lsn,
 * the position written out: with synchronous_commit off (the test clusters) a commit returns before
 * its record is written, and a replica that replayed the written position may not have it yet.
 */
export function primaryLsn(primary: Cluster): Promise<string> {
  return scalar(primary.adminUrl(), "select pg_current_wal_insert_lsn()::text as v");
}

/**
 * Has the primary write out and flush its WAL now: a transaction with an xid that commits
 * synchronously flushes everything before its commit record. Without it, after an asynchronous
 * commit on an idle primary the WAL writer may hibernate for seconds before the replica gets it.
 */
async function flushPrimaryWal(primary: Cluster): Promise<void> {
  const sql = postgres(primary.adminUrl(), { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await sql.begin(async (tx) => {
      await tx`set local synchronous_commit = on`;
      await tx`select pg_catalog.txid_current()`;
    });
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The replica's last replayed WAL position (pg_last_wal_replay_lsn). */
export function replayLsn(r: Replica): Promise<string> {
  return scalar(r.adminUrl(), "select pg_last_wal_replay_lsn()::text as v");
}

/**
 * Waits until the replica has replayed the primary's WAL up to `lsn` (default: the primary's
 * position now), so what was committed before the call is visible on it. Throws after timeoutMs
 * with both positions.
 */
export async function waitForReplay(
  r: Replica,
  opts: { lsn?: string; timeoutMs?: number } = {},
): Promise<{ lsn: string; replayLsn: string; waitedMs: number }> {
  // flushed first, then the position read: the flush's own commit is inside it, so once the
  // replica has replayed it nothing written before the call is left to replay
  await flushPrimaryWal(r.primary);
  const lsn = opts.lsn ?? await primaryLsn(r.primary);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const t0 = performance.now();
  const sql = postgres(r.adminUrl(), { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    for (;;) {
      const [row] = await sql<{ replay: string; done: boolean }[]>`
        select pg_last_wal_replay_lsn()::text as replay, pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as done`;
      const waitedMs = performance.now() - t0;
      if (row?.done) return { lsn, replayLsn: row.replay, waitedMs };
      if (waitedMs > timeoutMs) {
        throw new Error(`replica ${r.name} (port ${r.port}) replayed up to ${row?.replay ?? "?"}, not ${lsn}, within ${timeoutMs} ms: ` +
          "is it streaming (pg_stat_replication on the primary) and is replay paused (pg_is_wal_replay_paused())?");
      }
      await new Promise((res) => setTimeout(res, 25));
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** pg_wal_replay_pause() / pg_wal_replay_resume() on the replica: lag without stopping it. */
export async function setReplayPaused(r: Replica, paused: boolean): Promise<void> {
  await scalar(r.adminUrl(), paused ? "select pg_wal_replay_pause()::text as v" : "select pg_wal_replay_resume()::text as v");
}
