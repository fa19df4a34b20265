// Planning time against leaf count. A separate, empty managed table (table_key 'bplan', registered
// like petri and gasifier, built by the same engine functions) grows program by program to each
// leaf count of the series; at each step EXPLAIN ANALYZE (timing off) of
//   - a fully keyed statement (program_id, site_id, one month): pruned at plan time to one leaf,
//   - an id-only statement (observation_id alone): every leaf is planned and probed,
// warm (the same connection, caches loaded) and cold (the first statement of a new connection, as
// after a pooler opens one). An id-only statement locks every partition and index; at a level
// where that is more than half the server's lock table (partition_mgmt.lock_capacity()) it is not
// run (it would fail with "out of shared memory" or starve the rest), and the level says so. The
// table is dropped afterwards.
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { TABLES } from "./build.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, summarize } from "./stats.ts";
import type { PlanningLevel, PlanningResult } from "./types.ts";
import { benchSession } from "./session.ts";

const KEY = "bplan";
const SOURCE = "bench_planning_source";
const PARENT = "bench_planning_partitioned";

interface Explained { "Planning Time": number; "Execution Time": number }

async function explain(sql: Sql, statement: string): Promise<Explained> {
  const [r] = await sql.unsafe<{ "QUERY PLAN": Explained[] }[]>(`explain (analyze, summary, timing off, format json) ${statement}`);
  const e = r?.["QUERY PLAN"]?.[0];
  if (!e) throw new Error(`no plan for ${statement}`);
  return e;
}

const monthStart = (m: number) => new Date(Date.UTC(2024, m, 1)).toISOString();

