// Builds the benchmark's three versions of the same petri observations in one database:
//   legacy       public.petri_observations_legacy_bench   the legacy table as shipped
//   indexed      public.petri_observations_indexed_bench  the same plus (program_id, site_id, created_at)
//   partitioned  public.petri_observations                the partitioned tree, swapped in as the live table
//
// The way a real project gets there: the data exists before the tree (the demo generator fills the
// legacy table with partition creation switched off), the tree is built with the plan's Phase 2
// (precreate_program_partitions, here site by site for progress), partition_mgmt.prepare_migration
// adds what the migration adds (partitions for every month present in the data, the legacy
// table's foreign keys and plain indexes), the rows are copied as in the plan's Option B (one
// INSERT … SELECT per program) and the partitioned table takes the legacy table's name. The swap
// is simulated (renames + install_read_api) rather than swap_tables(), because swap_tables keeps
// <table>_old in sync with a reverse trigger, which would double every write we measure.
import postgres, { type Sql } from "postgres";
import { ensureCluster, type Cluster, stopCluster } from "../cluster.ts";
import { expectedCounts, generateDemoData } from "../demo-data.ts";
import { pushMigrations } from "../migrations.ts";
import { demoShape, type BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt } from "./stats.ts";
import { summarize } from "./stats.ts";
import type { BuildInfo, BuildStep, SessionProbe } from "./types.ts";
import { benchSession } from "./session.ts";

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
  /** stops the own cluster unless asked to keep it */
  close: () => void;
}

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The bench's own cluster with a freshly migrated `bench` database, or the --db-url database after checks. */
export async function openBenchDatabase(o: BenchOptions, p: Progress): Promise<BenchDatabase> {
  if (o.dbUrl) {
    await assertEmptyMigrated(o.dbUrl);
    return { url: o.dbUrl, label: `--db-url ${new URL(o.dbUrl).host}${new URL(o.dbUrl).pathname}`, close: () => {} };
  }
  p.step(`cluster "bench" on port ${o.port}`);
  const cluster = ensureCluster({ name: "bench", port: o.port });
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
  p.update("pushing migrations with the Supabase CLI");
  const pushed = pushMigrations(cluster.url(BENCH_DATABASE));
  p.done(`${pushed.applied.length} migrations applied to database ${BENCH_DATABASE}`);
  return {
    url: cluster.url(BENCH_DATABASE),
    label: `own cluster ${cluster.dataDir} (port ${o.port}), database ${BENCH_DATABASE}`,
    cluster,
    close: () => {
      if (!o.keepCluster) stopCluster(cluster);
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

export async function buildData(sql: Sql, url: string, o: BenchOptions, p: Progress): Promise<BuildInfo> {
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
  const watcher = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const demo = demoShape(o);
    const want = expectedCounts(demo);

    // 1. the legacy table, filled before any partition exists (as on a real project)
    const creators = await sql<{ tbl: string; tgname: string }[]>`
      select tgrelid::regclass::text as tbl, tgname::text from pg_trigger
      where tgfoid = 'partition_mgmt.on_program_or_site_insert'::regproc and not tgisinternal`;
    for (const c of creators) await sql.unsafe(`alter table ${c.tbl} disable trigger ${c.tgname}`);
    let phase = "";
    const gen = await timed(`generate ${fmtInt(want.petri)} legacy petri rows (+ ${fmtInt(want.gasifier)} gasifier)`, async () => {
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
    for (const c of creators) await sql.unsafe(`alter table ${c.tbl} enable trigger ${c.tgname}`);

    // 2. the tree: the plan's Phase 2, one site at a time (both managed tables, as in production)
    const sites = await sql<{ program_id: string; site_id: string }[]>`
      select s.program_id, s.site_id from public.sites s join public.pilot_programs p using (program_id)
      order by p.start_date, p.program_id, s.site_id`;
    const leafCount = async () => {
      const [r] = await sql<{ all: number; petri: number }[]>`
        select count(*) filter (where is_leaf and not is_default)::int as all,
               count(*) filter (where is_leaf and not is_default and table_key = 'petri')::int as petri
        from partition_mgmt.partition_registry`;
      return r ?? { all: 0, petri: 0 };
    };
    const before = await leafCount();
    const creation = await timed("create partitions (precreate_program_partitions per site, petri + gasifier)", async () => {
      const t0 = performance.now();
      let i = 0;
      for (const s of sites) {
        await sql`select partition_mgmt.precreate_program_partitions(${s.program_id}::uuid, null, ${s.site_id}::uuid)`;
        i++;
        if (i % 5 === 0 || i === sites.length) {
          const n = await leafCount();
          const made = n.all - before.all;
          p.update(`site ${i}/${sites.length}, ${fmtInt(made)} leaves, ${((performance.now() - t0) / Math.max(1, made)).toFixed(1)} ms/leaf`);
        }
      }
      const n = await leafCount();
      const seconds = (performance.now() - t0) / 1000;
      return { leaves: n.all - before.all, seconds, msPerLeaf: (seconds * 1000) / Math.max(1, n.all - before.all) };
    }, (r) => `${fmtInt(r.leaves)} leaves in ${r.seconds.toFixed(0)} s, ${r.msPerLeaf.toFixed(1)} ms per leaf (site partitions and DEFAULTs included)`);

    // 3. what the migration's prepare adds: partitions for the months in the data, foreign keys, indexes
    const [has] = await sql<{ prepare: boolean; helpers: boolean }[]>`
      select to_regprocedure('partition_mgmt.prepare_migration(text,text)') is not null as prepare,
             to_regprocedure('partition_mgmt.drop_migration_helpers(text)') is not null as helpers`;
    let prepare: string;
    if (has?.prepare) {
      prepare = await timed("prepare (partition_mgmt.prepare_migration: data months, foreign keys, indexes)", async () => {
        const [r] = await sql<{ msg: string }[]>`select partition_mgmt.prepare_migration('petri') as msg`;
        // back to idle: the copy below is ours, and no migration must look in progress
        if (has.helpers) await sql`select partition_mgmt.drop_migration_helpers('petri')`;
        else await sql`delete from partition_mgmt.migration_state where table_key = 'petri'`;
        return `partition_mgmt.prepare_migration('petri'): ${r?.msg ?? ""}; then drop_migration_helpers (back to idle)`;
      }, () => "foreign keys and plain indexes of the legacy table added to the partitioned table");
    } else {
      prepare = "partition_mgmt.prepare_migration not found: the partitioned table lacks the legacy table's foreign keys and company_id index (the insert comparison favours it)";
      p.log(`warning: ${prepare}`);
    }

    // 4. offline copy (the plan's Option B), one program per statement for progress
    const [cols] = await sql<{ c: string }[]>`select partition_mgmt.column_list('public.petri_observations_partitioned'::regclass) as c`;
    const programs = await sql<{ program_id: string; n: number }[]>`
      select program_id, count(*)::int as n from public.petri_observations group by program_id order by program_id`;
    const totalRows = programs.reduce((a, r) => a + r.n, 0);
    // the copy runs in a session of its own, as an operator's would; afterwards the probe compares
    // that session (which has written into every leaf) with a fresh one
    const copySql = benchSession(url, "bench-copy");
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
      "then partition_mgmt.install_read_api('petri') (the routed view and RPCs now read the partitioned table)";
    await timed("simulated swap", async () => {
      await sql.begin(async (tx) => {
        await tx.unsafe(`alter table public.petri_observations rename to ${LEGACY_NAME}`);
        await tx.unsafe(`alter table public.petri_observations_partitioned rename to petri_observations`);
        await tx`select partition_mgmt.install_read_api('petri')`;
      });
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
      leaves: number; defaults: number; programs: number; sites: number;
    }[]>`
      select (select count(*) from public.petri_observations_legacy_bench)::int as legacy,
             (select count(*) from public.petri_observations_indexed_bench)::int as indexed,
             (select count(*) from public.petri_observations)::int as partitioned,
             (select count(*) from public.gasifier_observations)::int as gasifier,
             (select count(*) from public.submissions)::int as submissions,
             pg_total_relation_size('public.petri_observations_legacy_bench')::float8 as legacy_bytes,
             pg_total_relation_size('public.petri_observations_indexed_bench')::float8 as indexed_bytes,
             (select sum(pg_total_relation_size(relid)) from pg_partition_tree('public.petri_observations'))::float8 as partitioned_bytes,
             (select count(*) from partition_mgmt.partition_registry where table_key = 'petri' and is_leaf and not is_default)::int as leaves,
             (select count(*) from partition_mgmt.partition_registry where table_key = 'petri' and is_default)::int as defaults,
             (select count(*) from public.pilot_programs)::int as programs,
             (select count(*) from public.sites)::int as sites`;
    const defaults = await sql<{ name: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as name from partition_mgmt.partition_registry where table_key = 'petri' and is_default`;
    let rowsInDefaults = 0;
    for (let i = 0; i < defaults.length; i += 200) {
      const part = defaults.slice(i, i + 200).map((d) => `select count(*) as n from ${d.name}`).join(" union all ");
      const [r] = await sql.unsafe<{ n: string }[]>(`select coalesce(sum(n), 0)::text as n from (${part}) x`);
      rowsInDefaults += Number(r?.n ?? 0);
    }
    if (rowsInDefaults > 0) p.log(`warning: ${rowsInDefaults} rows sit in DEFAULT partitions (months without a leaf)`);
    const all = await leafCount();
    return {
      steps,
      demo: {
        companies: demo.companies, programs: demo.companies * demo.programsPerCompany, sites: f?.sites ?? 0, months: demo.months,
        petriPerSiteMonth: demo.petriPerSiteMonth, gasifierPerSiteMonth: demo.gasifierPerSiteMonth,
      },
      rows: { legacy: f?.legacy ?? 0, indexed: f?.indexed ?? 0, partitioned: f?.partitioned ?? 0, gasifier: f?.gasifier ?? 0, submissions: f?.submissions ?? 0 },
      sizes: { legacyBytes: f?.legacy_bytes ?? 0, indexedBytes: f?.indexed_bytes ?? 0, partitionedBytes: f?.partitioned_bytes ?? 0 },
      tree: { leaves: f?.leaves ?? 0, defaults: f?.defaults ?? 0, programs: f?.programs ?? 0, sites: f?.sites ?? 0, rowsInDefaults, allTablesLeaves: all.all },
      generator: { rows: gen.counts.petri + gen.counts.gasifier, seconds: gen.seconds, rowsPerSecond: (gen.counts.petri + gen.counts.gasifier) / gen.seconds },
      partitionCreation: creation,
      offlineCopy: copy,
      ...(sessionProbe ? { sessionProbe } : {}),
      indexedCopy,
      swap,
      prepare,
    };
  } finally {
    await watcher.end();
  }
}
