// The shape of a benchmark result (written as JSON, read by the report writer and the smoke test).
import type { TreeShape } from "./options.ts";
import type { Summary } from "./stats.ts";

export type TableKind = "legacy" | "indexed" | "partitioned";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  loadAverage: number[];
  /** load average when the run finished */
  loadAverageEnd?: number[];
  os: string;
  node: string;
  postgres: string;
  settings: Record<string, string>;
  /** where the database ran: the bench's own cluster or the --db-url given */
  database: string;
}

export interface BuildStep {
  name: string;
  seconds: number;
  detail: string;
}

export interface SessionProbe {
  /** the session that copied every row (it has written into every leaf) */
  copySession: { ddlMs: number; insertMs: number; firstInsertMs: number };
  freshSession: { ddlMs: number; insertMs: number; firstInsertMs: number };
}

/** Rows per leaf over a set of leaves (NaN when the set is empty). */
export interface LeafRows {
  leaves: number;
  min: number;
  median: number;
  max: number;
  /** leaves without a row (premade periods, waiting-room DEFAULTs) */
  empty: number;
}

/** The petri tree prepare_migration built, and what a statement without its keys costs on it. */
export interface TreeInfo {
  shape: TreeShape;
  targetRowsPerLeaf: number;
  /** every leaf, DEFAULT leaves included */
  leaves: number;
  /** leaves that are not DEFAULT partitions (periods; sites split 'none') */
  leavesWithoutDefaults: number;
  /** DEFAULT partitions (all of them leaves) */
  defaults: number;
  /** partitions and parents of the tree (pg_partition_tree) */
  relations: number;
  /** programs and sites of the data, and those with partitions of their own */
  programs: number;
  sites: number;
  ownPrograms: number;
  ownSites: number;
  rowsPerLeaf: LeafRows;
  rowsPerLeafWithoutDefaults: LeafRows;
  /** rows in DEFAULT leaves: in a sized tree the programs and sites that share one */
  rowsInDefaults: number;
  /** rows in DEFAULT leaves that wait for a partition of their own (partition_mgmt.is_waiting_room): 0 after the build */
  rowsWaiting: number;
  /** leaves of every managed table (petri and gasifier) */
  allTablesLeaves: number;
  /** partition_mgmt.lock_budget() for the petri tree */
  lockBudget: { keylessLocks: number; keylessAtOnce: number; lockCapacity: number; minimum: number; status: string };
  /** partition_mgmt.pre_migration_check('petri') rows about the tree, before it was built */
  precheck: { tree: string; lockBudget: string; indexesPerLeaf: string };
}

/** The lock setting the run had, and why. */
export interface LockSetting {
  maxLocksPerTransaction: number;
  /** partition_mgmt.lock_capacity(): slots of the shared lock table */
  lockCapacity: number;
  /** what the server's own setting was when the bench found it */
  serverDefault: number;
  /** raised: the bench restarted its own cluster with the setting the tree needs */
  source: "server" | "raised";
  reason: string;
  /** each managed table's 'lock budget' row of pre_migration_check() on the legacy data */
  checks: { table: string; status: string; detail: string }[];
}

export interface BuildInfo {
  steps: BuildStep[];
  demo: { companies: number; programs: number; sites: number; months: number; petriPerSiteMonth: number; gasifierPerSiteMonth: number };
  rows: { legacy: number; indexed: number; partitioned: number; gasifier: number; submissions: number };
  sizes: { legacyBytes: number; indexedBytes: number; partitionedBytes: number };
  tree: TreeInfo;
  locks: LockSetting;
  generator: { rows: number; seconds: number; rowsPerSecond: number };
  /** prepare_migration('petri') called until the phase is 'prepared' (each call its own transaction) */
  prepare: { calls: number; seconds: number; leaves: number; message: string };
  offlineCopy: { rows: number; seconds: number; rowsPerSecond: number };
  sessionProbe?: SessionProbe;
  indexedCopy: { rows: number; seconds: number };
  /** how the partitioned table became the live table */
  swap: string;
}

export interface VariantResult {
  id: string;
  label: string;
  table: TableKind;
  role: "baseline" | "candidate" | "extra";
  sql: string;
  timings: Summary;
  samples: number[];
  /** server-side planning time of the statement (EXPLAIN (SUMMARY)); null when it runs inside a function */
  planning: Summary | null;
  /** partitions in the plan (partition_mgmt.explain_partitions), partitioned plain statements only */
  partitionsInPlan?: number;
  error?: string;
}

