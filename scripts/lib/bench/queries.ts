// The query classes: the whole-table statements (count(*), the full scan), the plan's scans
// (program, site, date range, the plan's example aggregate) and what the app does every day (its
// paginated read, the submission lookup, fetch and update by observation_id through the routed
// view and RPCs), each written against the three tables with the keys as literals.
//
// Every statement is sent unprepared (simple protocol), so each execution is planned afresh, as a
// literal-key statement is: planning cost, the price of many partitions, is part of every figure.
// Variants of one class run interleaved (rep 1 of each, rep 2 of each, …, in rotating order), so
// noise from the other processes on the machine hits all of them alike.
import type { Sql } from "postgres";
import { TABLES } from "./build.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { speedup, summarize, type Summary } from "./stats.ts";
import type { QueryClassResult, RoundTrip, TableKind, VariantResult } from "./types.ts";
import { benchSession } from "./session.ts";

export interface QueryParams {
  programId: string;
  siteId: string;
  rangeStart: string;
  rangeEnd: string;
  aggregateFrom: string;
  submissions: { id: string; programId: string; siteId: string }[];
  observations: { id: string; programId: string; siteId: string; createdAt: string }[];
}

interface VariantDef {
  id: string;
  label: string;
  table: TableKind;
  role: VariantResult["role"];
  sql: (rep: number) => string;
  /** a plain statement whose plan EXPLAIN can show (not an RPC doing its work inside) */
  explain: boolean;
}

export interface ClassDef {
  id: string;
  title: string;
  what: string;
  promise: string;
  kind: "scan" | "query" | "byId";
  variants: VariantDef[];
}

export const QUERY_CLASS_IDS = [
  "count_all", "full_scan", "program_filter", "program_page", "site_filter", "date_range", "plan_aggregate",
  "submission_lookup", "fetch_by_id", "update_by_id",
] as const;

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

export async function pickParams(sql: Sql): Promise<QueryParams> {
  const [prog] = await sql<{ program_id: string }[]>`
    select program_id from public.pilot_programs where status = 'active' order by name limit 1`;
  if (!prog) throw new Error("no active program in the bench data");
  const [site] = await sql<{ site_id: string }[]>`
    select site_id from public.sites where program_id = ${prog.program_id} order by name limit 1`;
  const [m] = await sql<{ range_start: string; range_end: string; agg_from: string }[]>`
    with m0 as (select date_trunc('month', now() at time zone 'UTC') as m)
    select to_char(m - interval '3 months', 'YYYY-MM-DD"T"00:00:00"Z"') as range_start,
           to_char(m - interval '2 months', 'YYYY-MM-DD"T"00:00:00"Z"') as range_end,
           to_char(m - interval '3 months', 'YYYY-MM-DD"T"00:00:00"Z"') as agg_from from m0`;
  const subs = await sql<{ submission_id: string; program_id: string; site_id: string }[]>`
    select submission_id, program_id, site_id from public.submissions order by md5(submission_id::text || 'bench') limit 300`;
  const [n] = await sql<{ n: number }[]>`select greatest(reltuples, 1)::float8 as n from pg_class where oid = ${TABLES.legacy}::regclass`;
  const pct = Math.min(100, (2000 / (n?.n ?? 1)) * 100);
  const obs = await sql.unsafe<{ observation_id: string; program_id: string; site_id: string; created_at: string }[]>(
    `select observation_id, program_id, site_id, created_at::text as created_at
     from ${TABLES.legacy} tablesample bernoulli (${pct}) order by md5(observation_id::text) limit 600`);
  if (obs.length < 10 || subs.length < 10) throw new Error("too little data to sample ids from");
  return {
    programId: prog.program_id,
    siteId: site?.site_id ?? "",
    rangeStart: m?.range_start ?? "",
    rangeEnd: m?.range_end ?? "",
    aggregateFrom: m?.agg_from ?? "",
    submissions: subs.map((s) => ({ id: s.submission_id, programId: s.program_id, siteId: s.site_id })),
    observations: obs.map((r) => ({ id: r.observation_id, programId: r.program_id, siteId: r.site_id, createdAt: r.created_at })),
  };
}

