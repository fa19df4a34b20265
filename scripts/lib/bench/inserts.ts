// Insert throughput as the app writes: single-row INSERTs, each its own transaction, over one
// connection and over several, into the legacy table, the indexed legacy table and the live
// partitioned table (tuple routing, company_id trigger, key-table trigger, foreign keys).
// Measured with durable commits (what the app gets) and with synchronous_commit = off (the CPU
// cost alone, which a fast disk or group commit would expose). Then a profile of one insert per
// table from EXPLAIN ANALYZE: where the time goes, trigger by trigger.
import postgres, { type Sql } from "postgres";
import { TABLES } from "./build.ts";
import type { BenchOptions } from "./options.ts";
import type { Progress } from "./progress.ts";
import { fmtInt, summarize } from "./stats.ts";
import type { InsertProfile, InsertResult, InsertRun, TableKind } from "./types.ts";

interface Target { siteId: string; programId: string; submissionId: string }

const KINDS: TableKind[] = ["legacy", "indexed", "partitioned"];
const insertSql = (table: string) =>
  `insert into ${table} (submission_id, site_id, program_id, petri_code, growth_index, created_at) values ($1, $2, $3, $4, $5, now())`;

async function targets(sql: Sql): Promise<Target[]> {
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

async function insertRun(url: string, kind: TableKind, commit: "durable" | "async", connections: number, seconds: number, t: Target[]): Promise<InsertRun> {
  const conns = Array.from({ length: connections }, () => postgres(url, { max: 1, idle_timeout: 0, onnotice: () => {} }));
  const latencies: number[] = [];
  let rows = 0;
  let errors = 0;
  let firstError: string | undefined;
  const text = insertSql(TABLES[kind]);
  try {
    for (const c of conns) {
      if (commit === "async") await c`set synchronous_commit = off`;
      // warm-up: connection, prepared statement, relation caches
      for (let i = 0; i < 20; i++) {
        const x = t[i % t.length]!;
        await c.unsafe(text, [x.submissionId, x.siteId, x.programId, `bench-warm-${i}`, 1], { prepare: true });
      }
    }
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    await Promise.all(conns.map(async (c, w) => {
      let i = w;
      while (performance.now() < deadline) {
        const x = t[i % t.length]!;
        i += connections;
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
      table: kind, commit, connections, rows, seconds: secs, rowsPerSecond: rows / secs, latency: summarize(latencies), errors,
      ...(firstError ? { firstError } : {}),
    };
  } finally {
    await Promise.all(conns.map((c) => c.end({ timeout: 5 })));
  }
}

class Rollback extends Error {}

interface ExplainJson {
  "Planning Time": number;
  "Execution Time": number;
  Triggers?: { "Trigger Name": string; Relation?: string; Time: number; Calls: number }[];
}

async function profileInsert(sql: Sql, kind: TableKind, table: string, label: string, t: Target[], samples: number): Promise<InsertProfile> {
  let exec = 0;
  let plan = 0;
  const trig = new Map<string, number>();
  for (let i = 0; i < samples + 3; i++) {
    const x = t[i % t.length]!;
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

export async function runInserts(sql: Sql, url: string, o: BenchOptions, progress: Progress): Promise<InsertResult> {
  const t = await targets(sql);
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
      const r = await insertRun(url, kind, c.commit, c.connections, o.insertSeconds, t);
      runs.push(r);
      progress.done(`${fmtInt(r.rowsPerSecond)} rows/s, p50 ${r.latency.median.toFixed(2)} ms${r.errors ? `, ${r.errors} errors: ${r.firstError}` : ""}`);
    }
  }
  progress.step("insert profile (EXPLAIN ANALYZE of single inserts, rolled back)");
  const profile: InsertProfile[] = [];
  const samples = o.quick ? 10 : 40;
  for (const kind of KINDS) profile.push(await profileInsert(sql, kind, TABLES[kind], kind, t, samples));
  // the same rows straight into their leaf (the current month of the first target site): the
  // difference to the parent is the cost of tuple routing through the three levels
  const x = t[0]!;
  const [leaf] = await sql<{ name: string }[]>`
    select format('%I.%I', partition_schema, partition_name) as name from partition_mgmt.partition_registry
    where table_key = 'petri' and level = 'period' and not is_default and site_id = ${x.siteId}
      and range_start <= now() and range_end > now()`;
  if (leaf) profile.push(await profileInsert(sql, "partitioned", leaf.name, "partitioned, straight into the leaf (no routing)", [x], samples));
  progress.done(profile.map((p) => `${p.table} ${p.executionMs.toFixed(3)} ms`).join(", "));
  const shares = configs.map((c) => {
    const l = runs.find((r) => r.table === "legacy" && r.commit === c.commit && r.connections === c.connections);
    const p = runs.find((r) => r.table === "partitioned" && r.commit === c.commit && r.connections === c.connections);
    return { commit: c.commit, connections: c.connections, share: l && p && l.rowsPerSecond > 0 ? p.rowsPerSecond / l.rowsPerSecond : Number.NaN };
  });
  return { runs, profile, shares };
}
