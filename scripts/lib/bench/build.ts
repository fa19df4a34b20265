// Builds the benchmark's three versions of the same petri observations in one database:
//   legacy       public.petri_observations_legacy_bench   the legacy table as shipped
//   indexed      public.petri_observations_indexed_bench  the same plus (program_id, site_id, created_at)
//   partitioned  public.petri_observations                the partitioned tree, swapped in as the live table
//
// The way a real project gets there: the data exists before the tree (the demo generator fills the
// legacy table with partition creation switched off), the run's tree shape (--tree) is set on the
// managed tables, and partition_mgmt.prepare_migration builds the tree plan_tree plans for the
// legacy table's data (sized: partitions where the rows fill a leaf; literal: every program, site
// and month), the legacy table's foreign keys and plain indexes, in as many calls (transactions)
// as its lock budget takes. Before that, pre_migration_check's 'lock budget' row says whether a
// statement without the partition keys fits the server's lock table on that tree; a literal tree
// gets its own cluster restarted with the max_locks_per_transaction the check asks for. The rows
// are copied as in the plan's Option B (one INSERT … SELECT per program) and the partitioned table
// takes the legacy table's name. The swap is simulated (renames + install_read_api) rather than
// swap_tables(), because swap_tables keeps <table>_old in sync with a reverse trigger, which would
// double every write we measure.
import postgres, { type Sql } from "postgres";
import { ensureCluster, type Cluster, stopCluster } from "../cluster.ts";
import { serverLimits } from "../compute-profiles.ts";
import { expectedCounts, generateDemoData } from "../demo-data.ts";
import { deployOntoDemoApp } from "../deploy.ts";
import { DEFAULT_BENCH_PORT, demoShape, type BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, summarize } from "./stats.ts";
import type { BuildInfo, BuildStep, LeafRows, LockSetting, SessionProbe, TreeInfo } from "./types.ts";
import { benchSession, inSession } from "./session.ts";

export const TABLES = {
  legacy: "public.petri_observations_legacy_bench",
  indexed: "public.petri_observations_indexed_bench",
  partitioned: "public.petri_observations",
} as const;

const LEGACY_NAME = "petri_observations_legacy_bench";
const INDEXED_NAME = "petri_observations_indexed_bench";
export const BENCH_DATABASE = "bench";

export interface BenchDatabase {
  url: string;
  label: string;
  cluster?: Cluster;
  /** own cluster only: restarts it with this max_locks_per_transaction (the compute profile otherwise unchanged) */
  setMaxLocks?: (n: number) => Promise<void>;
  /** stops the own cluster unless asked to keep it */
  close: () => Promise<void>;
}

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * The bench's own cluster (the Supabase compute profile of the environment, Micro by default, with
 * the hosted lock setting) with a freshly migrated `bench` database, or the --db-url database
 * after checks.
 */
/**
 * The bench's own cluster (.local/db/<name>): `bench` on the default port, `bench-<port>` on
 * another, so that a second bench on its own port (--port) never restarts or rebuilds a running
 * one's cluster.
 */
export function benchClusterName(port: number): string {
  return port === DEFAULT_BENCH_PORT ? "bench" : `bench-${port}`;
}

