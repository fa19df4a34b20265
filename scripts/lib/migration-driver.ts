// Drives the online migration (migration 20250102000500_safety_and_rollback) from outside the
// database: every step is one call to the SQL API in its own transaction, so each backfill batch
// commits on its own and a killed driver resumes where the last committed batch ended.
import type { Sql } from "postgres";

export interface MonitorRow {
  table_key: string;
  phase: string;
  rows_copied: string;
  rows_scanned: string;
  rows_total: string | null;
  percent: string;
  rows_per_second: string | null;
  eta: string | null;
  pending_in_defaults: string;
  batches: string;
  last_error: string | null;
  swap_lock_ms: string | null;
}

export interface CheckRow { table_key: string; check_name: string; status: string; detail: string }
export interface ValidationRow { table_key: string; check_name: string; status: string; legacy_value: string | null; partitioned_value: string | null; detail: string }

export interface DriveOptions {
  batchSize?: number;
  /** pause between batches (throttle) */
  throttleMs?: number;
  /** go on to the swap after validation (otherwise stop at 'validated': the postpone switch) */
  swap?: boolean;
  lockTimeout?: string;
  attempts?: number;
  /** called with the monitor row every progressEveryMs */
  onProgress?: (m: MonitorRow) => void;
  progressEveryMs?: number;
  /** stop after this many batches (tests: interrupt a run) */
  maxBatches?: number;
}

export interface DriveResult {
  table: string;
  phase: string;
  batches: number;
  backfillSeconds: number;
  rowsScanned: number;
  swap?: { attempts: number; lockHeldMs: number };
  validation: ValidationRow[];
}

export async function preMigrationCheck(sql: Sql, table?: string): Promise<CheckRow[]> {
  return sql<CheckRow[]>`select * from partition_mgmt.pre_migration_check(${table ?? null})`;
}

export async function monitor(sql: Sql, table: string): Promise<MonitorRow> {
  const [m] = await sql<MonitorRow[]>`select * from partition_mgmt.monitor_migration(${table})`;
  if (!m) throw new Error(`monitor_migration returned nothing for ${table}`);
  return m;
}

export async function validate(sql: Sql, table: string): Promise<ValidationRow[]> {
  return sql<ValidationRow[]>`select * from partition_mgmt.post_migration_validation(${table})`;
}

/** Runs batches until the backfill is done (or maxBatches). Returns the number of batches run. */
export async function backfill(sql: Sql, table: string, o: DriveOptions = {}): Promise<number> {
  let batches = 0;
  let lastReport = 0;
  for (;;) {
    const [r] = await sql<{ done: boolean; error: string | null; batches: number }[]>`
      select * from partition_mgmt.migrate_to_partitioned(${o.batchSize ?? 10000}, null, ${table})`;
    if (!r) throw new Error(`no migration of ${table} is backfilling`);
    if (r.error) throw new Error(`backfill of ${table} failed: ${r.error}`);
    batches += r.batches;
    if (o.onProgress && performance.now() - lastReport >= (o.progressEveryMs ?? 250)) {
      lastReport = performance.now();
      o.onProgress(await monitor(sql, table));
    }
    if (r.done) break;
    if (o.maxBatches !== undefined && batches >= o.maxBatches) break;
    if (o.throttleMs) await new Promise((res) => setTimeout(res, o.throttleMs));
  }
  if (o.onProgress) o.onProgress(await monitor(sql, table));
  return batches;
}

/**
 * prepare + sync (safe_migrate_table's advance), one transaction per call: prepare creates the
 * partitions within each transaction's lock budget and may need several. Returns the phase.
 */
export async function startMigration(sql: Sql, table: string, postponeSwap = true): Promise<string> {
  for (let call = 1; ; call++) {
    const rows = await sql<{ phase: string; status: string; detail: string }[]>`
      select * from partition_mgmt.safe_migrate_table(${table}, false, ${postponeSwap})`;
    const last = rows.at(-1);
    if (!last || last.phase !== "preparing") return last?.phase ?? "?";
    if (call >= 1000) throw new Error(`prepare of ${table} is still not finished after ${call} calls: ${last.detail}`);
  }
}

/**
 * rollback_migration, then finish_rollback in a transaction of its own (the copy is emptied
 * without any lock on the app's table). Returns rollback_migration's message.
 */
export async function rollback(sql: Sql, table: string, lockTimeout = "1s", attempts = 10): Promise<string> {
  const [r] = await sql<{ m: string }[]>`select partition_mgmt.rollback_migration(${table}, ${lockTimeout}, ${attempts}) as m`;
  await sql`select partition_mgmt.finish_rollback(${table})`;
  return r?.m ?? "";
}

/** check → prepare → sync → backfill → validate → (swap). Idempotent: re-running continues. */
export async function migrateOnline(sql: Sql, table: string, o: DriveOptions = {}): Promise<DriveResult> {
  const blockers = (await preMigrationCheck(sql, table)).filter((c) => c.status === "blocker");
  if (blockers.length) throw new Error(`pre-migration check of ${table}: ${blockers.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
  await startMigration(sql, table);
  const t0 = performance.now();
  const batches = await backfill(sql, table, o);
  const backfillSeconds = (performance.now() - t0) / 1000;
  const validation = await validate(sql, table);
  const bad = validation.filter((v) => v.status !== "ok");
  if (bad.length) throw new Error(`validation of ${table} failed: ${bad.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
  const m = await monitor(sql, table);
  const result: DriveResult = { table, phase: m.phase, batches, backfillSeconds, rowsScanned: Number(m.rows_scanned), validation };
  if (o.swap) {
    const [s] = await sql<{ phase: string; attempts: number; lock_held_ms: string }[]>`
      select * from partition_mgmt.swap_tables(${table}, ${o.lockTimeout ?? "1s"}, ${o.attempts ?? 10})`;
    result.phase = s?.phase ?? "?";
    result.swap = { attempts: s?.attempts ?? 0, lockHeldMs: Number(s?.lock_held_ms ?? 0) };
    // statistics for the planner on the new parent (autovacuum analyzes only the leaves)
    const [live] = await sql<{ name: string }[]>`select partition_mgmt.live_table(partition_mgmt.resolve_table_key(${table}))::text as name`;
    if (live) await sql.unsafe(`analyze ${live.name}`);
  }
  return result;
}

export function progressBar(m: MonitorRow, width = 30): string {
  const pct = Math.min(100, Number(m.percent));
  const filled = Math.round((pct / 100) * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct.toFixed(1).padStart(5)}%  ${m.rows_scanned}/${m.rows_total === null || m.rows_total === undefined ? "?" : Math.max(Number(m.rows_total), Number(m.rows_scanned))} rows` +
    `  ${m.rows_per_second ?? "-"} rows/s  eta ${m.eta ?? "-"}  ${m.phase}  defaults ${m.pending_in_defaults}`;
}
