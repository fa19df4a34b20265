// The test stack's read replica (scripts/lib/replica.ts): a streaming standby of the test cluster
// that scripts/test.ts starts, and the functions server whose read function routes to it.
// The suites that stop it or pause its replay live in test/replica/, which runs one file at a time.
import type { Sql } from "postgres";
import { clusterFor } from "../../scripts/lib/cluster.ts";
import {
  primaryLsn,
  replicaFor,
  setReplayPaused,
  startReplica,
  stopReplica,
  waitForReplay,
  type Replica,
} from "../../scripts/lib/replica.ts";
import { connect, withDatabase } from "./db.ts";
import { requireEnv } from "./env.ts";

/** The test stack's replica (not a new one: scripts/test.ts made it). */
export function testReplica(): Replica {
  const primary = clusterFor({ name: requireEnv("TEST_CLUSTER_NAME"), port: Number(requireEnv("TEST_DB_PORT")), pgBin: requireEnv("TEST_PG_BIN") });
  return replicaFor(primary, Number(requireEnv("TEST_REPLICA_PORT")));
}

export const replicaEnv = {
  /** the functions server whose read function has DB_REPLICA_URL set to the test replica */
  get functionsUrl() { return requireEnv("TEST_REPLICA_FUNCTIONS_URL"); },
  /** its DB_REPLICA_MAX_LAG_MS and DB_REPLICA_CHECK_MS */
  get maxLagMs() { return Number(requireEnv("TEST_REPLICA_MAX_LAG_MS")); },
  get checkMs() { return Number(requireEnv("TEST_REPLICA_CHECK_MS")); },
};

/** URL of `database` on the replica, as the `postgres` role (the superuser: `admin`). */
export function replicaUrl(database: string, o: { admin?: boolean } = {}): string {
  const r = testReplica();
  return withDatabase(o.admin ? r.adminUrl() : r.url(), database);
}

/** A pool on `database` of the replica; call it after waitForReplica so the database exists there. */
export function connectReplica(database: string, max = 2, o: { admin?: boolean } = {}): Sql {
  return connect(replicaUrl(database, o), max);
}

/** Waits until the replica has replayed everything the primary committed before the call. */
export function waitForReplica(timeoutMs = 30_000): Promise<{ lsn: string; replayLsn: string; waitedMs: number }> {
  return waitForReplay(testReplica(), { timeoutMs });
}

export const pauseReplicaReplay = (): Promise<void> => setReplayPaused(testReplica(), true);
export const resumeReplicaReplay = (): Promise<void> => setReplayPaused(testReplica(), false);
export const stopTestReplica = (): Promise<boolean> => stopReplica(testReplica());
export const startTestReplica = (): Promise<void> => startReplica(testReplica());
export const primaryWalLsn = (): Promise<string> => primaryLsn(testReplica().primary);
