// Drives the online migration (migrations 20250102000400 to 0470, migration_*) from outside the
// database through its orchestrator, partition_mgmt.migration_step(): every step is one call in
// its own transaction (prepare as far as one transaction's lock budget goes, the sync, one
// backfill batch, the validation, the swap), so each batch commits on its own and a killed driver
// resumes where the last committed batch ended. The swap and the rollback run in a session of
// their own (freshSession): a session that has touched every leaf processes their catalog
// changes slowly, under ACCESS EXCLUSIVE.
import postgres, { type Sql } from "postgres";
import type { MonitorRow } from "./migration-progress.ts";

export { type MonitorRow, progressBar } from "./migration-progress.ts";


/** One step of partition_mgmt.migration_step(). */
export interface StepRow<R = Record<string, unknown>> { step: string; phase: string; next_step: string; result: R | null }

/** A new connection to the same database, for one statement that must not share a pooled session. */
export function freshSession(sql: Sql): Sql {
  return postgres({ ...(sql.options as unknown as postgres.Options<Record<string, never>>), max: 1 });
}

/** The step after the current phase; swap: whether a validated table's next step is the swap (default: step_defaults(), false). */
export async function nextStep(sql: Sql, table: string, swap?: boolean): Promise<string> {
  const [r] = await sql<{ s: string }[]>`select partition_mgmt.migration_next_step(${table}, ${swap ?? null}) as s`;
  return r?.s ?? "?";
}

/**
 * The next step of the migration of table, in its own transaction (the swap in a session of its
 * own). An option left out is passed as null: migration_step takes partition_mgmt.step_defaults()'s.
 */
export async function step<R = Record<string, unknown>>(sql: Sql, table: string,
  o: { swap?: boolean; batchSize?: number; lockTimeout?: string; attempts?: number } = {}): Promise<StepRow<R>> {
  const conn = (await nextStep(sql, table, o.swap)) === "swap" ? freshSession(sql) : sql;
  try {
    const [r] = await conn<StepRow<R>[]>`
      select * from partition_mgmt.migration_step(${table}, ${o.swap ?? null}, ${o.batchSize ?? null}, 1, null, ${o.lockTimeout ?? null}, ${o.attempts ?? null})`;
    if (!r) throw new Error(`migration_step returned nothing for ${table}`);
    return r;
  } finally {
    if (conn !== sql) await conn.end();
  }
}

export interface CheckRow { table_key: string; check_name: string; status: string; detail: string }
export interface ValidationRow { table_key: string; check_name: string; status: string; legacy_value: string | null; partitioned_value: string | null; detail: string }

export interface DriveOptions {
  /** the most rows of one backfill batch (default: step_defaults()); batches are sized by time below it */
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

/** Backfill steps until the backfill is done (or maxBatches). Returns the number of batches run. */
export async function backfill(sql: Sql, table: string, o: DriveOptions = {}): Promise<number> {
  let batches = 0;
  let lastReport = 0;
  while ((await nextStep(sql, table, false)) === "backfill") {
    const r = await step<{ done: boolean; batches: number }>(sql, table, o.batchSize === undefined ? {} : { batchSize: o.batchSize });
    batches += r.result?.batches ?? 0;
    if (o.onProgress && performance.now() - lastReport >= (o.progressEveryMs ?? 250)) {
      lastReport = performance.now();
      o.onProgress(await monitor(sql, table));
    }
    if (r.next_step !== "backfill") break;
    if (o.maxBatches !== undefined && batches >= o.maxBatches) break;
    if (o.throttleMs) await new Promise((res) => setTimeout(res, o.throttleMs));
  }
  if (o.onProgress) o.onProgress(await monitor(sql, table));
  return batches;
}

/**
 * The steps before the backfill (prepare, in as many transactions as its lock budget needs, then
 * the sync). Returns the phase.
 */
export async function startMigration(sql: Sql, table: string): Promise<string> {
  for (let call = 1; ; call++) {
    const next = await nextStep(sql, table, false);
    if (next !== "prepare" && next !== "sync") return (await monitor(sql, table)).phase;
    const r = await step(sql, table);
    if (call >= 1000) throw new Error(`prepare of ${table} is still not finished after ${call} calls: ${JSON.stringify(r.result)}`);
  }
}

/**
 * rollback_migration, then finish_rollback in a transaction of its own (the copy is emptied
 * without any lock on the app's table). Returns rollback_migration's message.
 */
export async function rollback(sql: Sql, table: string, lockTimeout = "1s", attempts = 10): Promise<string> {
  const fresh = freshSession(sql);
  try {
    const [r] = await fresh<{ m: string }[]>`select partition_mgmt.rollback_migration(${table}, ${lockTimeout}, ${attempts}) as m`;
    await sql`select partition_mgmt.finish_rollback(${table})`;
    return r?.m ?? "";
  } finally {
    await fresh.end();
  }
}

/** finalize_migration in a session of its own (it drops the legacy table). Returns its message. */
export async function finalize(sql: Sql, table: string): Promise<string> {
  const fresh = freshSession(sql);
  try {
    const [r] = await fresh<{ m: string }[]>`select partition_mgmt.finalize_migration(${table}) as m`;
    return r?.m ?? "";
  } finally {
    await fresh.end();
  }
}

/** check → prepare → sync → backfill → validate → (swap), step by step. Idempotent: re-running continues. */
export async function migrateOnline(sql: Sql, table: string, o: DriveOptions = {}): Promise<DriveResult> {
  const blockers = (await preMigrationCheck(sql, table)).filter((c) => c.status === "blocker");
  if (blockers.length) throw new Error(`pre-migration check of ${table}: ${blockers.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
  await startMigration(sql, table);
  const t0 = performance.now();
  const batches = await backfill(sql, table, o);
  const backfillSeconds = (performance.now() - t0) / 1000;
  let validation: ValidationRow[] = [];
  if ((await nextStep(sql, table, false)) === "validate") {
    validation = (await step<{ rows: ValidationRow[] }>(sql, table)).result?.rows ?? [];
  } else {
    validation = await validate(sql, table);
  }
  const bad = validation.filter((v) => v.status !== "ok");
  if (bad.length) throw new Error(`validation of ${table} failed: ${bad.map((b) => `${b.check_name}: ${b.detail}`).join("; ")}`);
  const m = await monitor(sql, table);
  const result: DriveResult = { table, phase: m.phase, batches, backfillSeconds, rowsScanned: Number(m.rows_scanned), validation };
  if (o.swap) {
    const opts = { swap: true, ...(o.lockTimeout ? { lockTimeout: o.lockTimeout } : {}), ...(o.attempts ? { attempts: o.attempts } : {}) };
    const r = await step<{ rows: { phase: string; attempts: number; lock_held_ms: string }[] }>(sql, table, opts);
    const s = r.result?.rows[0];
    result.phase = r.phase;
    result.swap = { attempts: s?.attempts ?? 0, lockHeldMs: Number(s?.lock_held_ms ?? 0) };
    // statistics for the planner on the new parent (autovacuum analyzes only the leaves)
    const [live] = await sql<{ name: string }[]>`select partition_mgmt.live_table(partition_mgmt.resolve_table_key(${table}))::text as name`;
    if (live) await sql.unsafe(`analyze ${live.name}`);
  }
  return result;
}
