// The main job of `npm start` (and the core of scripts/bench-migration.ts): the plan run online on
// the demo data while a simulated app keeps writing — backup, check, prepare, sync, backfill with a
// progress bar, validate, swap — and the plan's query classes timed before and after.
import type { Sql } from "postgres";
import { percentile, startAppLoad, summarize, type AppLoadStats } from "./app-load.ts";
import { backupTables } from "./backup.ts";
import { migrateOnline, preMigrationCheck, progressBar } from "./migration-driver.ts";

export interface QueryTiming { name: string; ms: number; partitions: number | null }

export const DEMO_TARGET_ROWS_PER_LEAF = 2000;

/** The plan's query classes on petri_observations: median of 5 runs, and partitions read. */
export async function timeQueryClasses(sql: Sql): Promise<QueryTiming[]> {
  const [k] = await sql<{ program_id: string; site_id: string; submission_id: string; observation_id: string }[]>`
    select program_id, site_id, submission_id, observation_id from public.petri_observations order by observation_id limit 1`;
  if (!k) return [];
  const since = new Date(Date.now() - 30 * 86_400_000).toISOString();
  const classes: [string, string][] = [
    ["full table count", "select count(*) from public.petri_observations"],
    ["program filter", `select count(*), avg(growth_index) from public.petri_observations where program_id = '${k.program_id}'`],
    ["site filter", `select count(*), avg(growth_index) from public.petri_observations where program_id = '${k.program_id}' and site_id = '${k.site_id}'`],
    ["date range", `select count(*) from public.petri_observations where program_id = '${k.program_id}' and created_at >= '${since}'`],
    ["submission filter", `select * from public.petri_observations_by_submission where submission_id = '${k.submission_id}'`],
    ["by id (routed RPC)", `select public.get_observation_by_id('petri_observations', '${k.observation_id}')`],
  ];
  const out: QueryTiming[] = [];
  for (const [name, q] of classes) {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await sql.unsafe(q);
      runs.push(performance.now() - t);
    }
    const [p] = await sql<{ n: number | null }[]>`select partitions_scanned as n from partition_mgmt.explain_partitions(${q})`.catch(() => [{ n: null }]);
    out.push({ name, ms: percentile(runs, 50), partitions: p?.n ?? null });
  }
  return out;
}

export interface MainJobResult {
  before: QueryTiming[];
  after: QueryTiming[];
  load: AppLoadStats;
  tables: { table: string; batches: number; rowsPerSecond: number; swapLockMs: number; attempts: number }[];
  backup: string;
}

export async function runOnlineMigrationDemo(sql: Sql, dbUrl: string, log: (s: string) => void = console.log,
  o: { batchSize?: number; sessions?: number; thinkMs?: number } = {}): Promise<MainJobResult | null> {
  const [state] = await sql<{ kind: string }[]>`select relkind::text as kind from pg_class where oid = 'public.petri_observations'::regclass`;
  if (state?.kind === "p") {
    log("    already migrated: public.petri_observations is partitioned (npm run stop, delete .local/db/dev to start over)");
    return null;
  }
  // The demo holds a few thousand rows per program: at the default target (100,000 rows per leaf)
  // everything would share one leaf. A target to the demo's scale gives it the tree the full-scale
  // bench gets: every program fills leaves of its own, its sites share them. (At 1,000 the sites
  // would get periods of their own too, and the pre-check refuses that tree on Micro.)
  const [{ target } = { target: 0 }] = await sql<{ target: number }[]>`
    update partition_mgmt.managed_tables set target_rows_per_leaf = ${DEMO_TARGET_ROWS_PER_LEAF}
    where tree_shape = 'sized' returning target_rows_per_leaf::int as target`;
  if (target) log(`    target_rows_per_leaf = ${target} for the demo's scale (default: 100000)`);
  const backup = await backupTables(dbUrl);
  log(`    backup: ${backup}`);
  for (const c of await preMigrationCheck(sql)) if (c.status !== "ok") log(`    check ${c.table_key} ${c.check_name}: ${c.status}: ${c.detail}`);
  const before = await timeQueryClasses(sql);

  const load = startAppLoad({ url: dbUrl, table: "petri_observations", sessions: o.sessions ?? 4, thinkMs: o.thinkMs ?? 2 });
  const tables: MainJobResult["tables"] = [];
  try {
    for (const table of ["petri_observations", "gasifier_observations"]) {
      let last = "";
      const res = await migrateOnline(sql, table, {
        batchSize: o.batchSize ?? 2000, swap: true,
        onProgress: (m) => {
          last = `    ${table.padEnd(22)} ${progressBar(m)}`;
          if (process.stdout.isTTY) process.stdout.write(`\r${last}`);
        },
      });
      if (process.stdout.isTTY) process.stdout.write("\n"); else log(last);
      const rps = Math.round(res.rowsScanned / Math.max(res.backfillSeconds, 0.001));
      log(`    ${table}: validated (${res.validation.map((v) => `${v.check_name} ${v.status}`).join(", ")}); swapped after ` +
        `${res.swap?.attempts} attempt(s), ACCESS EXCLUSIVE held ${res.swap?.lockHeldMs} ms`);
      tables.push({ table, batches: res.batches, rowsPerSecond: rps, swapLockMs: res.swap?.lockHeldMs ?? 0, attempts: res.swap?.attempts ?? 0 });
    }
  } finally {
    await load.stop();
  }
  log(`    simulated app during the migration: ${summarize(load.stats)}`);
  for (const t of await sql<{ table_key: string; leaves: number; programs: number; sites: number; rows_per_leaf: number; keyless_locks: number; at_once: number }[]>`
      select table_key, leaves::int, programs_with_partitions::int as programs, sites_with_partitions::int as sites,
             avg_rows_per_leaf::int as rows_per_leaf, keyless_locks::int, keyless_at_once::int as at_once
      from partition_mgmt.v_tree_summary order by table_key`) {
    log(`    ${t.table_key} tree: ${t.leaves} leaves (${t.programs} programs and ${t.sites} sites with partitions of their own, ` +
      `about ${t.rows_per_leaf} rows per leaf); a statement without the keys takes ${t.keyless_locks} locks, ${t.at_once} fit in this server's lock table at once`);
  }
  const after = await timeQueryClasses(sql);
  log("");
  log(`    ${"query class".padEnd(22)} ${"before ms".padStart(10)} ${"after ms".padStart(10)}  partitions read after`);
  for (const b of before) {
    const a = after.find((x) => x.name === b.name);
    log(`    ${b.name.padEnd(22)} ${b.ms.toFixed(2).padStart(10)} ${(a?.ms ?? NaN).toFixed(2).padStart(10)}  ${a?.partitions ?? "-"}`);
  }
  log("    (medians of 5 runs on the demo data; rollback: npm run admin -- rollback --table petri; finalize: npm run admin -- finalize --table petri)");
  return { before, after, load: load.stats, tables, backup };
}
