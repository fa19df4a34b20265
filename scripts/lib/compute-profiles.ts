// Supabase compute sizes as PostgreSQL settings: every local cluster (dev, test, bench) runs with
// one of them, Micro unless SUPABASE_COMPUTE names another, so the local stack is never more
// generous than the hosted instance a user runs. Sources (see docs/local-stack.md, "Compute profiles"):
//  - max_connections, max_wal_senders, max_replication_slots: Supabase docs, "Compute and Disk"
//    (supabase/supabase apps/docs/content/guides/platform/compute-and-disk.mdx);
//  - memory and parallel settings: the platform's generator table (supabase-admin-api
//    optimizations/postgres.go, 2022; Micro-Medium confirmed 2023-07), except
//    max_worker_processes on Nano/Micro: 6, as measured on 2026 free-plan projects;
//  - max_locks_per_transaction: PostgreSQL's default 64 on every size (supabase/postgres
//    postgresql.conf.j2 leaves it commented out; supabase/cli#2611). A user raises it with
//    `supabase --experimental postgres-config update --config max_locks_per_transaction=N`;
//    SUPABASE_MAX_LOCKS_PER_TRANSACTION=N does the same locally;
//  - statement_timeout 2 min for the database (Supabase docs, "Timeouts"); role timeouts are set
//    by scripts/sql/bootstrap-cluster.sql.

export interface ComputeProfile {
  name: string;
  ramGb: number;
  maxConnections: number;
  sharedBuffers: string;
  effectiveCacheSize: string;
  workMem: string;
  maintenanceWorkMem: string;
  maxWorkerProcesses: number;
  maxParallelWorkers: number;
  maxParallelWorkersPerGather: number;
  maxParallelMaintenanceWorkers: number;
  maxWalSenders: number;
  maxReplicationSlots: number;
}

type Row = [string, number, number, string, string, string, string, number, number, number, number, number];
// name, RAM GB, max_connections, shared_buffers, effective_cache_size, work_mem, maintenance_work_mem,
// max_worker_processes, max_parallel_workers, per_gather, maintenance_workers, wal senders (= slots)
const TABLE: Row[] = [
  ["nano", 0.5, 60, "224MB", "384MB", "2184kB", "32MB", 6, 2, 1, 1, 5],
  ["micro", 1, 60, "256MB", "768MB", "3500kB", "64MB", 6, 2, 1, 1, 5],
  ["small", 2, 90, "512MB", "1536MB", "5MB", "128MB", 6, 2, 1, 1, 5],
  ["medium", 4, 120, "1GB", "3GB", "7MB", "256MB", 6, 2, 1, 1, 5],
  ["large", 8, 160, "2GB", "6GB", "12MB", "512MB", 6, 2, 1, 1, 8],
  ["xl", 16, 240, "4GB", "12GB", "16MB", "1GB", 6, 4, 2, 2, 24],
  ["2xl", 32, 380, "8GB", "24GB", "20MB", "2GB", 8, 8, 4, 4, 80],
  ["4xl", 64, 480, "16GB", "48GB", "32MB", "2GB", 16, 16, 8, 8, 80],
  ["8xl", 128, 490, "32GB", "96GB", "64MB", "2GB", 32, 32, 16, 16, 80],
  ["12xl", 192, 500, "48GB", "144GB", "95MB", "2GB", 48, 48, 24, 24, 80],
  ["16xl", 256, 500, "64GB", "192GB", "125MB", "2GB", 64, 64, 32, 32, 80],
];

export const COMPUTE_PROFILES: ComputeProfile[] = TABLE.map(([name, ramGb, maxConnections, sharedBuffers, effectiveCacheSize, workMem,
  maintenanceWorkMem, maxWorkerProcesses, maxParallelWorkers, maxParallelWorkersPerGather, maxParallelMaintenanceWorkers, wal]) => ({
  name, ramGb, maxConnections, sharedBuffers, effectiveCacheSize, workMem, maintenanceWorkMem, maxWorkerProcesses,
  maxParallelWorkers, maxParallelWorkersPerGather, maxParallelMaintenanceWorkers, maxWalSenders: wal, maxReplicationSlots: wal,
}));

