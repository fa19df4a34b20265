// Insert throughput as the app writes: single-row INSERTs, each its own transaction, over one
// connection and over several, into the legacy table, the indexed legacy table and the live
// partitioned table (tuple routing, company_id trigger, key-table trigger, foreign keys).
// Measured with durable commits (what the app gets) and with synchronous_commit = off (the CPU
// cost alone, which a fast disk or group commit would expose). Then a profile of one insert per
// table from EXPLAIN ANALYZE: where the time goes, trigger by trigger.
import type { Sql } from "postgres";
import { TABLES } from "./build.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, summarize, type Summary } from "./stats.ts";
import type { InsertProfile, InsertResult, InsertRun, TableKind } from "./types.ts";
import { benchSession } from "./session.ts";

export interface Target { siteId: string; programId: string; submissionId: string }

const KINDS: TableKind[] = ["legacy", "indexed", "partitioned"];
const insertSql = (table: string) =>
  `insert into ${table} (submission_id, site_id, program_id, petri_code, growth_index, created_at) values ($1, $2, $3, $4, $5, now())`;

export async function targets(sql: Sql): Promise<Target[]> {
  // running programs only: their current month has a leaf (an ended program's would go to a DEFAULT)
  const rows = await sql<{ site_id: string; program_id: string; submission_id: string | null }[]>`
    select s.site_id, s.program_id,
           (select b.submission_id from public.submissions b where b.site_id = s.site_id order by b.created_at desc limit 1) as submission_id
    from public.sites s join public.pilot_programs p using (program_id)
    where p.end_date >= current_date and p.start_date <= current_date order by s.site_id`;
  const t = rows.filter((r) => r.submission_id).map((r) => ({ siteId: r.site_id, programId: r.program_id, submissionId: r.submission_id! }));
  if (t.length === 0) throw new Error("no site of a running program with a submission: nothing to insert for");
  return t;
}

/**
 * One timed window of single-row inserts over `conns` (already warmed up: each has written into
 * every target leaf once, as a long-lived app connection has).
 */
