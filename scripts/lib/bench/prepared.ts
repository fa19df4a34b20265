// Id-only statements sent the way PostgREST sends them. PostgREST prepares each statement once per
// connection and executes it again with other parameters (postgres.js does the same with
// `prepare: true`: Parse once, then Bind/Execute); from the sixth execution PostgreSQL may use a
// generic plan, made once for any id. On a partitioned table a statement without the partition
// keys cannot be pruned, so its generic plan holds every leaf, and each execution locks every
// partition and every index of the tree. Measured on the three tables, each through a connection
// of its own (as a pooled PostgREST connection), executions taking turns:
//   select * from <t> where observation_id = $1
//   update <t> set notes = $2 where observation_id = $1     (the row's own notes: committed, nothing changes)
// then the relation locks one execution holds (pg_locks of the session inside an open
// transaction) and how often the session planned generically (pg_prepared_statements).
import type { Sql } from "postgres";
import { TABLES } from "./build.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, summarize } from "./stats.ts";
import type { PreparedResult, PreparedRun, TableKind } from "./types.ts";
import { benchSession } from "./session.ts";

const KINDS: TableKind[] = ["legacy", "indexed", "partitioned"];
const STATEMENTS = {
  select: (t: string) => `select * from ${t} where observation_id = $1`,
  update: (t: string) => `update ${t} set notes = $2 where observation_id = $1`,
} as const;
type Statement = keyof typeof STATEMENTS;

/** Executions before the measured ones: five custom plans, then PostgreSQL's choice of a generic one. */
const GENERIC_AFTER = 5;

interface Row { id: string; notes: string | null }

async function sampleRows(sql: Sql, n: number): Promise<Row[]> {
  const [c] = await sql<{ n: number }[]>`select greatest(reltuples, 1)::float8 as n from pg_class where oid = ${TABLES.legacy}::regclass`;
  const pct = Math.min(100, ((4 * n) / (c?.n ?? 1)) * 100);
  const rows = await sql.unsafe<{ observation_id: string; notes: string | null }[]>(
    `select observation_id, notes from ${TABLES.legacy} tablesample bernoulli (${pct}) order by md5(observation_id::text || 'prepared') limit ${n}`);
  if (rows.length < 10) throw new Error("too little data to sample ids from");
  return rows.map((r) => ({ id: r.observation_id, notes: r.notes }));
}

/** Relation locks the session holds after one execution, inside a transaction (committed: the update changes nothing). */
async function locksOfOne(sql: Sql, text: string, params: (string | null)[]): Promise<{ relationLocks: number; sharedLockSlots: number }> {
  return sql.begin(async (tx) => {
    await tx.unsafe(text, params, { prepare: true });
    const [l] = await tx<{ all: number; shared: number }[]>`
      select count(*)::int as all, count(*) filter (where not fastpath)::int as shared from pg_locks
      where pid = pg_backend_pid() and locktype = 'relation' and relation <> 'pg_catalog.pg_locks'::regclass`;
    return { relationLocks: l?.all ?? Number.NaN, sharedLockSlots: l?.shared ?? Number.NaN };
  });
}

export async function runPrepared(url: string, o: BenchOptions, progress: Progress): Promise<PreparedResult> {
  const sessions = new Map<TableKind, Sql>(KINDS.map((k) => [k, benchSession(url, `bench-prepared-${k}`)]));
  const warmup = GENERIC_AFTER + Math.max(1, o.warmup);
  try {
    const rows = await sampleRows(sessions.get("legacy")!, warmup + o.reps.byId + 50);
    const runs: PreparedRun[] = [];
    for (const statement of ["select", "update"] as Statement[]) {
      progress.step(`id-only statement, prepared (as PostgREST sends it): ${statement}, ${KINDS.join(" / ")}`);
      const text = (k: TableKind) => STATEMENTS[statement](TABLES[k]);
      const params = (i: number): (string | null)[] => {
        const r = rows[i % rows.length]!;
        return statement === "select" ? [r.id] : [r.id, r.notes];
      };
      const samples = new Map<TableKind, number[]>(KINDS.map((k) => [k, []]));
      const errors = new Map<TableKind, string>();
      const exec = async (k: TableKind, i: number): Promise<number | null> => {
        if (errors.has(k)) return null;
        const t0 = performance.now();
        try {
          await sessions.get(k)!.unsafe(text(k), params(i), { prepare: true });
        } catch (e) {
          errors.set(k, (e as Error).message);
          return null;
        }
        return performance.now() - t0;
      };
      // the warm-up uses ids the measured executions do not
      for (let w = 0; w < warmup; w++) for (const k of KINDS) await exec(k, o.reps.byId + w);
      for (let rep = 0; rep < o.reps.byId; rep++) {
        for (let j = 0; j < KINDS.length; j++) {
          const k = KINDS[(rep + j) % KINDS.length]!;
          const ms = await exec(k, rep);
          if (ms !== null) samples.get(k)!.push(ms);
        }
        progress.update(`execution ${rep + 1}/${o.reps.byId}`);
      }
      for (const k of KINDS) {
        const sql = sessions.get(k)!;
        let locks = { relationLocks: Number.NaN, sharedLockSlots: Number.NaN };
        if (!errors.has(k)) {
          try {
            locks = await locksOfOne(sql, text(k), params(0));
          } catch (e) {
            errors.set(k, (e as Error).message);
          }
        }
        const [plans] = await sql<{ generic: number; custom: number }[]>`
          select generic_plans::int as generic, custom_plans::int as custom from pg_prepared_statements where statement = ${text(k)}`;
        const s = samples.get(k)!;
        runs.push({
          table: k, statement, sql: text(k), timings: summarize(s), samples: s.map((x) => Math.round(x * 1000) / 1000),
          genericPlans: plans?.generic ?? 0, customPlans: plans?.custom ?? 0, ...locks,
          ...(errors.has(k) ? { error: errors.get(k) } : {}),
        });
      }
      const p = runs.find((r) => r.table === "partitioned" && r.statement === statement);
      progress.done(`partitioned p50 ${p?.timings.median.toFixed(2)} ms, ${fmtInt(p?.relationLocks)} relation locks, ` +
        `${p?.genericPlans} generic / ${p?.customPlans} custom plans${p?.error ? `; error: ${p.error}` : ""}`);
    }
    return { warmup, runs };
  } finally {
    for (const s of sessions.values()) await s.end({ timeout: 5 });
  }
}