export async function dropPlanningTable(sql: Sql): Promise<void> {
  // one site (its periods) per transaction, then the programs: a program of several hundred
  // leaves dropped at once takes more locks than Micro's whole lock table has
  for (const level of ["site", "program"]) {
    const parts = await sql<{ name: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as name from partition_mgmt.partition_registry
      where table_key = ${KEY} and level = ${level} and not is_default`;
    for (const p of parts) await sql.unsafe(`drop table if exists ${p.name} cascade`);
  }
  await sql.unsafe(`drop table if exists public.${PARENT} cascade`);
  await sql`delete from partition_mgmt.managed_tables where table_key = ${KEY}`;
  await sql`delete from partition_mgmt.observation_keys where table_key = ${KEY}`;
  await sql.unsafe(`drop table if exists public.${SOURCE}`);
  await sql.unsafe(`drop function if exists partition_mgmt.${KEY}_maintain_keys()`);
  await sql.unsafe(`drop function if exists partition_mgmt.${KEY}_move_keys()`);
}

export async function runPlanning(url: string, o: BenchOptions, progress: Progress): Promise<PlanningResult> {
  const sql = benchSession(url, "bench-planning");
  try {
    return await planningSeries(sql, url, o, progress);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function planningSeries(sql: Sql, url: string, o: BenchOptions, progress: Progress): Promise<PlanningResult> {
  const { sites, months } = o.planningShape;
  const perProgram = sites * months;
  const keyedOf = (prog: string, site: string, m: number) =>
    `select * from public.${PARENT} where program_id = '${prog}' and site_id = '${site}' and created_at >= '${monthStart(m)}' and created_at < '${monthStart(m + 1)}'`;
  const idOnlyOf = (id: string) => `select * from public.${PARENT} where observation_id = '${id}'`;
  const result: PlanningResult = {
    table: `public.${PARENT} (managed table '${KEY}', empty)`,
    shape: `${sites} sites × ${months} months = ${perProgram} leaves per program; programs added until each leaf count is reached`,
    levels: [],
    keyedSql: keyedOf("<program>", "<site>", 0).replace(/'2024[^']*'/g, "'<month start>'"),
    idOnlySql: idOnlyOf("<id>"),
  };

  progress.step("planning series: register the empty managed table 'bplan'");
  await dropPlanningTable(sql);
  await sql.unsafe(`create table public.${SOURCE} (like ${TABLES.legacy} including defaults including constraints)`);
  await sql`insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix)
            values (${KEY}, ${SOURCE}, ${PARENT}, ${KEY})`;
  await sql`select partition_mgmt.create_partitioned_table(${KEY}, false)`;
  progress.done();

  const programs: { id: string; sites: string[] }[] = [];
  let leaves = 0;
  let createMs = 0;
  try {
    for (const target of [...o.planningLeaves].sort((a, b) => a - b)) {
      progress.step(`planning series: grow to ${fmtInt(target)} leaves`);
      const t0 = performance.now();
      const startLeaves = leaves;
      // partitions are made in a session of their own (as the insert trigger's or maintenance's)
      const creator = benchSession(url, "bench-planning-create");
      try {
      while (leaves < target) {
        const prog = { id: randomUUID(), sites: [] as string[] };
        programs.push(prog);
        for (let s = 0; s < sites; s++) {
          const site = randomUUID();
          prog.sites.push(site);
          await creator`select count(partition_mgmt.ensure_period_partition(${KEY}, ${prog.id}::uuid, ${site}::uuid, ts))
                    from generate_series(${monthStart(0)}::timestamptz, ${monthStart(months - 1)}::timestamptz, interval '1 month') ts`;
          leaves += months;
          const secs = (performance.now() - t0) / 1000;
          progress.update(`${fmtInt(leaves)}/${fmtInt(target)} leaves, ${((secs * 1000) / (leaves - startLeaves)).toFixed(1)} ms/leaf`);
        }
      }
      } finally {
        await creator.end({ timeout: 5 });
      }
      const levelMs = performance.now() - t0;
      createMs += levelMs;
      progress.done(`${fmtInt(leaves - startLeaves)} leaves in ${(levelMs / 1000).toFixed(0)} s`);

      progress.step(`planning series: measure at ${fmtInt(leaves)} leaves`);
      const [cap] = await sql<{ capacity: number }[]>`select partition_mgmt.lock_capacity()::float8 as capacity`;
      const capacity = cap?.capacity ?? Number.NaN;
      let keylessLocks = Number.NaN;
      let idOnlySkipped: string | undefined;
      try {
        const [lk] = await sql<{ locks: number }[]>`select partition_mgmt.keyless_statement_locks(${`public.${PARENT}`}::regclass)::float8 as locks`;
        keylessLocks = lk?.locks ?? Number.NaN;
        if (!(keylessLocks <= capacity / 2)) idOnlySkipped = `an id-only statement would take ${fmtInt(keylessLocks)} locks, more than half the lock table (${fmtInt(capacity)} slots)`;
      } catch (e) {
        // it walks the tree with pg_partition_tree, which locks every partition
        idOnlySkipped = `partition_mgmt.keyless_statement_locks itself failed (${(e as Error).message}): the tree is past the lock table (${fmtInt(capacity)} slots)`;
      }
      const idOnlyFits = idOnlySkipped === undefined;
      const mid = programs[Math.floor(programs.length / 2)]!;
      const keyed = (i: number) => keyedOf(mid.id, mid.sites[i % mid.sites.length]!, Math.floor(months / 2));
      const idOnly = () => idOnlyOf(randomUUID());
      const k = { planning: [] as number[], execution: [] as number[] };
      const d = { planning: [] as number[], execution: [] as number[] };
      // cold: the first statement of a brand-new connection (each kind its own connection)
      const cold = async (statement: string) => {
        const c = benchSession(url, "bench-planning-cold");
        try {
          return (await explain(c, statement))["Planning Time"];
        } finally {
          await c.end();
        }
      };
      const coldKeyed = await cold(keyed(0));
      const coldId = idOnlyFits ? await cold(idOnly()) : Number.NaN;
      const meter = benchSession(url, "bench-planning-measure");
      try {
        for (let w = 0; w < Math.max(2, o.warmup); w++) {
          await explain(meter, keyed(w));
          if (idOnlyFits) await explain(meter, idOnly());
        }
        const t1 = performance.now();
        for (let i = 0; i < o.reps.planning; i++) {
          const a = await explain(meter, keyed(i));
          k.planning.push(a["Planning Time"]);
          k.execution.push(a["Execution Time"]);
          if (idOnlyFits) {
            const b = await explain(meter, idOnly());
            d.planning.push(b["Planning Time"]);
            d.execution.push(b["Execution Time"]);
          }
          progress.update(`repetition ${i + 1}/${o.reps.planning}`);
          if (i >= 4 && performance.now() - t1 > 90_000) break;
        }
      } finally {
        await meter.end({ timeout: 5 });
      }
      const [defs] = await sql<{ n: number }[]>`
        select count(*)::int as n from partition_mgmt.partition_registry where table_key = ${KEY} and is_default`;
      const level: PlanningLevel = {
        leaves,
        defaults: defs?.n ?? 0,
        createSeconds: levelMs / 1000,
        msPerLeaf: levelMs / Math.max(1, leaves - startLeaves),
        keyed: { planning: summarize(k.planning), execution: summarize(k.execution), coldPlanningMs: coldKeyed },
        idOnly: idOnlyFits ? { planning: summarize(d.planning), execution: summarize(d.execution), coldPlanningMs: coldId } : null,
        ...(idOnlySkipped ? { idOnlySkipped } : {}),
        keylessLocks,
      };
      result.levels.push(level);
      progress.done(`keyed planning p50 ${level.keyed.planning.median.toFixed(3)} ms, ` +
        (level.idOnly ? `id-only planning p50 ${level.idOnly.planning.median.toFixed(1)} ms` : `id-only not run: ${level.idOnlySkipped}`));
    }
  } catch (e) {
    result.error = (e as Error).message;
    progress.log(`planning series failed: ${result.error}`);
  } finally {
    progress.step("planning series: drop the table");
    try {
      await dropPlanningTable(sql);
      progress.done(`${fmtInt(leaves)} leaves created in ${(createMs / 1000).toFixed(0)} s in all`);
    } catch (e) {
      // left behind, it changes nothing the migration section measures (gasifier); say so
      result.error = `${result.error ? `${result.error}; ` : ""}dropping the planning table failed: ${(e as Error).message}`;
      progress.done(`failed to drop the planning table: ${(e as Error).message}`);
    }
  }
  return result;
}
