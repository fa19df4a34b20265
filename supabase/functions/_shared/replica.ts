/**
 * Reads on a read replica (docs/replicas.md, "Routing"). When the project sets the secret
 * DB_REPLICA_URL (a Supabase read replica's connection string), a read runs there as the caller,
 * with the same RLS and the same statements, unless the replica is down or lags more than
 * DB_REPLICA_MAX_LAG_MS (default 5000); then it runs on the primary, and the answer says which
 * served it and why. Writes never come here.
 *
 * The lag is measured without a heartbeat table: every DB_REPLICA_CHECK_MS (default 500) an isolate
 * reads the primary's WAL position (pg_current_wal_lsn, kept with the time it was read: with
 * synchronous commits, hosted's default, every commit made before is written out up to it; the
 * insert position would also count records in flight, which a replica cannot have yet) and then
 * the replica's replay position. The newest kept primary position the replica has replayed says
 * everything committed on the primary before that time is visible on the replica: the lag is at
 * most now minus that time. An idle primary's position does not move, so an idle replica that has
 * replayed it has lag 0 (now() - pg_last_xact_replay_timestamp() would grow forever there). Until a
 * kept position is replayed the lag is not known and reads stay on the primary.
 *
 * A read on the replica waits at most DB_REPLICA_LOCK_TIMEOUT_MS (default 1000; 0: no bound of ours)
 * for a lock, then runs on the primary (fallback "replica_lock_wait"), and so do the isolate's reads
 * until its next check. Replaying the primary's ACCESS EXCLUSIVE locks, the replica makes readers of
 * that relation wait until the locking transaction's commit is replayed, holding the snapshot they
 * took; when a cleanup record (the primary's pruning or vacuum, any table of the database) lies
 * between the lock and the commit, replay waits for those very readers: neither moves until the
 * readers' statement_timeout (8 s for authenticated) or max_standby_streaming_delay (30 s) ends it,
 * and the app sees an error. The lock timeout ends that wait on our side instead, and the read is
 * answered by the primary (docs/replicas.md, "DDL and conflicts").
 *
 * The same check reads the standby's pg_stat_database_conflicts (visible only there), and every
 * ten checks the isolate reports that, its replica reads and its fallbacks to the primary in
 * partition_mgmt.replica_status, where health() reads them.
 */
import { type CallerContextOptions, type Connection, dbUrl, getSql, type Tx, withCallerContext } from "./db.ts";
import type { Claims } from "./jwt.ts";
import type { ReadRouting, ReplicaFallbackReason } from "./observations-contract.ts";
import { connectionFailure } from "./errors.ts";

const DEFAULT_MAX_LAG_MS = 5000;
const DEFAULT_CHECK_MS = 500;
const DEFAULT_LOCK_TIMEOUT_MS = 1000;
/** lock_not_available: what lock_timeout raises */
const LOCK_TIMEOUT_CODE = "55P03";
const REPORT_EVERY_CHECKS = 10;
/** primary positions kept (one per check): beyond them a replica counts as lagging anyway */
const MAX_SAMPLES = 1000;

interface ReplicaSettings {
  maxLagMs: number;
  checkMs: number;
  lockTimeoutMs: number;
}

function msSetting(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw} must be a number of milliseconds (0 or more)`);
  return n;
}

/** The replica's settings, or null when the project has no DB_REPLICA_URL. */
function replicaSettings(): ReplicaSettings | null {
  if (!Deno.env.get("DB_REPLICA_URL")) return null;
  return {
    maxLagMs: msSetting("DB_REPLICA_MAX_LAG_MS", DEFAULT_MAX_LAG_MS),
    checkMs: msSetting("DB_REPLICA_CHECK_MS", DEFAULT_CHECK_MS),
    lockTimeoutMs: msSetting("DB_REPLICA_LOCK_TIMEOUT_MS", DEFAULT_LOCK_TIMEOUT_MS),
  };
}

/** host:port/database of the replica's URL, never its password: its name in replica_status. */
export function replicaName(url: string = dbUrl("replica")): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || "5432"}${u.pathname}`;
}