export interface RoundTrip {
  /** `select 1`: the client/server round trip included in every query figure */
  selectOne: Summary;
}

export interface QueryClassResult {
  id: string;
  title: string;
  what: string;
  promise: string;
  variants: VariantResult[];
  /** rows the filter selects (aggregate classes: the count(*) the legacy table returned) */
  matchedRows?: number;
  /** partitioned (the candidate) vs each baseline: baseline median / candidate median */
  speedupVsLegacy: number | null;
  speedupVsIndexed: number | null;
}

export interface InsertRun {
  table: TableKind;
  commit: "durable" | "async";
  connections: number;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  latency: Summary;
  errors: number;
  firstError?: string;
}

export interface InsertProfile {
  table: TableKind;
  label: string;
  samples: number;
  executionMs: number;
  planningMs: number;
  triggers: { name: string; ms: number }[];
  /** execution minus triggers: routing, heap and index writes */
  otherMs: number;
}

export interface InsertResult {
  runs: InsertRun[];
  /** the warm-up: the first insert into each target site's leaf through each connection */
  firstTouch: { table: TableKind; inserts: number; meanMs: number; p95Ms: number }[];
  profile: InsertProfile[];
  /** per-row cost of a bulk INSERT … SELECT (the offline copy's statement), ms per row */
  copyProfile?: InsertProfile[];
  copyProfileNote?: string;
  /** partitioned rows/s as a share of legacy rows/s, per commit mode and connections */
  shares: { commit: string; connections: number; share: number }[];
}

export interface PlanningLevel {
  leaves: number;
  /** DEFAULT partitions of the tree (also planned by an id-only statement) */
  defaults: number;
  createSeconds: number;
  msPerLeaf: number;
  keyed: { planning: Summary; execution: Summary; coldPlanningMs: number };
  /** null when one id-only statement would take more than half the lock table (idOnlySkipped says why) */
  idOnly: { planning: Summary; execution: Summary; coldPlanningMs: number } | null;
  idOnlySkipped?: string;
  /** partition_mgmt.keyless_statement_locks of the table at this level */
  keylessLocks: number;
}

export interface PlanningResult {
  table: string;
  shape: string;
  levels: PlanningLevel[];
  keyedSql: string;
  idOnlySql: string;
  error?: string;
}

/** The day of new writes made before the maintenance run (day-writes.ts). */
export interface DayWrites {
  rows: number;
  statements: number;
  /** sites of running programs the rows went to */
  sites: number;
  seconds: number;
  /** analytics.metrics_dirty after the writes: distinct (program, site, day) groups and entries */
  dirtyGroups: number;
  dirtyEntries: number;
  /**
   * rows in those groups after the writes: what the refresh recomputes (the written rows and any
   * the groups held before; absent in older results)
   */
  groupRows?: number;
  /** the UTC day the rows went on (absent in older results) */
  day?: string;
}

export interface MaintenanceResult {
  seconds: number;
  /** the day of writes made just before the run (absent in results older than the scale curve) */
  dayWrites?: DayWrites;
  /** the untimed run before the day of writes, for what the sections before wrote (absent in older results) */
  settleSeconds?: number;
  /** the run stopped at its time budget (the log's reason); the next run goes on */
  unfinished?: string;
  steps: MaintenanceStep[];
  error?: string;
  /**
   * When the measured run restructured the tree (promotions the day of writes asked for) or did not
   * finish: the nightly runs after it until no promotion is left to start, copy or cut over, then a
   * second day of writes and the run on it, timed: the nightly cost once the tree has settled.
   */
  steady?: SteadyMaintenance;
}

export interface MaintenanceStep { table: string | null; action: string; status: string; seconds: number; partitions: number; rows: number; error: string | null }

export interface SteadyMaintenance {
  /** untimed nightly runs after the measured one, until one finished without promotion work */
  settleRuns: number;
  settleSeconds: number;
  /** whether the last of them finished with nothing left to promote (false: stopped at the run limit) */
  settled: boolean;
  /** promotions cut over by those runs, and the last promote step's reason when one is held */
  cutovers: number;
  held: string | null;
  dayWrites: DayWrites;
  seconds: number;
  unfinished?: string;
  steps: MaintenanceStep[];
}