async function insertRun(conns: Sql[], kind: TableKind, commit: "durable" | "async", seconds: number, t: Target[]): Promise<InsertRun> {
  const latencies: number[] = [];
  let rows = 0;
  let errors = 0;
  let firstError: string | undefined;
  const text = insertSql(TABLES[kind]);
  for (const c of conns) await c.unsafe(`set synchronous_commit = ${commit === "async" ? "off" : "default"}`);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(conns.map(async (c, w) => {
    let i = w;
    while (performance.now() < deadline) {
      const x = t[i % t.length]!;
      i += conns.length;
      const s = performance.now();
      try {
        await c.unsafe(text, [x.submissionId, x.siteId, x.programId, `bench-${w}-${i}`, (i % 1000) / 10], { prepare: true });
        latencies.push(performance.now() - s);
        rows++;
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
        if (errors > 100) break;
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  return {
    table: kind, commit, connections: conns.length, rows, seconds: secs, rowsPerSecond: rows / secs, latency: summarize(latencies), errors,
    ...(firstError ? { firstError } : {}),
  };
}

/** Opens n connections and inserts once into every target through each; returns the warm-up cost. */
async function warmPool(url: string, kind: TableKind, n: number, t: Target[]): Promise<{ conns: Sql[]; firstTouch: Summary }> {
  const conns = Array.from({ length: n }, () => benchSession(url, `bench-insert-${kind}`));
  const text = insertSql(TABLES[kind]);
  const times: number[] = [];
  for (const c of conns) {
    for (const [i, x] of t.entries()) {
      const s = performance.now();
      await c.unsafe(text, [x.submissionId, x.siteId, x.programId, `bench-warm-${i}`, 1], { prepare: true });
      times.push(performance.now() - s);
    }
  }
  return { conns, firstTouch: summarize(times) };
}

class Rollback extends Error {}

interface ExplainJson {
  "Planning Time": number;
  "Execution Time": number;
  Triggers?: { "Trigger Name": string; Relation?: string; Time: number; Calls: number }[];
}

async function profileInsert(sql: Sql, kind: TableKind, table: string, label: string, x: Target, samples: number): Promise<InsertProfile> {
  let exec = 0;
  let plan = 0;
  const trig = new Map<string, number>();
  for (let i = 0; i < samples + 3; i++) {
    let out: ExplainJson | undefined;
    try {
      await sql.begin(async (tx) => {
        const [r] = await tx.unsafe<{ "QUERY PLAN": ExplainJson[] }[]>(
          `explain (analyze, summary, format json) insert into ${table} (submission_id, site_id, program_id, petri_code, growth_index, created_at)
           values ('${x.submissionId}', '${x.siteId}', '${x.programId}', 'bench-profile', 1, now())`);
        out = r?.["QUERY PLAN"]?.[0];
        throw new Rollback();
      });
    } catch (e) {
      if (!(e instanceof Rollback)) throw e;
    }
    if (!out || i < 3) continue; // the first ones warm the caches
    exec += out["Execution Time"];
    plan += out["Planning Time"];
    for (const tr of out.Triggers ?? []) {
      // foreign-key checks are internal triggers named RI_ConstraintTrigger_c_<oid>: one bucket
      const name = tr["Trigger Name"].startsWith("RI_ConstraintTrigger") ? "foreign-key checks (RI triggers)" : tr["Trigger Name"];
      trig.set(name, (trig.get(name) ?? 0) + tr.Time);
    }
  }
  const triggers = [...trig.entries()].map(([name, ms]) => ({ name, ms: ms / samples })).sort((a, b) => b.ms - a.ms);
  const executionMs = exec / samples;
  return {
    table: kind, label, samples, executionMs, planningMs: plan / samples, triggers,
    otherMs: executionMs - triggers.reduce((a, b) => a + b.ms, 0),
  };
}

/**
 * The copy's per-row cost: one INSERT … SELECT of a month of one site's rows (fresh ids, staged in a
 * temporary table), rolled back, into each table and straight into the leaf; trigger and execution
 * times per row.
 */
export async function profileCopy(sql: Sql, samples = 2000): Promise<InsertProfile[]> {
  const [c] = await sql<{ cols: string; site: string; lo: string; hi: string; leaf: string }[]>`
    select partition_mgmt.column_list('public.petri_observations'::regclass) as cols, r.site_id::text as site,
           r.range_start::text as lo, r.range_end::text as hi, format('%I.%I', r.partition_schema, r.partition_name) as leaf
    from partition_mgmt.partition_registry r join public.pilot_programs p using (program_id)
    where r.table_key = 'petri' and r.level = 'period' and not r.is_default and p.end_date >= current_date
      and r.range_end <= date_trunc('month', now()) order by r.range_start desc, r.site_id limit 1`;
  if (!c) return [];
  // the rows come from a temporary table, so the measured statement does not include finding them
  const select = c.cols.split(", ").map((col) => (col === "observation_id" ? "gen_random_uuid() as observation_id" : col)).join(", ");
  await sql.unsafe(`drop table if exists pg_temp.bench_copy_source`);
  await sql.unsafe(`create temporary table bench_copy_source as select ${select} from ${TABLES.legacy}
                    where site_id = '${c.site}' and created_at >= '${c.lo}' and created_at < '${c.hi}' limit ${samples}`);
  const from = `from pg_temp.bench_copy_source`;
  const out: InsertProfile[] = [];
  const targets: [TableKind, string, string][] = [
    ["legacy", TABLES.legacy, "legacy"], ["indexed", TABLES.indexed, "indexed"], ["partitioned", TABLES.partitioned, "partitioned"],
    ["partitioned", c.leaf, "partitioned, straight into the leaf (no routing)"],
  ];
  for (const [kind, table, label] of targets) {
    let e: ExplainJson | undefined;
    let rows = 0;
    // twice: the first run compiles the leaf's triggers and foreign-key checks in this session
    for (let round = 0; round < 2; round++) try {
      await sql.begin(async (tx) => {
        const [r] = await tx.unsafe<{ "QUERY PLAN": (ExplainJson & { Plan: { Plans?: { "Actual Rows": number }[] } })[] }[]>(
          `explain (analyze, summary, format json) insert into ${table} (${c.cols}) select ${c.cols} ${from}`);
        e = r?.["QUERY PLAN"]?.[0];
        rows = e ? (e as ExplainJson & { Plan: { Plans?: { "Actual Rows": number }[] } }).Plan.Plans?.[0]?.["Actual Rows"] ?? samples : samples;
        throw new Rollback();
      });
    } catch (err) {
      if (!(err instanceof Rollback)) throw err;
    }
    if (!e || rows === 0) continue;
    const trig = new Map<string, number>();
    for (const tr of e.Triggers ?? []) {
      const name = tr["Trigger Name"].startsWith("RI_ConstraintTrigger") ? "foreign-key checks (RI triggers)" : tr["Trigger Name"];
      trig.set(name, (trig.get(name) ?? 0) + tr.Time / rows);
    }
    const triggers = [...trig.entries()].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
    const executionMs = e["Execution Time"] / rows;
    out.push({ table: kind, label, samples: rows, executionMs, planningMs: e["Planning Time"], triggers, otherMs: executionMs - triggers.reduce((a, b) => a + b.ms, 0) });
  }
  await sql.unsafe(`drop table if exists pg_temp.bench_copy_source`);
  return out;
}

export async function runInserts(url: string, o: BenchOptions, progress: Progress): Promise<InsertResult> {
  const main = benchSession(url, "bench-inserts");
  const pools = new Map<TableKind, Sql[]>();
  try {
    const t = await targets(main);
    const maxConn = Math.max(...o.insertConnections);
    const firstTouch: InsertResult["firstTouch"] = [];
    for (const kind of KINDS) {
      progress.step(`insert warm-up: ${maxConn} connection(s) into ${kind}, one row per target site (${t.length} sites)`);
      const w = await warmPool(url, kind, maxConn, t);
      pools.set(kind, w.conns);
      firstTouch.push({ table: kind, inserts: w.firstTouch.n, meanMs: w.firstTouch.mean, p95Ms: w.firstTouch.p95 });
      progress.done(`first insert per site and connection: mean ${w.firstTouch.mean.toFixed(2)} ms`);
    }
    const runs: InsertRun[] = [];
    const configs: { commit: "durable" | "async"; connections: number }[] = [];
    for (const commit of ["durable", "async"] as const) for (const connections of o.insertConnections) configs.push({ commit, connections });
    let k = 0;
    for (const c of configs) {
      // rotate which table goes first, so none always runs right after another's checkpoint or vacuum
      const order = KINDS.map((_, i) => KINDS[(i + k) % KINDS.length]!);
      k++;
      for (const kind of order) {
        progress.step(`insert throughput: ${kind}, ${c.commit} commits, ${c.connections} connection(s), ${o.insertSeconds} s`);
        const r = await insertRun(pools.get(kind)!.slice(0, c.connections), kind, c.commit, o.insertSeconds, t);
        runs.push(r);
        progress.done(`${fmtInt(r.rowsPerSecond)} rows/s, p50 ${r.latency.median.toFixed(2)} ms${r.errors ? `, ${r.errors} errors: ${r.firstError}` : ""}`);
      }
    }
    progress.step("insert profile (EXPLAIN ANALYZE of single inserts, rolled back, in a fresh session)");
    const profile: InsertProfile[] = [];
    const samples = o.quick ? 10 : 40;
    const x = t[0]!;
    const [leaf] = await main<{ name: string }[]>`
      select format('%I.%I', partition_schema, partition_name) as name from partition_mgmt.partition_registry
      where table_key = 'petri' and level = 'period' and not is_default and site_id = ${x.siteId}
        and range_start <= now() and range_end > now()`;
    const prof = benchSession(url, "bench-insert-profile");
    let copyProfile: InsertProfile[] = [];
    try {
      for (const kind of KINDS) profile.push(await profileInsert(prof, kind, TABLES[kind], kind, x, samples));
      // the same row straight into its leaf: the difference to the parent is tuple routing
      if (leaf) profile.push(await profileInsert(prof, "partitioned", leaf.name, "partitioned, straight into the leaf (no routing)", x, samples));
      progress.done(profile.map((p) => `${p.label} ${p.executionMs.toFixed(3)} ms`).join(", "));
      progress.step("copy profile (EXPLAIN ANALYZE of INSERT … SELECT of one site-month, rolled back)");
      copyProfile = await profileCopy(prof, o.quick ? 200 : 2000);
      progress.done(copyProfile.map((p) => `${p.label} ${(p.executionMs * 1000).toFixed(0)} µs/row`).join(", "));
    } finally {
      await prof.end({ timeout: 5 });
    }
    const shares = configs.map((c) => {
      const l = runs.find((r) => r.table === "legacy" && r.commit === c.commit && r.connections === c.connections);
      const p = runs.find((r) => r.table === "partitioned" && r.commit === c.commit && r.connections === c.connections);
      return { commit: c.commit, connections: c.connections, share: l && p && l.rowsPerSecond > 0 ? p.rowsPerSecond / l.rowsPerSecond : Number.NaN };
    });
    return { runs, firstTouch, profile, copyProfile, shares };
  } finally {
    for (const conns of pools.values()) await Promise.all(conns.map((c) => c.end({ timeout: 5 })));
    await main.end({ timeout: 5 });
  }
}