/** A pg_lsn ("16/B374D848") as a number of bytes. */
export function lsnBytes(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  if (hi === undefined || lo === undefined) throw new Error(`not a WAL position: ${lsn}`);
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

interface Verdict {
  checkedAt: number;
  fallback: ReplicaFallbackReason | null;
  lagMs: number | null;
  replayLsn: string | null;
  /** the standby's pg_stat_database_conflicts row for this database; null when not reached */
  conflicts: Record<string, number> | null;
}

const state = {
  samples: [] as { lsn: bigint; at: number }[],
  verdict: null as Verdict | null,
  checking: null as Promise<Verdict> | null,
  checks: 0,
  replicaReads: 0,
  fallbacks: 0,
  lastFallback: null as ReplicaFallbackReason | null,
};

/**
 * Connection errors (not SQL errors: those are the read's answer, the same as the primary's),
 * too many connections on the replica included.
 */
export function replicaUnavailable(err: unknown): boolean {
  return connectionFailure(err) !== null;
}

async function check(s: ReplicaSettings): Promise<Verdict> {
  const at = Date.now();
  const [primary] = await getSql("pooled")<{ lsn: string }[]>`select pg_catalog.pg_current_wal_lsn()::text as lsn`;
  if (primary) state.samples.push({ lsn: lsnBytes(primary.lsn), at });
  if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
  let replica: { standby: boolean; replay: string | null; conflicts: Record<string, number> | null } | undefined;
  try {
    [replica] = await getSql("replica")<{ standby: boolean; replay: string | null; conflicts: Record<string, number> | null }[]>`
      select pg_catalog.pg_is_in_recovery() as standby, pg_catalog.pg_last_wal_replay_lsn()::text as replay,
             (select to_jsonb(c) - 'datid' - 'datname' from pg_catalog.pg_stat_database_conflicts c
              where c.datname = pg_catalog.current_database()) as conflicts`;
  } catch (err) {
    if (!replicaUnavailable(err)) throw err;
    console.warn(`read replica ${replicaName()} unreachable: ${(err as Error).message}`);
    return { checkedAt: Date.now(), fallback: "replica_unreachable", lagMs: null, replayLsn: null, conflicts: null };
  }
  const checkedAt = Date.now();
  if (!replica?.standby || replica.replay === null) {
    return { checkedAt, fallback: "replica_not_standby", lagMs: null, replayLsn: replica?.replay ?? null, conflicts: replica?.conflicts ?? null };
  }
  const replay = lsnBytes(replica.replay);
  let newest = -1;
  for (let i = state.samples.length - 1; i >= 0; i--) {
    if ((state.samples[i]?.lsn ?? replay + 1n) <= replay) {
      newest = i;
      break;
    }
  }
  // positions older than the newest replayed one say nothing more
  if (newest > 0) state.samples.splice(0, newest);
  const since = state.samples[0]?.at ?? at;
  const lagMs = checkedAt - since;
  const fallback = lagMs > s.maxLagMs ? "replica_lagging" : newest < 0 ? "replica_lag_unknown" : null;
  return { checkedAt, fallback, lagMs: newest < 0 ? null : lagMs, replayLsn: replica.replay, conflicts: replica.conflicts };
}

/** The replica's state, checked at most every checkMs per isolate (concurrent requests share one check). */
async function currentVerdict(s: ReplicaSettings): Promise<Verdict> {
  const v = state.verdict;
  if (v && Date.now() - v.checkedAt < s.checkMs) return v;
  state.checking ??= check(s).then(async (fresh) => {
    state.verdict = fresh;
    if (++state.checks % REPORT_EVERY_CHECKS === 1) await report(fresh);
    return fresh;
  }).finally(() => {
    state.checking = null;
  });
  return await state.checking;
}

/** Adds this isolate's reads and fallbacks since its last report to partition_mgmt.replica_status. */
async function report(v: Verdict): Promise<void> {
  const reads = state.replicaReads;
  const fallbacks = state.fallbacks;
  try {
    await getSql("pooled")`select partition_mgmt.record_replica_routing(
      ${replicaName()}, ${v.replayLsn}::pg_lsn, ${v.lagMs}::bigint, ${v.conflicts === null ? null : JSON.stringify(v.conflicts)}::text::jsonb,
      ${reads}::bigint, ${fallbacks}::bigint, ${state.lastFallback}::text)`;
    state.replicaReads -= reads;
    state.fallbacks -= fallbacks;
  } catch (err) {
    // monitoring must not fail a read; the counts stay for the next report
    console.warn(`could not record the read replica's state: ${(err as Error).message}`);
  }
}

/** What a read passes on to withCallerContext: everything but the connection, which routing picks. */
export type ReadOptions = Omit<CallerContextOptions, "connection" | "freshSession">;

async function onPrimary<T>(
  claims: Claims, fn: (tx: Tx) => Promise<T>, reason: ReplicaFallbackReason, options: ReadOptions,
): Promise<{ result: T; routing: ReadRouting }> {
  state.fallbacks++;
  state.lastFallback = reason;
  return { result: await withCallerContext(claims, fn, options), routing: { served_by: "primary", fallback: reason } };
}

/** True when a replica read gave up waiting for a lock (our lock_timeout there). */
function lockWaitEnded(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === LOCK_TIMEOUT_CODE;
}

/**
 * Runs the read fn as the caller on the replica when it is configured, up and within its lag
 * bound, else on the primary's pooled connection; says which served it. A replica that fails
 * to connect during the read, or keeps it waiting for a lock past lockTimeoutMs, sends that read
 * (and the isolate's next ones, until its next check) to the primary too.
 */
export async function readAsCaller<T>(
  claims: Claims, fn: (tx: Tx) => Promise<T>, options: ReadOptions = {},
): Promise<{ result: T; routing: ReadRouting }> {
  const s = replicaSettings();
  if (!s) return { result: await withCallerContext(claims, fn, options), routing: { served_by: "primary", fallback: null } };
  const v = await currentVerdict(s);
  if (v.fallback) return await onPrimary(claims, fn, v.fallback, options);
  const connection: Connection = "replica";
  const settings = s.lockTimeoutMs > 0 ? { ...options.settings, lock_timeout: `${s.lockTimeoutMs}ms` } : options.settings;
  try {
    const result = await withCallerContext(claims, fn, { ...options, connection, ...(settings ? { settings } : {}) });
    state.replicaReads++;
    return { result, routing: { served_by: "replica", fallback: null } };
  } catch (err) {
    const reason: ReplicaFallbackReason | null = replicaUnavailable(err) ? "replica_unreachable" : lockWaitEnded(err) ? "replica_lock_wait" : null;
    if (reason === null) throw err;
    if (reason === "replica_lock_wait") console.warn(`read replica ${replicaName()}: a read waited ${s.lockTimeoutMs} ms for a lock; the primary answers it`);
    state.verdict = { checkedAt: Date.now(), fallback: reason, lagMs: null, replayLsn: null, conflicts: null };
    return await onPrimary(claims, fn, reason, options);
  }
}