/** One phase of the online migration and what the app saw meanwhile. */
export interface MigrationPhase {
  name: "prepare" | "sync" | "backfill" | "validate" | "swap" | "rollback";
  seconds: number;
  /** app statements that overlapped the phase */
  appOps: number;
  /** the longest of them (ms) */
  appMaxMs: number;
  /** those that took more than a second */
  appOver1s: number;
}

export interface MigrationResult {
  status: "measured" | "failed" | "skipped";
  reason?: string;
  /** how the figures were taken, when it differs from the rest of the run */
  note?: string;
  table?: string;
  rows?: number;
  offline?: { seconds: number; rowsPerSecond: number; lockHeldMs: number; note: string } | { error: string };
  online?: {
    prepareSeconds: number;
    /** prepare_migration calls (transactions) until prepared */
    prepareCalls: number;
    /** leaves of the table's tree once prepared (DEFAULT leaves included) */
    treeLeaves: number;
    syncSeconds: number;
    backfillSeconds: number;
    backfillRowsPerSecond: number;
    batches: number;
    /** the longest call of migrate_to_partitioned (one batch each, with the driver's monitor query), seconds */
    slowestBatchSeconds: number;
    validateSeconds: number;
    swapLockMs: number;
    swapAttempts: number;
    totalSeconds: number;
    /** rollback_migration right after the swap, the app still writing: ACCESS EXCLUSIVE held (ms) and attempts (absent in older results) */
    rollbackLockMs?: number;
    rollbackAttempts?: number;
    rollbackError?: string;
  } | { error: string };
  app?: {
    sessions: number;
    baseline: { ops: number; p50: number; p99: number; max: number };
    during: { ops: number; p50: number; p99: number; max: number };
    swapWindow: { ops: number; max: number };
    /** per phase, the app statements overlapping it */
    phases: MigrationPhase[];
    /** the longest app statement overlapping any phase, from prepare to the last phase run (the rollback, when it ran) (ms) */
    maxWaitMs: number;
    errors: number;
    firstError?: string;
    retried: number;
  };
}

/** An id-only statement sent as PostgREST sends it: prepared once per connection, executed with other ids. */
export interface PreparedRun {
  table: TableKind;
  statement: "select" | "update";
  sql: string;
  timings: Summary;
  samples: number[];
  /** pg_prepared_statements of the session afterwards: how often PostgreSQL used a generic / custom plan */
  genericPlans: number;
  customPlans: number;
  /** relation locks the session holds after one execution inside an open transaction (pg_locks) */
  relationLocks: number;
  /** of those, the ones in the shared lock table (not fast-path): what lock_capacity() is spent on */
  sharedLockSlots: number;
  error?: string;
}

export interface PreparedResult {
  /** executions before the measured ones (PostgreSQL plans generically from the 6th on) */
  warmup: number;
  runs: PreparedRun[];
}

export type GoalStatus = "met" | "missed" | "not measured";

export interface GoalResult {
  id: string;
  goal: string;
  status: GoalStatus;
  measured: string;
  reason: string;
  /** judged on the median of repeated runs: how many, and in how many the goal was met */
  runs?: { n: number; met: number };
}

export interface BenchResult {
  version: 2;
  mode: "quick" | "full";
  startedAt: string;
  finishedAt: string;
  seconds: number;
  machine: MachineInfo;
  build: BuildInfo;
  queries: QueryClassResult[];
  roundTrip: RoundTrip | null;
  prepared: PreparedResult | null;
  inserts: InsertResult | null;
  maintenance: MaintenanceResult | null;
  planning: PlanningResult | null;
  migration: MigrationResult;
  /** how many times the measured sections ran on the same data (absent: one) */
  runs?: number;
  /** with several runs: each run's own verdicts, goal by goal */
  runGoals?: { id: string; status: GoalStatus }[][];
  /** with several runs: each run's measured sections, so that --render judges them again */
  measuredRuns?: Pick<BenchResult, "queries" | "roundTrip" | "prepared" | "inserts" | "maintenance" | "migration">[];
  /** the goals */
  goals: GoalResult[];
  /** the plan's "Performance Expectations" and "Success Criteria" */
  promises: GoalResult[];
  /** where the engine is slow, with this run's numbers */
  findings: string[];
  notes: string[];
}