export async function openBenchDatabase(o: BenchOptions, p: Progress): Promise<BenchDatabase> {
  if (o.dbUrl) {
    await assertEmptyMigrated(o.dbUrl);
    return { url: o.dbUrl, label: `--db-url ${new URL(o.dbUrl).host}${new URL(o.dbUrl).pathname} (its server's settings as they are)`, close: async () => {} };
  }
  const limits = serverLimits();
  const name = benchClusterName(o.port);
  p.step(`cluster "${name}" on port ${o.port} (compute profile ${limits.profile.name}, max_locks_per_transaction ${limits.maxLocksPerTransaction})`);
  // a cluster left by a run of the other tree restarts with the profile's own setting
  const cluster = await ensureCluster({ name, port: o.port, limits });
  const admin = postgres(cluster.adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${BENCH_DATABASE} with (force)`);
    await admin.unsafe(`create database ${BENCH_DATABASE} owner postgres`);
    // Loading millions of rows checkpoints constantly with the 1 GB default; hosted projects run
    // with several GB. Durability stays on (fsync, synchronous_commit): the insert figures are
    // those of a real server.
    await admin.unsafe(`alter system set max_wal_size = '4GB'`);
    await admin.unsafe(`select pg_reload_conf()`);
  } finally {
    await admin.end();
  }
  p.update("the demo app, then the migrations pushed with the Supabase CLI, then the setup steps");
  const deployed = await deployOntoDemoApp(cluster.url(BENCH_DATABASE));
  p.done(`demo app (${deployed.app.length} files) and ${deployed.applied.length} migrations applied to database ${BENCH_DATABASE}`);
  return {
    url: cluster.url(BENCH_DATABASE),
    label: `own cluster ${cluster.dataDir} (port ${o.port}), database ${BENCH_DATABASE}, Supabase compute profile ${limits.profile.name}`,
    cluster,
    setMaxLocks: async (n) => {
      await ensureCluster({ name, port: o.port, limits: serverLimits({ ...process.env, SUPABASE_MAX_LOCKS_PER_TRANSACTION: String(n) }) });
    },
    close: async () => {
      if (!o.keepCluster) await stopCluster(cluster);
    },
  };
}

async function assertEmptyMigrated(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [r] = await sql<{ migrated: boolean; kind: string | null; bench: boolean }[]>`
      select to_regclass('partition_mgmt.managed_tables') is not null as migrated,
             (select relkind::text from pg_class where oid = to_regclass('public.petri_observations')) as kind,
             to_regclass(${TABLES.legacy}) is not null or to_regclass(${TABLES.indexed}) is not null as bench`;
    if (!r?.migrated) throw new Error(`${url}: the migrations are not applied (no partition_mgmt.managed_tables). Push them first, or omit --db-url to use the bench's own cluster.`);
    if (r.kind !== "r" || r.bench) throw new Error(`${url}: public.petri_observations is not the legacy table or a previous bench ran here. The bench needs an empty, freshly migrated database (it renames and creates tables); omit --db-url to use its own cluster.`);
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from (select 1 from public.petri_observations limit 1) x`;
    if ((n?.n ?? 0) > 0) throw new Error(`${url}: public.petri_observations already holds rows. The bench needs an empty, freshly migrated database; omit --db-url to use its own cluster.`);
  } finally {
    await sql.end();
  }
}

class Rollback extends Error {}

/** Runs `fn` in a transaction that is rolled back; returns its wall time in ms. */
async function rolledBack(sql: Sql, fn: (tx: Sql) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  try {
    await sql.begin(async (tx) => {
      await fn(tx as unknown as Sql);
      throw new Rollback();
    });
  } catch (e) {
    if (!(e instanceof Rollback)) throw e;
  }
  return performance.now() - t0;
}

/**
 * A session that has written into every leaf keeps a compiled copy of each row trigger and each
 * foreign-key check per leaf; every catalog change it later sees is then processed against all of
 * them. Compared here: a CREATE TABLE and a single-row insert (both rolled back) in the copy's
 * session and in a fresh one, plus the first insert into a leaf in the fresh session.
 */
async function probeSessions(copySql: Sql, url: string): Promise<SessionProbe> {
  const [t] = await copySql<{ site_id: string; program_id: string; submission_id: string }[]>`
    select s.site_id, s.program_id, (select b.submission_id from public.submissions b where b.site_id = s.site_id limit 1) as submission_id
    from public.sites s join public.pilot_programs p using (program_id)
    where p.end_date >= current_date and p.start_date <= current_date order by s.site_id limit 1`;
  if (!t) throw new Error("no running site for the session probe");
  const ddl = `create table public.bench_session_probe (like public.petri_observations including defaults including constraints)`;
  const ins = `insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
               values ('${t.submission_id}', '${t.site_id}', '${t.program_id}', 'probe', now())`;
  const measure = async (sql: Sql) => {
    const first = await rolledBack(sql, (tx) => tx.unsafe(ins));
    const d: number[] = [];
    const i: number[] = [];
    for (let k = 0; k < 7; k++) {
      d.push(await rolledBack(sql, (tx) => tx.unsafe(ddl)));
      i.push(await rolledBack(sql, (tx) => tx.unsafe(ins)));
    }
    return { ddlMs: summarize(d).median, insertMs: summarize(i).median, firstInsertMs: first };
  };
  const copySession = await measure(copySql);
  const fresh = benchSession(url, "bench-session-probe");
  try {
    const freshSession = await measure(fresh);
    return { copySession, freshSession };
  } finally {
    await fresh.end({ timeout: 5 });
  }
}

/** Calls `fn` every `ms` until the returned stop function is called (for progress polling). */
function poll(fn: () => Promise<void>, ms = 1000): () => Promise<void> {
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    if (stopped) return;
    running = fn().catch(() => {});
  }, ms);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}

interface CheckRow { table_key: string; check_name: string; status: string; detail: string }

/** The setting a 'lock budget' blocker names: where the minimum of keyless statements fits. */
function lockSettingNamed(row: CheckRow): number {
  const m = /max_locks_per_transaction=(\d+)/.exec(row.detail);
  if (!m) throw new Error(`pre_migration_check's 'lock budget' blocker of ${row.table_key} names no max_locks_per_transaction=N (the SQL API changed?): ${row.detail}`);
  return Number(m[1]);
}

/**
 * The server's lock table against the trees prepare_migration will build on the legacy data: the
 * 'lock budget' row of pre_migration_check() per managed table. A literal tree on the bench's own
 * cluster gets the max_locks_per_transaction its blocker names (the cluster restarts, as
 * `supabase postgres-config update` restarts the database); a sized tree, and any tree on
 * --db-url, runs on the server's setting, and a blocker there stops the run with its text.
 */
async function fitLockTable(db: BenchDatabase, o: BenchOptions, p: Progress): Promise<{ locks: LockSetting; precheck: CheckRow[] }> {
  const check = () => inSession(db.url, "bench-precheck", (sql) => sql<CheckRow[]>`select * from partition_mgmt.pre_migration_check()`, { long: true });
  const setting = () => inSession(db.url, "bench-precheck", async (sql) => {
    const [r] = await sql<{ locks: number; capacity: number }[]>`
      select current_setting('max_locks_per_transaction')::int as locks, partition_mgmt.lock_capacity()::float8 as capacity`;
    if (!r) throw new Error("no lock setting");
    return r;
  });
  const budgetRows = (rows: CheckRow[]) => {
    const b = rows.filter((r) => r.check_name === "lock budget");
    if (b.length === 0) throw new Error("pre_migration_check() returned no 'lock budget' row (the SQL API changed?)");
    return b;
  };
  let rows = await check();
  const before = await setting();
  const over = budgetRows(rows).filter((r) => r.status !== "ok");
  let source: LockSetting["source"] = "server";
  let reason = `the server's setting (${before.locks}): on every tree at least the minimum of statements without the partition keys fit in the lock table at once (pre-check 'lock budget' ok)`;
  if (over.length > 0) {
    const named = Math.max(...over.map(lockSettingNamed));
    const why = over.map((r) => `${r.table_key}: ${r.detail}`).join("; ");
    if (o.tree !== "literal") throw new Error(`the ${o.tree} tree does not fit the lock table at max_locks_per_transaction=${before.locks}: ${why}`);
    if (!db.setMaxLocks) {
      throw new Error(`--db-url: the server's max_locks_per_transaction (${before.locks}) is too small for the literal tree; start it with max_locks_per_transaction=${named} or more, or omit --db-url (the bench's own cluster is restarted with it). ${why}`);
    }
    p.update(`restarting the cluster with max_locks_per_transaction = ${named}`);
    await db.setMaxLocks(named);
    rows = await check();
    const still = budgetRows(rows).filter((r) => r.status !== "ok");
    if (still.length > 0) throw new Error(`still over the lock budget at max_locks_per_transaction=${named}: ${still.map((r) => r.detail).join("; ")}`);
    source = "raised";
    reason = `raised from ${before.locks} to ${named} (the cluster restarted): at ${before.locks} the pre-check's 'lock budget' is a blocker for the literal tree (${over.map((r) => r.table_key).join(", ")}), ` +
      `and ${named} is the setting it names, ceil(minimum × locks of one statement without the partition keys ÷ (lock capacity ÷ max_locks_per_transaction)): ` +
      `the least at which the minimum of such statements fit at once`;
  }
  const after = await setting();
  return {
    locks: {
      maxLocksPerTransaction: after.locks, lockCapacity: after.capacity, serverDefault: before.locks, source, reason,
      checks: budgetRows(rows).map((r) => ({ table: r.table_key, status: r.status, detail: r.detail })),
    },
    precheck: rows,
  };
}

/**
 * The tree as prepare_migration built it (still empty) against the lock table: lock_budget()
 * counts what its relations and indexes really are, which may be more than the pre-check planned
 * (a tree switched to literal keeps the shared-leaf indexes its root DEFAULT got while sized). A
 * literal tree over the budget gets the setting computed the same way as the pre-check's:
 * ceil(minimum x keyless_locks / (lock_capacity / max_locks_per_transaction)).
 */
async function fitBuiltTree(db: BenchDatabase, o: BenchOptions, p: Progress, locks: LockSetting): Promise<LockSetting> {
  const budget = () => inSession(db.url, "bench-lock-budget", async (sql) => {
    const [b] = await sql<{ keyless_locks: number; lock_capacity: number; minimum: number; status: string; locks: number }[]>`
      select keyless_locks::float8, lock_capacity::float8, minimum, status, current_setting('max_locks_per_transaction')::int as locks
      from partition_mgmt.lock_budget() where table_key = 'petri'`;
    if (!b) throw new Error("partition_mgmt.lock_budget() has no row for petri");
    return b;
  });
  const b = await budget();
  if (b.status === "ok") return locks;
  const n = Math.ceil((b.minimum * b.keyless_locks) / (b.lock_capacity / b.locks));
  const why = `the tree as built takes ${fmtInt(b.keyless_locks)} locks per statement without the partition keys, so only ${fmtInt(Math.floor(b.lock_capacity / b.keyless_locks))} fit at max_locks_per_transaction ${b.locks} (lock_budget() ${b.status})`;
  if (o.tree !== "literal" || !db.setMaxLocks) throw new Error(`the ${o.tree} tree is over the lock budget: ${why}${db.setMaxLocks ? "" : `; start the server with max_locks_per_transaction=${n} or omit --db-url`}`);
  p.update(`restarting the cluster with max_locks_per_transaction = ${n}`);
  await db.setMaxLocks(n);
  const after = await budget();
  if (after.status !== "ok") throw new Error(`still over the lock budget at max_locks_per_transaction=${n}: ${fmtInt(after.keyless_locks)} locks per statement, ${fmtInt(after.lock_capacity)} slots`);
  return {
    ...locks, maxLocksPerTransaction: n, lockCapacity: after.lock_capacity, source: "raised",
    reason: `${locks.reason}; then ${why}, so raised again to ${n}, ceil(${b.minimum} × ${fmtInt(b.keyless_locks)} ÷ (${fmtInt(b.lock_capacity)} ÷ ${b.locks})), before the copy`,
  };
}

function leafRows(ns: number[]): LeafRows {
  const s = summarize(ns);
  return { leaves: ns.length, min: s.min, median: s.median, max: s.max, empty: ns.filter((n) => n === 0).length };
}

/** The petri tree as built and filled: its leaves and their rows, its lock budget, the pre-check's words about it. */
async function describeTree(sql: Sql, precheck: CheckRow[]): Promise<TreeInfo> {
  const row = (name: string) => {
    const r = precheck.find((c) => c.table_key === "petri" && c.check_name === name);
    if (!r) throw new Error(`pre_migration_check() returned no '${name}' row for petri (the SQL API changed?)`);
    return r.detail;
  };
  const [m] = await sql<{ shape: TreeInfo["shape"]; target: number; relations: number; own_programs: number; own_sites: number; programs: number; sites: number; all_leaves: number }[]>`
    select m.tree_shape as shape, m.target_rows_per_leaf::float8 as target,
           (select count(*) from pg_partition_tree(m.parent))::int as relations,
           (select count(*) from partition_mgmt.partition_registry r where r.table_key = m.table_key and r.level = 'program' and not r.is_default)::int as own_programs,
           (select count(*) from partition_mgmt.partition_registry r where r.table_key = m.table_key and r.level = 'site' and not r.is_default)::int as own_sites,
           (select count(*) from public.pilot_programs)::int as programs,
           (select count(*) from public.sites)::int as sites,
           (select count(*) from partition_mgmt.partition_registry r where r.is_leaf)::int as all_leaves
    from partition_mgmt.managed_tables m where m.table_key = 'petri'`;
  if (!m) throw new Error("petri is not a managed table");
  // one scan of the whole tree, rows counted by the leaf they sit in (JIT would compile every leaf's scan)
  await sql`set jit = off`;
  const leaves = await sql<{ is_default: boolean; waiting: boolean; n: number }[]>`
    with counts as (select tableoid as leaf, count(*) as n from public.petri_observations group by 1)
    select r.is_default, partition_mgmt.is_waiting_room(m.tree_shape, r.level) as waiting, coalesce(c.n, 0)::float8 as n
    from partition_mgmt.partition_registry r join partition_mgmt.managed_tables m using (table_key)
    left join counts c on c.leaf = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))::oid
    where r.table_key = 'petri' and r.is_leaf`;
  await sql`reset jit`;
  const [b] = await sql<{ keyless_locks: number; keyless_at_once: number; lock_capacity: number; minimum: number; status: string }[]>`
    select keyless_locks::float8, keyless_at_once::float8, lock_capacity::float8, minimum, status from partition_mgmt.lock_budget() where table_key = 'petri'`;
  if (!b) throw new Error("partition_mgmt.lock_budget() has no row for petri");
  const sum = (xs: { n: number }[]) => xs.reduce((a, x) => a + x.n, 0);
  return {
    shape: m.shape,
    targetRowsPerLeaf: m.target,
    leaves: leaves.length,
    leavesWithoutDefaults: leaves.filter((l) => !l.is_default).length,
    defaults: leaves.filter((l) => l.is_default).length,
    relations: m.relations,
    programs: m.programs,
    sites: m.sites,
    ownPrograms: m.own_programs,
    ownSites: m.own_sites,
    rowsPerLeaf: leafRows(leaves.map((l) => l.n)),
    rowsPerLeafWithoutDefaults: leafRows(leaves.filter((l) => !l.is_default).map((l) => l.n)),
    rowsInDefaults: sum(leaves.filter((l) => l.is_default)),
    rowsWaiting: sum(leaves.filter((l) => l.is_default && l.waiting)),
    allTablesLeaves: m.all_leaves,
    lockBudget: { keylessLocks: b.keyless_locks, keylessAtOnce: b.keyless_at_once, lockCapacity: b.lock_capacity, minimum: b.minimum, status: b.status },
    precheck: { tree: row("partition tree"), lockBudget: row("lock budget"), indexesPerLeaf: row("indexes per leaf") },
  };
}

export async function buildData(db: BenchDatabase, o: BenchOptions, p: Progress): Promise<BuildInfo> {
  const steps: BuildStep[] = [];
  const timed = async <T>(name: string, fn: () => Promise<T>, detail: (r: T) => string = () => ""): Promise<T> => {
    p.step(name);
    const t0 = performance.now();
    const r = await fn();
    const seconds = (performance.now() - t0) / 1000;
    const d = detail(r);
    steps.push({ name, seconds, detail: d });
    p.done(d);
    return r;
  };
  const url = db.url;
  const demo = demoShape(o);
  const want = expectedCounts(demo);

  // 1. the legacy table, filled before any partition exists (as on a real project), and the
  //    tree shape prepare_migration will build
  const gen = await inSession(url, "bench-generate", async (sql) => {
    await sql`update partition_mgmt.managed_tables set tree_shape = ${o.tree}`;
    const creators = await sql<{ tbl: string; tgname: string }[]>`
      select tgrelid::regclass::text as tbl, tgname::text from pg_trigger
      where tgfoid = 'partition_mgmt.on_program_or_site_insert'::regproc and not tgisinternal`;
    for (const c of creators) await sql.unsafe(`alter table ${c.tbl} disable trigger ${c.tgname}`);
    const watcher = benchSession(url, "bench-watch");
    let phase = "";
    try {
      return await timed(`generate ${fmtInt(want.petri)} legacy petri rows (+ ${fmtInt(want.gasifier)} gasifier)`, async () => {
        const stop = poll(async () => {
          const [s] = await watcher<{ petri: number; gas: number }[]>`
            select pg_relation_size('public.petri_observations')::float8 as petri, pg_relation_size('public.gasifier_observations')::float8 as gas`;
          p.update(`${phase}; heap written: petri ${((s?.petri ?? 0) / 1024 ** 2).toFixed(0)} MB, gasifier ${((s?.gas ?? 0) / 1024 ** 2).toFixed(0)} MB`);
        });
        const t0 = performance.now();
        try {
          const r = await generateDemoData(sql, demo, (step) => { phase = step; p.update(step); });
          return { counts: r, seconds: (performance.now() - t0) / 1000 };
        } finally {
          await stop();
        }
      }, (r) => `${fmtInt(r.counts.petri)} petri, ${fmtInt(r.counts.gasifier)} gasifier, ${fmtInt(r.counts.submissions)} submissions; ` +
        `${fmtInt((r.counts.petri + r.counts.gasifier) / r.seconds)} rows/s`);
    } finally {
      await watcher.end();
      for (const c of creators) await sql.unsafe(`alter table ${c.tbl} enable trigger ${c.tgname}`);
    }
  }, { long: true });

  // 2. the lock table against the trees the data asks for (a literal tree may restart the own cluster)
  const { locks, precheck } = await timed(`pre-migration check: the ${o.tree} trees against the lock table`, () => fitLockTable(db, o, p),
    (r) => `max_locks_per_transaction ${r.locks.maxLocksPerTransaction} (${r.locks.source}), lock capacity ${fmtInt(r.locks.lockCapacity)}; ` +
      r.locks.checks.map((c) => `${c.table}: ${c.status}`).join(", "));

  // 3. the tree the product builds: prepare_migration, one transaction per call, until prepared
  const prepare = await inSession(url, "bench-prepare", (sql) =>
    timed(`prepare_migration('petri') until prepared (the ${o.tree} tree, foreign keys, indexes)`, async () => {
      const t0 = performance.now();
      let message = "";
      let calls = 0;
      for (;;) {
        calls++;
        const [r] = await sql<{ msg: string }[]>`select partition_mgmt.prepare_migration('petri') as msg`;
        message = r?.msg ?? "";
        const [ph] = await sql<{ phase: string; leaves: number }[]>`
          select partition_mgmt.migration_phase('petri') as phase,
                 (select count(*) from partition_mgmt.partition_registry where table_key = 'petri' and is_leaf)::int as leaves`;
        p.update(`call ${calls}: ${fmtInt(ph?.leaves)} leaves; ${message}`);
        if (ph?.phase === "prepared") {
          // back to idle: the copy below is ours, and no migration must look in progress
          await sql`select partition_mgmt.drop_migration_helpers('petri')`;
          return { calls, seconds: (performance.now() - t0) / 1000, leaves: ph.leaves, message };
        }
        if (ph?.phase !== "preparing") throw new Error(`prepare_migration('petri') left the phase ${ph?.phase}: ${message}`);
        if (calls >= 1000) throw new Error(`prepare_migration('petri') is still preparing after ${calls} calls: ${message}`);
      }
    }, (r) => `${r.calls} call(s), ${fmtInt(r.leaves)} leaves (DEFAULT leaves included) in ${r.seconds.toFixed(1)} s; then drop_migration_helpers (back to idle)`), { long: true });
  const fitted = await timed("the built tree against the lock table (lock_budget())", () => fitBuiltTree(db, o, p, locks),
    (l) => `max_locks_per_transaction ${l.maxLocksPerTransaction} (${l.source}), lock capacity ${fmtInt(l.lockCapacity)}`);

  // sessions opened after any restart
  const sql = benchSession(url, "bench-build", { long: true });
  const watcher = benchSession(url, "bench-watch");
  try {
    const [st] = await sql<{ t: string }[]>`select current_setting('statement_timeout') as t`;
    if (st?.t !== "0") throw new Error(`the build's session kept statement_timeout = ${st?.t}: its long statements would be cancelled`);
    // 4. offline copy (the plan's Option B), one program per statement for progress
    const [cols] = await sql<{ c: string }[]>`select partition_mgmt.column_list('public.petri_observations_partitioned'::regclass) as c`;
    const programs = await sql<{ program_id: string; n: number }[]>`
      select program_id, count(*)::int as n from public.petri_observations group by program_id order by program_id`;
    const totalRows = programs.reduce((a, r) => a + r.n, 0);
    // the copy runs in a session of its own, as an operator's would; afterwards the probe compares
    // that session (which has written into every leaf) with a fresh one
    const copySql = benchSession(url, "bench-copy", { long: true });
    let sessionProbe: SessionProbe | undefined;
    let copy: BuildInfo["offlineCopy"];
    try {
      copy = await timed(`offline copy into the partitioned table (INSERT … SELECT per program)`, async () => {
        const t0 = performance.now();
        let done = 0;
        for (const [i, prog] of programs.entries()) {
          await copySql.unsafe(`insert into public.petri_observations_partitioned (${cols?.c}) select ${cols?.c} from public.petri_observations where program_id = ${q(prog.program_id)} order by site_id, created_at`);
          done += prog.n;
          const secs = (performance.now() - t0) / 1000;
          p.update(`program ${i + 1}/${programs.length}, ${fmtInt(done)}/${fmtInt(totalRows)} rows, ${fmtInt(done / secs)} rows/s`);
        }
        const seconds = (performance.now() - t0) / 1000;
        return { rows: done, seconds, rowsPerSecond: done / seconds };
      }, (r) => `${fmtInt(r.rows)} rows, ${fmtInt(r.rowsPerSecond)} rows/s (with the company_id and key-table triggers, FKs and indexes)`);
      sessionProbe = await timed("session probe: the copy's session vs a fresh one", () => probeSessions(copySql, url),
        (r) => `CREATE TABLE ${r.copySession.ddlMs.toFixed(1)} ms vs ${r.freshSession.ddlMs.toFixed(1)} ms; insert ${r.copySession.insertMs.toFixed(2)} ms vs ${r.freshSession.insertMs.toFixed(2)} ms (first into a leaf: ${r.freshSession.firstInsertMs.toFixed(1)} ms)`);
    } finally {
      await copySql.end({ timeout: 5 });
    }

    // 5. the partitioned table becomes the live table
    const swap = "simulated: legacy renamed to petri_observations_legacy_bench, the partitioned table to petri_observations, " +
      "the app's triggers, policies and grants carried as the swap carries them (partition_mgmt.carry_dependents), " +
      "then partition_mgmt.install_read_api('petri') (the routed view and RPCs now read the partitioned table)";
    await timed("simulated swap", async () => {
      const carried = await sql.begin(async (tx) => {
        await tx.unsafe(`alter table public.petri_observations rename to ${LEGACY_NAME}`);
        await tx.unsafe(`alter table public.petri_observations_partitioned rename to petri_observations`);
        // the app's own triggers (e.g. the demo app's touch_updated_at) fire on the live table
        // after a real swap, so the partitioned table's updates are measured with them too
        const [c] = await tx<{ carried: string[] }[]>`
          select partition_mgmt.carry_dependents('petri', ${TABLES.legacy}::regclass, ${TABLES.partitioned}::regclass, '[]'::jsonb, true) as carried`;
        await tx`select partition_mgmt.install_read_api('petri')`;
        return c?.carried ?? [];
      });
      return carried;
    }, (carried) => `triggers carried: ${carried.length ? carried.join(", ") : "none"}`);

    // The daily metrics' statement triggers and the index they are recomputed through serve the
    // live table, now the partitioned one: the legacy reference stays the table as shipped (the
    // indexed copy below takes its triggers and indexes). The metrics are computed once, as the
    // setup step does on a populated table; maintenance then recomputes what the sections wrote.
    await timed("the daily metrics: the legacy reference without the live table's triggers and index; first computation", async () => {
      for (const t of ["metrics_changed_insert", "metrics_changed_update", "metrics_changed_delete"]) {
        await sql.unsafe(`drop trigger if exists ${t} on ${TABLES.legacy}`);
      }
      await sql.unsafe(`drop index if exists public.petri_observations_metrics_idx`);
      await sql`select analytics.rebuild_daily_metrics()`;
    });

    // 6. the indexed legacy table: what a user would try instead of partitioning
    const indexedCopy = await timed("indexed legacy copy (+ composite index on program_id, site_id, created_at)", async () => {
      const t0 = performance.now();
      await sql.unsafe(`create table ${TABLES.indexed} (like ${TABLES.legacy} including defaults including constraints including storage including comments)`);
      const stop = poll(async () => {
        const [s] = await watcher<{ b: number }[]>`select pg_relation_size(to_regclass(${TABLES.indexed}))::float8 as b`;
        p.update(`copy: ${((s?.b ?? 0) / 1024 ** 2).toFixed(0)} MB written`);
      });
      try {
        await sql.unsafe(`insert into ${TABLES.indexed} select * from ${TABLES.legacy}`);
      } finally {
        await stop();
      }
      p.update("primary key and the legacy table's indexes");
      await sql.unsafe(`alter table ${TABLES.indexed} add primary key (observation_id)`);
      const idx = await sql<{ name: string; def: string }[]>`
        select c.relname::text as name, pg_get_indexdef(i.indexrelid) as def from pg_index i join pg_class c on c.oid = i.indexrelid
        where i.indrelid = ${TABLES.legacy}::regclass and not i.indisprimary order by 1`;
      for (const x of idx) {
        await sql.unsafe(x.def.replace(/^CREATE (UNIQUE )?INDEX \S+ ON \S+ /, `CREATE $1INDEX ${INDEXED_NAME}_${x.name.replace(/^petri_observations_/, "")} ON ${TABLES.indexed} `));
      }
      p.update("composite index (program_id, site_id, created_at)");
      await sql.unsafe(`create index ${INDEXED_NAME}_keys_idx on ${TABLES.indexed} (program_id, site_id, created_at)`);
      // the same foreign keys (NOT VALID: enforced for new rows, no validation scan) and trigger as the legacy table
      const fks = await sql<{ name: string; def: string }[]>`
        select conname::text as name, pg_get_constraintdef(oid) as def from pg_constraint where conrelid = ${TABLES.legacy}::regclass and contype = 'f'`;
      for (const f of fks) await sql.unsafe(`alter table ${TABLES.indexed} add constraint ${f.name}_ix ${f.def} not valid`);
      const trg = await sql<{ def: string }[]>`
        select pg_get_triggerdef(oid) as def from pg_trigger where tgrelid = ${TABLES.legacy}::regclass and not tgisinternal`;
      for (const t of trg) await sql.unsafe(t.def.replace(/ ON (public\.)?petri_observations_legacy_bench /, ` ON ${TABLES.indexed} `));
      const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.petri_observations_indexed_bench`;
      return { rows: n?.n ?? 0, seconds: (performance.now() - t0) / 1000 };
    }, (r) => `${fmtInt(r.rows)} rows`);

    // 7. settled tables, as autovacuum leaves them: visibility map and statistics
    await timed("vacuum analyze the three tables", async () => {
      for (const t of [TABLES.legacy, TABLES.indexed, TABLES.partitioned]) {
        p.update(t);
        await sql.unsafe(`vacuum (analyze) ${t}`);
      }
      await sql.unsafe(`vacuum (analyze) partition_mgmt.observation_keys`);
    });

    // facts about what was built
    const [f] = await sql<{
      legacy: number; indexed: number; partitioned: number; gasifier: number; submissions: number;
      legacy_bytes: number; indexed_bytes: number; partitioned_bytes: number;
    }[]>`
      select (select count(*) from public.petri_observations_legacy_bench)::int as legacy,
             (select count(*) from public.petri_observations_indexed_bench)::int as indexed,
             (select count(*) from public.petri_observations)::int as partitioned,
             (select count(*) from public.gasifier_observations)::int as gasifier,
             (select count(*) from public.submissions)::int as submissions,
             pg_total_relation_size('public.petri_observations_legacy_bench')::float8 as legacy_bytes,
             pg_total_relation_size('public.petri_observations_indexed_bench')::float8 as indexed_bytes,
             (select sum(pg_total_relation_size(relid)) from pg_partition_tree('public.petri_observations'))::float8 as partitioned_bytes`;
    const tree = await timed("describe the tree (rows per leaf, lock budget)", () => describeTree(sql, precheck),
      (t) => `${t.shape}: ${fmtInt(t.leaves)} leaves (${fmtInt(t.defaults)} DEFAULT), rows per leaf ${fmtInt(t.rowsPerLeaf.min)}–${fmtInt(t.rowsPerLeaf.max)}; ` +
        `a statement without the keys takes ${fmtInt(t.lockBudget.keylessLocks)} locks, ${fmtInt(t.lockBudget.keylessAtOnce)} fit at once`);
    if (tree.rowsWaiting > 0) p.log(`warning: ${fmtInt(tree.rowsWaiting)} rows wait in DEFAULT partitions for a partition of their own`);
    return {
      steps,
      demo: {
        companies: demo.companies, programs: demo.companies * demo.programsPerCompany, sites: tree.sites, months: demo.months,
        petriPerSiteMonth: demo.petriPerSiteMonth, gasifierPerSiteMonth: demo.gasifierPerSiteMonth,
      },
      rows: { legacy: f?.legacy ?? 0, indexed: f?.indexed ?? 0, partitioned: f?.partitioned ?? 0, gasifier: f?.gasifier ?? 0, submissions: f?.submissions ?? 0 },
      sizes: { legacyBytes: f?.legacy_bytes ?? 0, indexedBytes: f?.indexed_bytes ?? 0, partitionedBytes: f?.partitioned_bytes ?? 0 },
      tree,
      locks: fitted,
      generator: { rows: gen.counts.petri + gen.counts.gasifier, seconds: gen.seconds, rowsPerSecond: (gen.counts.petri + gen.counts.gasifier) / gen.seconds },
      prepare,
      offlineCopy: copy,
      ...(sessionProbe ? { sessionProbe } : {}),
      indexedCopy,
      swap,
    };
  } finally {
    await watcher.end();
    await sql.end({ timeout: 5 });
  }
}