export const DEFAULT_COMPUTE = "micro";
export const HOSTED_MAX_LOCKS_PER_TRANSACTION = 64;
/** autovacuum_max_workers and max_prepared_transactions: PostgreSQL's defaults, also on hosted */
const AUTOVACUUM_MAX_WORKERS = 3;
const MAX_PREPARED_TRANSACTIONS = 0;

export interface ServerLimits {
  profile: ComputeProfile;
  maxLocksPerTransaction: number;
  /** true when SUPABASE_MAX_LOCKS_PER_TRANSACTION raised it above the hosted default */
  locksRaised: boolean;
}

/** The profile and lock setting a cluster starts with: SUPABASE_COMPUTE, SUPABASE_MAX_LOCKS_PER_TRANSACTION. */
export function serverLimits(env: NodeJS.ProcessEnv = process.env): ServerLimits {
  const wanted = (env.SUPABASE_COMPUTE ?? DEFAULT_COMPUTE).trim().toLowerCase();
  const profile = COMPUTE_PROFILES.find((p) => p.name === wanted);
  if (!profile) {
    throw new Error(`SUPABASE_COMPUTE=${env.SUPABASE_COMPUTE} is not a Supabase compute size; use one of ${COMPUTE_PROFILES.map((p) => p.name).join(", ")}`);
  }
  const raw = env.SUPABASE_MAX_LOCKS_PER_TRANSACTION;
  const locks = raw === undefined || raw === "" ? HOSTED_MAX_LOCKS_PER_TRANSACTION : Number(raw);
  if (!Number.isInteger(locks) || locks < 10) {
    throw new Error(`SUPABASE_MAX_LOCKS_PER_TRANSACTION=${raw} must be an integer of at least 10 (hosted accepts >= 10; its default is 64)`);
  }
  return { profile, maxLocksPerTransaction: locks, locksRaised: locks > HOSTED_MAX_LOCKS_PER_TRANSACTION };
}

/** postgresql.conf lines for the profile. */
export function profileSettings(l: ServerLimits): string[] {
  const p = l.profile;
  return [
    `# Supabase compute profile: ${p.name} (${p.ramGb} GB)${l.locksRaised ? `, max_locks_per_transaction raised to ${l.maxLocksPerTransaction}` : ""}`,
    `max_connections = ${p.maxConnections}`,
    `max_locks_per_transaction = ${l.maxLocksPerTransaction}`,
    `max_prepared_transactions = ${MAX_PREPARED_TRANSACTIONS}`,
    `autovacuum_max_workers = ${AUTOVACUUM_MAX_WORKERS}`,
    `shared_buffers = '${p.sharedBuffers}'`,
    `effective_cache_size = '${p.effectiveCacheSize}'`,
    `work_mem = '${p.workMem}'`,
    `maintenance_work_mem = '${p.maintenanceWorkMem}'`,
    `max_worker_processes = ${p.maxWorkerProcesses}`,
    // pg_cron's jobs run in background workers; the server refuses more than the worker slots less its launcher
    `cron.max_running_jobs = ${Math.min(8, p.maxWorkerProcesses - 1)}`,
    `max_parallel_workers = ${p.maxParallelWorkers}`,
    `max_parallel_workers_per_gather = ${p.maxParallelWorkersPerGather}`,
    `max_parallel_maintenance_workers = ${p.maxParallelMaintenanceWorkers}`,
    `max_wal_senders = ${p.maxWalSenders}`,
    `max_replication_slots = ${p.maxReplicationSlots}`,
    "wal_level = logical",
    "statement_timeout = '2min'",
    "",
  ];
}