/** The plan's scans: each at least 1.5x faster than the indexed legacy table (goals.ts), none slower. */
export const SCAN_CLASS_IDS = ["program_filter", "program_page", "site_filter", "date_range", "plan_aggregate"] as const;
/** Routed point access: within 1.5x of the indexed legacy table. */
export const POINT_CLASS_IDS = ["fetch_by_id", "submission_lookup", "update_by_id"] as const;
/** Statements over the whole table: within 1.5x of the legacy table. */
export const WHOLE_TABLE_CLASS_IDS = ["count_all", "full_scan"] as const;

/** The same statement on legacy, indexed legacy and partitioned. */
function onAllThree(sqlFor: (table: string, rep: number) => string): VariantDef[] {
  return [
    { id: "legacy", label: "legacy as shipped", table: "legacy", role: "baseline", sql: (r) => sqlFor(TABLES.legacy, r), explain: true },
    { id: "indexed", label: "legacy + composite index", table: "indexed", role: "baseline", sql: (r) => sqlFor(TABLES.indexed, r), explain: true },
    { id: "partitioned", label: "partitioned", table: "partitioned", role: "candidate", sql: (r) => sqlFor(TABLES.partitioned, r), explain: true },
  ];
}

export function queryClasses(p: QueryParams): ClassDef[] {
  const P = lit(p.programId);
  const S = lit(p.siteId);
  const subOf = (r: number) => p.submissions[r % p.submissions.length] ?? p.submissions[0]!;
  const sub = (r: number) => lit(subOf(r).id);
  const ob = (r: number) => p.observations[r % p.observations.length] ?? p.observations[0]!;
  const growth = (r: number) => ((r * 37) % 1000) / 10;
  return [
    {
      id: "count_all", title: "Count of the whole table", kind: "scan",
      what: "select count(*) over the whole table (what a dashboard total or PostgREST's count=exact sends)",
      promise: "(whole table; not in the plan)",
      variants: [
        ...onAllThree((t) => `select count(*) from ${t}`),
        { id: "partitioned_nojit", label: "partitioned, JIT off for the statement", table: "partitioned", role: "extra", explain: false,
          sql: () => `set jit = off; select count(*) from ${TABLES.partitioned}; reset jit` },
      ],
    },
    {
      id: "full_scan", title: "Full table scan", kind: "scan",
      what: "count(*), avg(growth_index) over the whole table",
      promise: "before 5–30 s; after: still slow (by design)",
      variants: [
        ...onAllThree((t) => `select count(*), avg(growth_index) from ${t}`),
        // with thousands of leaves the plan has thousands of scan nodes, and JIT compiles each
        { id: "partitioned_nojit", label: "partitioned, JIT off for the statement", table: "partitioned", role: "extra", explain: false,
          sql: () => `set jit = off; select count(*), avg(growth_index) from ${TABLES.partitioned}; reset jit` },
      ],
    },
    {
      id: "program_filter", title: "Program filter", kind: "query",
      what: "count(*), avg(growth_index) of one program",
      promise: "50–200 ms; program_id queries 50×+ faster",
      variants: onAllThree((t) => `select count(*), avg(growth_index) from ${t} where program_id = ${P}`),
    },
    {
      id: "program_page", title: "Program page (the read API's default request)", kind: "query",
      what: "newest 100 rows of one program (get_observations_optimized without optional filters)",
      promise: "program_id queries 50×+ faster",
      variants: onAllThree((t) => `select * from ${t} where program_id = ${P} order by created_at desc, observation_id desc limit 100`),
    },
    {
      id: "site_filter", title: "Site filter", kind: "query",
      what: "count(*), avg(growth_index) of one site (program_id and site_id given)",
      promise: "20–100 ms; site-specific queries 100×+ faster",
      variants: onAllThree((t) => `select count(*), avg(growth_index) from ${t} where program_id = ${P} and site_id = ${S}`),
    },
    {
      id: "date_range", title: "Date range", kind: "query",
      what: "count(*), avg(growth_index) of one program over one month",
      promise: "100–500 ms",
      variants: onAllThree((t) => `select count(*), avg(growth_index) from ${t} where program_id = ${P} and created_at >= ${lit(p.rangeStart)} and created_at < ${lit(p.rangeEnd)}`),
    },
    {
      id: "plan_aggregate", title: "Plan's example aggregate", kind: "query",
      what: "the plan's \"10 s → 100 ms\" query: count(*), avg(growth_index) for a program, a site and created_at >= a date (3 months back)",
      promise: "10 s → 100 ms",
      variants: onAllThree((t) => `select count(*), avg(growth_index) from ${t} where program_id = ${P} and site_id = ${S} and created_at >= ${lit(p.aggregateFrom)}`),
    },
    {
      id: "submission_lookup", title: "Submission lookup", kind: "byId",
      what: "all rows of one submission (a different submission each repetition)",
      promise: "5–20 ms (\"instant, 5 ms\")",
      variants: [
        { id: "legacy", label: "legacy as shipped", table: "legacy", role: "baseline", explain: true, sql: (r) => `select * from ${TABLES.legacy} where submission_id = ${sub(r)}` },
        { id: "indexed", label: "legacy + composite index", table: "indexed", role: "baseline", explain: true, sql: (r) => `select * from ${TABLES.indexed} where submission_id = ${sub(r)}` },
        { id: "partitioned", label: "partitioned, routed (petri_observations_by_submission)", table: "partitioned", role: "candidate", explain: false,
          sql: (r) => `select * from public.petri_observations_by_submission where submission_id = ${sub(r)}` },
        { id: "partitioned_site_keys", label: "partitioned, the statement the view runs (program_id, site_id, submission_id)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `select * from ${TABLES.partitioned} where program_id = ${lit(subOf(r).programId)} and site_id = ${lit(subOf(r).siteId)} and submission_id = ${sub(r)}` },
        { id: "partitioned_unrouted", label: "partitioned, unrouted (submission_id only)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `select * from ${TABLES.partitioned} where submission_id = ${sub(r)}` },
        // the parts of the routed call, each as a statement of its own (goals.ts: what each microsecond is)
        { id: "part_function", label: "part: the view's function alone (partition_mgmt.petri_rows_for_submission)", table: "partitioned", role: "extra", explain: false,
          sql: (r) => `select * from partition_mgmt.petri_rows_for_submission(${lit(subOf(r).programId)}, ${lit(subOf(r).siteId)}, ${sub(r)})` },
      ],
    },
    {
      id: "fetch_by_id", title: "Fetch by observation_id", kind: "byId",
      what: "one row by its id (a different id each repetition)",
      promise: "(app path; not in the plan)",
      variants: [
        { id: "legacy", label: "legacy as shipped", table: "legacy", role: "baseline", explain: true, sql: (r) => `select * from ${TABLES.legacy} where observation_id = ${lit(ob(r).id)}` },
        { id: "indexed", label: "legacy + composite index", table: "indexed", role: "baseline", explain: true, sql: (r) => `select * from ${TABLES.indexed} where observation_id = ${lit(ob(r).id)}` },
        { id: "partitioned", label: "partitioned, routed (get_observation_by_id)", table: "partitioned", role: "candidate", explain: false,
          sql: (r) => `select public.get_observation_by_id('petri_observations', ${lit(ob(r).id)})` },
        { id: "partitioned_keys", label: "partitioned, keys in the statement", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `select * from ${TABLES.partitioned} where observation_id = ${lit(ob(r).id)} and program_id = ${lit(ob(r).programId)} and site_id = ${lit(ob(r).siteId)} and created_at = ${lit(ob(r).createdAt)}` },
        { id: "partitioned_unrouted", label: "partitioned, unrouted (id only)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `select * from ${TABLES.partitioned} where observation_id = ${lit(ob(r).id)}` },
        { id: "part_json", label: "part: the keyed statement as the function runs it (to_jsonb, keys in the statement)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `select to_jsonb(t) from ${TABLES.partitioned} t where observation_id = ${lit(ob(r).id)} and program_id = ${lit(ob(r).programId)} and site_id = ${lit(ob(r).siteId)} and created_at = ${lit(ob(r).createdAt)}` },
        { id: "part_route", label: "part: the key lookup alone (partition_mgmt.route)", table: "partitioned", role: "extra", explain: false,
          sql: (r) => `select * from partition_mgmt.route('petri', ${lit(ob(r).id)})` },
        { id: "part_function", label: "part: the generated function alone (partition_mgmt.petri_fetch_by_id)", table: "partitioned", role: "extra", explain: false,
          sql: (r) => `select partition_mgmt.petri_fetch_by_id(${lit(ob(r).id)})` },
      ],
    },
    {
      id: "update_by_id", title: "Update by observation_id", kind: "byId",
      what: "set growth_index of one row by its id (a different id each repetition)",
      promise: "(app path; not in the plan)",
      variants: [
        { id: "legacy", label: "legacy as shipped", table: "legacy", role: "baseline", explain: true,
          sql: (r) => `update ${TABLES.legacy} set growth_index = ${growth(r)} where observation_id = ${lit(ob(r).id)}` },
        { id: "indexed", label: "legacy + composite index", table: "indexed", role: "baseline", explain: true,
          sql: (r) => `update ${TABLES.indexed} set growth_index = ${growth(r)} where observation_id = ${lit(ob(r).id)}` },
        { id: "partitioned", label: "partitioned, routed (update_observation_by_id)", table: "partitioned", role: "candidate", explain: false,
          sql: (r) => `select public.update_observation_by_id('petri_observations', ${lit(ob(r).id)}, '{"growth_index": ${growth(r)}}'::jsonb)` },
        { id: "partitioned_keys", label: "partitioned, the statement the RPC runs (keys in the statement)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `update ${TABLES.partitioned} set growth_index = ${growth(r)} where observation_id = ${lit(ob(r).id)} and program_id = ${lit(ob(r).programId)} and site_id = ${lit(ob(r).siteId)} and created_at = ${lit(ob(r).createdAt)}` },
        { id: "partitioned_unrouted", label: "partitioned, unrouted (id only)", table: "partitioned", role: "extra", explain: true,
          sql: (r) => `update ${TABLES.partitioned} set growth_index = ${growth(r)} where observation_id = ${lit(ob(r).id)}` },
        { id: "part_route", label: "part: the key lookup alone (partition_mgmt.route)", table: "partitioned", role: "extra", explain: false,
          sql: (r) => `select * from partition_mgmt.route('petri', ${lit(ob(r).id)})` },
        { id: "part_function", label: "part: the generated function alone (partition_mgmt.petri_update_by_id)", table: "partitioned", role: "extra", explain: false,
          sql: (r) => `select partition_mgmt.petri_update_by_id(${lit(ob(r).id)}, '{"growth_index": ${growth(r)}}'::jsonb)` },
      ],
    },
  ];
}

async function planningTime(sql: Sql, statement: string): Promise<number> {
  const [r] = await sql.unsafe<{ "QUERY PLAN": [{ "Planning Time": number }] }[]>(`explain (summary, format json) ${statement}`);
  return r?.["QUERY PLAN"]?.[0]?.["Planning Time"] ?? Number.NaN;
}

async function partitionsInPlan(sql: Sql, statement: string): Promise<number | null> {
  try {
    const [r] = await sql<{ n: number }[]>`select partitions_scanned as n from partition_mgmt.explain_partitions(${statement})`;
    return r?.n ?? null;
  } catch {
    return null;
  }
}

/** Warm-up, then interleaved repetitions of every variant; then planning times of the explainable ones. */
export async function measureClass(sql: Sql, def: ClassDef, o: BenchOptions, progress: Progress): Promise<QueryClassResult> {
  const reps = def.kind === "scan" ? o.reps.scan : def.kind === "byId" ? o.reps.byId : o.reps.query;
  const budgetMs = o.quick ? 20_000 : 180_000;
  const samples = new Map<string, number[]>(def.variants.map((v) => [v.id, []]));
  const errors = new Map<string, string>();
  let matchedRows: number | undefined;
  const run = async (v: VariantDef, rep: number): Promise<number | null> => {
    if (errors.has(v.id)) return null;
    const text = v.sql(rep);
    const t0 = performance.now();
    try {
      const res = await sql.unsafe<{ count?: string }[]>(text);
      // aggregates: how many rows the filter selects (for the ceiling of the speed-up)
      if (v.id === "legacy" && res[0]?.count !== undefined) matchedRows = Number(res[0].count);
    } catch (e) {
      errors.set(v.id, `${(e as Error).message} [${text.slice(0, 200)}]`);
      return null;
    }
    return performance.now() - t0;
  };
  // warm-up repetitions use ids the measured ones do not (ids rotate through the pools)
  const warmup = def.kind === "scan" ? 1 : o.warmup;
  for (let w = 0; w < warmup; w++) {
    for (const v of def.variants) await run(v, 1000 + w);
    progress.update(`warm-up ${w + 1}/${warmup}`);
  }
  const t0 = performance.now();
  for (let rep = 0; rep < reps; rep++) {
    const n = def.variants.length;
    for (let k = 0; k < n; k++) {
      const v = def.variants[(rep + k) % n]!;
      const ms = await run(v, rep);
      if (ms !== null) samples.get(v.id)!.push(ms);
    }
    progress.update(`repetition ${rep + 1}/${reps}`);
    if (rep >= 4 && performance.now() - t0 > budgetMs) break;
  }
  const variants: VariantResult[] = [];
  for (const v of def.variants) {
    let planning: Summary | null = null;
    let partitions: number | null = null;
    if (v.explain && !errors.has(v.id)) {
      const times: number[] = [];
      await planningTime(sql, v.sql(0)).catch(() => Number.NaN);
      for (let i = 0; i < Math.min(o.reps.planning, 7); i++) times.push(await planningTime(sql, v.sql(i)).catch(() => Number.NaN));
      planning = summarize(times.filter(Number.isFinite));
      if (v.table === "partitioned") partitions = await partitionsInPlan(sql, v.sql(0));
    }
    const s = samples.get(v.id)!;
    variants.push({
      id: v.id, label: v.label, table: v.table, role: v.role, sql: v.sql(0),
      timings: summarize(s), samples: s.map((x) => Math.round(x * 1000) / 1000), planning,
      ...(partitions !== null ? { partitionsInPlan: partitions } : {}),
      ...(errors.has(v.id) ? { error: errors.get(v.id) } : {}),
    });
  }
  const get = (id: string) => variants.find((v) => v.id === id)?.timings;
  return {
    id: def.id, title: def.title, what: def.what, promise: def.promise, variants,
    ...(matchedRows !== undefined ? { matchedRows } : {}),
    speedupVsLegacy: speedup(get("legacy"), get("partitioned")),
    speedupVsIndexed: speedup(get("indexed"), get("partitioned")),
  };
}

export async function roundTrip(sql: Sql, o: BenchOptions): Promise<RoundTrip> {
  const t: number[] = [];
  for (let i = 0; i < o.warmup + o.reps.byId; i++) {
    const t0 = performance.now();
    await sql.unsafe("select 1");
    if (i >= o.warmup) t.push(performance.now() - t0);
  }
  return { selectOne: summarize(t) };
}

/** Every query class, and the round trip, in a session of their own (one connection, as an app's pooled one). */
export async function runQueries(url: string, o: BenchOptions, progress: Progress): Promise<{ classes: QueryClassResult[]; roundTrip: RoundTrip }> {
  const sql = benchSession(url, "bench-queries");
  try {
    progress.step("sample keys, submissions and ids");
    const params = await pickParams(sql);
    progress.done(`program ${params.programId.slice(0, 8)}…, site ${params.siteId.slice(0, 8)}…, ${params.submissions.length} submissions, ${params.observations.length} ids`);
    const classes: QueryClassResult[] = [];
    for (const def of queryClasses(params)) {
      progress.step(`query class ${def.id}`);
      const r = await measureClass(sql, def, o, progress);
      classes.push(r);
      const c = r.variants.find((v) => v.id === "partitioned")?.timings.median;
      const l = r.variants.find((v) => v.id === "legacy")?.timings.median;
      progress.done(`legacy p50 ${l?.toFixed(2)} ms, partitioned p50 ${c?.toFixed(2)} ms`);
    }
    return { classes, roundTrip: await roundTrip(sql, o) };
  } finally {
    await sql.end({ timeout: 5 });
  }
}
