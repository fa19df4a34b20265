// The three outputs of a run: the table on the terminal, the JSON result and the Markdown report
// (with its SVG chart), under the results folder; with --publish also docs/benchmarks/<tree>.*
// (sized.md, literal.md: one report per tree variant).
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { REPO_ROOT } from "../cluster.ts";
import { chartRows, ratioChartSvg } from "./chart.ts";
import { fmtChangedGroups, fmtDuration, fmtInt, fmtMs, fmtRatio } from "./stats.ts";
import type { BenchResult, GoalResult, LeafRows, QueryClassResult, VariantResult } from "./types.ts";

const mb = (b: number) => `${(b / 1024 ** 2).toLocaleString("en-US", { maximumFractionDigits: 0 })} MB`;
const v = (q: QueryClassResult, id: string): VariantResult | undefined => q.variants.find((x) => x.id === id);
const cell = (x: VariantResult | undefined) => (x ? (x.error ? "error" : `${fmtMs(x.timings.median)} / ${fmtMs(x.timings.p95)}`) : "–");
/** A verdict as the reports show it. */
export const mark = (s: GoalResult["status"]) => (s === "met" ? "✅ met" : s === "missed" ? "❌ missed" : "➖ not measured");

export function scaleLine(r: BenchResult): string {
  const b = r.build;
  return `${fmtInt(b.rows.legacy)} petri observations (${b.demo.programs} programs × ${b.demo.sites / Math.max(1, b.demo.programs)} sites × ${b.demo.months} months × ${fmtInt(b.demo.petriPerSiteMonth)} per site-month), ` +
    `${b.tree.shape} tree: ${fmtInt(b.tree.leaves)} leaves, ${fmtInt(b.tree.defaults)} of them DEFAULT partitions`;
}

const leafRowsText = (x: LeafRows) => (x.leaves === 0 ? "no leaves" : `${fmtInt(x.min)} / ${fmtInt(x.median)} / ${fmtInt(x.max)} over ${fmtInt(x.leaves)} leaves (${fmtInt(x.empty)} empty)`);

/** The tree prepare_migration built and the lock setting it ran with. */
function treeSection(r: BenchResult): string[] {
  const t = r.build.tree;
  const l = r.build.locks;
  const out = ["## The tree", ""];
  out.push(`Built by \`partition_mgmt.prepare_migration('petri')\` from the legacy table's data (${r.build.prepare.calls} call${r.build.prepare.calls === 1 ? "" : "s"}, each its own transaction within its lock budget, ${r.build.prepare.seconds.toFixed(1)} s), then filled by the offline copy.`);
  out.push("");
  out.push("| | |");
  out.push("| --- | --- |");
  out.push(`| Tree shape | **${t.shape}**${t.shape === "sized" ? ` (a program or site gets partitions of its own once its rows reach ${fmtInt(t.targetRowsPerLeaf)}; smaller ones share their parent's DEFAULT leaf)` : " (the plan's tree: every program, every site, every month)"} |`);
  out.push(`| Target rows per leaf | ${fmtInt(t.targetRowsPerLeaf)} |`);
  out.push(`| Leaves | ${fmtInt(t.leaves)} with DEFAULT partitions, ${fmtInt(t.leavesWithoutDefaults)} without (${fmtInt(t.defaults)} DEFAULT); ${fmtInt(t.relations)} relations in the tree |`);
  out.push(`| Programs / sites with partitions of their own | ${fmtInt(t.ownPrograms)} of ${fmtInt(t.programs)} / ${fmtInt(t.ownSites)} of ${fmtInt(t.sites)} |`);
  out.push(`| Rows per leaf, min / median / max | every leaf: ${leafRowsText(t.rowsPerLeaf)}; without DEFAULTs: ${leafRowsText(t.rowsPerLeafWithoutDefaults)} |`);
  out.push(`| Rows in DEFAULT leaves | ${fmtInt(t.rowsInDefaults)}${t.shape === "sized" ? " (the shared leaves of programs and sites below the target)" : ""}; waiting for a partition of their own: ${fmtInt(t.rowsWaiting)} |`);
  out.push(`| Locks of one statement without the partition keys (\`lock_budget()\`) | ${fmtInt(t.lockBudget.keylessLocks)}: every partition and every index of every leaf |`);
  out.push(`| Such statements that fit in the lock table at once | ${fmtInt(t.lockBudget.keylessAtOnce)} (minimum ${t.lockBudget.minimum}: ${t.lockBudget.status}) |`);
  out.push(`| Lock capacity (\`lock_capacity()\`) | ${fmtInt(l.lockCapacity)} slots |`);
  out.push(`| max_locks_per_transaction | **${l.maxLocksPerTransaction}** (${l.source === "raised" ? "raised by the bench" : "the server's"}): ${l.reason} |`);
  out.push("");
  out.push("The pre-migration check on the legacy data, before the tree was built:");
  out.push("");
  out.push(`- partition tree: ${t.precheck.tree}`);
  for (const c of l.checks) out.push(`- lock budget (${c.table}, ${c.status}): ${c.detail}`);
  out.push(`- indexes per leaf: ${t.precheck.indexesPerLeaf}`);
  out.push("");
  return out;
}

/** Id-only statements, prepared and reused (PostgREST's way). */
function preparedSection(r: BenchResult): string[] {
  const out = ["## Id-only statements, prepared (as PostgREST sends them)", ""];
  const pr = r.prepared;
  if (!pr) return [...out, "Not run.", ""];
  out.push(`Each table through a connection of its own that prepares the statement once and executes it with a different id each time (postgres.js \`prepare: true\`, as PostgREST keeps prepared statements per connection); ` +
    `${pr.warmup} executions first (PostgreSQL may switch to a generic plan after five), then the measured ones, the tables taking turns. ` +
    "Locks: the session's relation locks in pg_locks after one execution inside an open transaction (shared: not fast-path, i.e. slots of the lock table). The update sets the row's own notes and commits.");
  out.push("");
  out.push("| Statement | Table | p50 ms | p95 ms | n | Relation locks (shared) | Generic / custom plans |");
  out.push("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
  for (const x of pr.runs) {
    out.push(`| \`${x.sql}\` | ${x.table}${x.error ? ` (error: ${x.error.slice(0, 120)})` : ""} | ${fmtMs(x.timings.median)} | ${fmtMs(x.timings.p95)} | ${x.timings.n} | ${fmtInt(x.relationLocks)} (${fmtInt(x.sharedLockSlots)}) | ${x.genericPlans} / ${x.customPlans} |`);
  }
  out.push("");
  return out;
}

export function machineLine(r: BenchResult): string {
  const m = r.machine;
  return `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB RAM; ${m.postgres}; shared_buffers ${m.settings.shared_buffers}, ` +
    `synchronous_commit ${m.settings.synchronous_commit}, fsync ${m.settings.fsync}, jit ${m.settings.jit}`;
}

/** The headline table in Markdown (also pasted into docs/benchmarks.md). */
export function headlineTable(r: BenchResult): string {
  const lines = [
    "| Query class | Legacy p50 / p95 ms | Indexed legacy p50 / p95 ms | Partitioned p50 / p95 ms | × vs legacy | × vs indexed |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const q of r.queries) {
    lines.push(`| ${q.title} | ${cell(v(q, "legacy"))} | ${cell(v(q, "indexed"))} | ${cell(v(q, "partitioned"))} | ${fmtRatio(q.speedupVsLegacy)} | ${fmtRatio(q.speedupVsIndexed)} |`);
  }
  if (r.inserts) {
    for (const conn of [...new Set(r.inserts.runs.map((x) => x.connections))]) {
      const rate = (t: string) => r.inserts!.runs.find((x) => x.table === t && x.commit === "durable" && x.connections === conn)?.rowsPerSecond;
      const [l, i, p] = [rate("legacy"), rate("indexed"), rate("partitioned")];
      lines.push(`| Insert, ${conn} connection${conn > 1 ? "s" : ""} (rows/s, higher is better) | ${fmtInt(l)} | ${fmtInt(i)} | ${fmtInt(p)} | ${l && p ? fmtRatio(p / l) : "–"} | ${i && p ? fmtRatio(p / i) : "–"} |`);
    }
  }
  return lines.join("\n");
}

function goalsTable(goals: GoalResult[]): string {
  return ["| Goal | Measured | Verdict | Why |", "| --- | --- | --- | --- |",
    ...goals.map((g) => `| ${g.goal} | ${g.measured} | ${mark(g.status)} | ${g.reason || ""} |`)].join("\n");
}

export function markdownReport(r: BenchResult, chartFile: string): string {
  const b = r.build;
  const out: string[] = [];
  const when = r.finishedAt.replace("T", " ").replace(/\.\d+Z$/, " UTC");
  out.push(`# Benchmark: legacy vs indexed legacy vs partitioned, ${b.tree.shape} tree (${r.mode === "quick" ? "quick mode" : "full scale"})`);
  out.push("");
  out.push(`Measured ${when} in ${fmtDuration(r.seconds)}.`);
  out.push("");
  out.push(`- **Scale**: ${scaleLine(r)}.`);
  out.push(`- **Tree**: ${b.tree.shape}, target ${fmtInt(b.tree.targetRowsPerLeaf)} rows per leaf; a statement without the partition keys takes ${fmtInt(b.tree.lockBudget.keylessLocks)} locks, ${fmtInt(b.tree.lockBudget.keylessAtOnce)} fit at once (max_locks_per_transaction ${b.locks.maxLocksPerTransaction}${b.locks.source === "raised" ? ", raised for this tree" : ""}). See "The tree".`);
  out.push(`- **Machine**: ${machineLine(r)}. Load average (1/5/15 min) at the start: ${r.machine.loadAverage.join(", ")}${r.machine.loadAverageEnd ? `, at the end: ${r.machine.loadAverageEnd.join(", ")}` : ""} (other work shares the machine: ratios from one run are what count).`);
  out.push(`- **Tables**: legacy \`petri_observations\` as shipped (${mb(b.sizes.legacyBytes)}), the same plus an index on (program_id, site_id, created_at) (${mb(b.sizes.indexedBytes)}), and the partitioned tree (${mb(b.sizes.partitionedBytes)}), all in one database with the same rows.`);
  if ((r.runs ?? 1) > 1) out.push(`- **Runs**: the measured sections ran ${r.runs} times on the same data; every goal and promise below is judged on the median of its figures across the runs, with their spread and in how many runs it was met. The tables show, for each variant and section, the run of its median.`);
  if (r.mode === "quick") out.push(`- **Quick mode**: a tiny data set for CI. The absolute figures and most ratios mean little at this size; run \`npm run bench\` for the full scale.`);
  out.push("");
  out.push("Times are client-observed wall times of each statement, in milliseconds: median (p50) and p95 over the repetitions. × is legacy p50 ÷ partitioned p50: above 1 the partitioned table is faster." +
    (r.roundTrip ? ` Every figure includes the client round trip (\`select 1\`: p50 ${fmtMs(r.roundTrip.selectOne.median)} ms, p95 ${fmtMs(r.roundTrip.selectOne.p95)} ms).` : ""));
  out.push("");
  out.push(headlineTable(r));
  out.push("");
  out.push(`![Speed ratios](${chartFile})`);
  out.push("");

  out.push("## Goals");
  out.push("");
  out.push(goalsTable(r.goals));
  out.push("");
  if (r.findings?.length) {
    out.push("## Findings: where the engine is slow");
    out.push("");
    for (const f of r.findings) out.push(`- ${f}`);
    out.push("");
  }
  out.push("## The plan's promises");
  out.push("");
  out.push("From the plan's \"Performance Expectations\" and \"Success Criteria\" (absolute times are the partitioned p50).");
  out.push("");
  out.push(goalsTable(r.promises));
  out.push("");

  out.push(...treeSection(r));
  out.push(...preparedSection(r));

  out.push("## Every variant");
  out.push("");
  out.push("Partitioned variants besides the candidate show what routing buys: the same request with the keys in the statement, and without them (every leaf planned). Planning is the server's planning time of the statement (EXPLAIN SUMMARY), where it is a plain statement.");
  out.push("");
  out.push("| Class | Variant | p50 ms | p95 ms | n | planning p50 ms | partitions in plan |");
  out.push("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
  for (const q of r.queries) {
    for (const x of q.variants) {
      out.push(`| ${q.title} | ${x.label}${x.error ? ` (error: ${x.error.slice(0, 120)})` : ""} | ${fmtMs(x.timings.median)} | ${fmtMs(x.timings.p95)} | ${x.timings.n} | ${x.planning ? fmtMs(x.planning.median) : "in the RPC"} | ${x.partitionsInPlan ?? (x.table === "partitioned" ? "–" : "")} |`);
    }
  }
  out.push("");
  out.push("<details><summary>Statements (first repetition)</summary>");
  out.push("");
  for (const q of r.queries) {
    out.push(`**${q.title}** — ${q.what}.`);
    out.push("");
    out.push("```sql");
    for (const x of q.variants) out.push(`-- ${x.label}\n${x.sql};`);
    out.push("```");
    out.push("");
  }
  out.push("</details>");
  out.push("");

  out.push("## Insert throughput");
  out.push("");
  if (!r.inserts) out.push("Not run.");
  else {
    out.push("Single-row INSERTs, one transaction each, as the app writes (prepared statement; `created_at = now()`, sites of running programs). " +
      "Durable: synchronous_commit as configured (each commit waits for the WAL flush). Async: `synchronous_commit = off`, the CPU cost alone.");
    out.push("");
    out.push("| Commit | Connections | Legacy rows/s | Indexed rows/s | Partitioned rows/s | Partitioned ÷ legacy | Partitioned p50 / p95 ms |");
    out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const s of r.inserts.shares) {
      const run = (t: string) => r.inserts!.runs.find((x) => x.table === t && x.commit === s.commit && x.connections === s.connections);
      const p = run("partitioned");
      out.push(`| ${s.commit} | ${s.connections} | ${fmtInt(run("legacy")?.rowsPerSecond)} | ${fmtInt(run("indexed")?.rowsPerSecond)} | ${fmtInt(p?.rowsPerSecond)} | ${(s.share * 100).toFixed(0)}% | ${fmtMs(p?.latency.median)} / ${fmtMs(p?.latency.p95)} |`);
    }
    if (r.inserts.firstTouch?.length) {
      out.push("");
      out.push(`Before the timed runs every connection inserted once into each target site (its current month's leaf), as a long-lived app connection has: ` +
        r.inserts.firstTouch.map((f) => `${f.table} mean ${fmtMs(f.meanMs)} ms (p95 ${fmtMs(f.p95Ms)} ms) over ${fmtInt(f.inserts)} inserts`).join("; ") + ".");
    }
    const errs = r.inserts.runs.filter((x) => x.errors > 0);
    if (errs.length) out.push("", `Errors: ${errs.map((e) => `${e.table} ${e.commit} ${e.connections}: ${e.errors} (${e.firstError})`).join("; ")}`);
    out.push("");
    out.push("Where one insert's time goes (EXPLAIN ANALYZE of single inserts, rolled back; averages):");
    out.push("");
    out.push("| Insert into | Execution ms | Triggers (ms each) | Routing, heap and index writes ms | Planning ms |");
    out.push("| --- | ---: | --- | ---: | ---: |");
    for (const p of r.inserts.profile) {
      out.push(`| ${p.label} | ${fmtMs(p.executionMs)} | ${p.triggers.map((t) => `${t.name}: ${fmtMs(t.ms)}`).join("; ") || "–"} | ${fmtMs(p.otherMs)} | ${fmtMs(p.planningMs)} |`);
    }
  }
  if (r.inserts?.copyProfile?.length) {
    out.push("");
    out.push(`Where the copy's time goes: INSERT … SELECT of one site's month (${fmtInt(r.inserts.copyProfile[0]!.samples)} rows, fresh ids, rolled back), per row${r.inserts.copyProfileNote ? ` (${r.inserts.copyProfileNote})` : ""}:`);
    out.push("");
    out.push("| Insert into | µs per row | Triggers (µs per row) | Routing, heap and index writes µs per row |");
    out.push("| --- | ---: | --- | ---: |");
    const us = (ms: number) => fmtInt(ms * 1000);
    for (const p of r.inserts.copyProfile) {
      out.push(`| ${p.label} | ${us(p.executionMs)} | ${p.triggers.map((t) => `${t.name}: ${us(t.ms)}`).join("; ") || "–"} | ${us(p.otherMs)} |`);
    }
  }
  out.push("");

  out.push("## Planning time against leaf count");
  out.push("");
  if (!r.planning) out.push("Not run.");
  else {
    out.push(`On ${r.planning.table}: ${r.planning.shape}. EXPLAIN (ANALYZE, TIMING OFF) of a fully keyed statement (\`${r.planning.keyedSql}\`) and of an id-only one (\`${r.planning.idOnlySql}\`). ` +
      "Warm: the same connection after warm-up. Cold: the first statement of a new connection (the relation caches are empty).");
    if (r.planning.error) out.push("", `**The series stopped early**: ${r.planning.error}`);
    out.push("");
    out.push("| Leaves (+ DEFAULTs) | Created in (ms/leaf) | Keyed planning p50 / p95 ms | Keyed execution p50 ms | Keyed cold planning ms | Locks of an id-only statement | Id-only planning p50 / p95 ms | Id-only execution p50 ms | Id-only cold planning ms |");
    out.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const l of r.planning.levels) {
      const id = l.idOnly;
      const idCells = id ? `${fmtMs(id.planning.median)} / ${fmtMs(id.planning.p95)} | ${fmtMs(id.execution.median)} | ${fmtMs(id.coldPlanningMs)}` : `not run: ${l.idOnlySkipped ?? "?"} | – | –`;
      out.push(`| ${fmtInt(l.leaves)} (+${fmtInt(l.defaults)}) | ${fmtDuration(l.createSeconds)} (${l.msPerLeaf.toFixed(1)}) | ${fmtMs(l.keyed.planning.median)} / ${fmtMs(l.keyed.planning.p95)} | ${fmtMs(l.keyed.execution.median)} | ${fmtMs(l.keyed.coldPlanningMs)} | ${fmtInt(l.keylessLocks)} | ${idCells} |`);
    }
  }
  out.push("");

  out.push("## Maintenance");
  out.push("");
  if (!r.maintenance) out.push("Not run.");
  else if (r.maintenance.error) out.push(`The statement \`partition_mgmt.maintenance_runner()\` returns (the nightly job's) failed after ${r.maintenance.seconds.toFixed(1)} s: ${r.maintenance.error}`);
  else {
    out.push(`The statement \`partition_mgmt.maintenance_runner()\` returns (the nightly job's: a DO block committing after every step), on the built trees (petri and gasifier, ${fmtInt(b.tree.allTablesLeaves)} leaves in all), in a session with the database's statement_timeout: **${fmtDuration(r.maintenance.seconds)}**` +
      (r.maintenance.unfinished ? `, **unfinished**: ${r.maintenance.unfinished}.` : "."));
    const d = r.maintenance.dayWrites;
    if (d) out.push("", `Before it, a day of new writes, the same at every scale: ${fmtInt(d.rows)} petri rows over a UTC day of their own${d.day ? ` (${d.day})` : ""} on the ${fmtInt(d.sites)} sites of running programs, ${fmtInt(d.statements)} INSERTs of a submission's rows (${d.seconds.toFixed(1)} s), leaving ${fmtInt(d.dirtyGroups)} changed (program, site, day) groups to recompute${d.groupRows !== undefined ? ` (${fmtInt(d.groupRows)} rows in them after the writes; the bench's history ends with the previous month, so that day holds only these writes)` : ""}${r.maintenance.settleSeconds !== undefined ? ` (what the sections before wrote was processed first by an untimed run of ${r.maintenance.settleSeconds.toFixed(1)} s)` : " (with what the sections before it wrote)"}.`);
    out.push("");
    out.push("| Table | Step | Status | Seconds | Partitions | Rows moved | Error |");
    out.push("| --- | --- | --- | ---: | ---: | ---: | --- |");
    for (const s of r.maintenance.steps) out.push(`| ${s.table ?? "–"} | ${s.action} | ${s.status} | ${s.seconds.toFixed(2)} | ${fmtInt(s.partitions)} | ${fmtInt(s.rows)} | ${s.error ?? ""} |`);
    const st = r.maintenance.steady;
    if (st) {
      out.push("", `**Once the tree has settled.** The run above restructured the tree (promotions the day of writes asked for)${r.maintenance.unfinished ? " and stopped at its budget" : ""}, ` +
        `so the nightly runs went on, untimed: ${st.settleRuns} run(s), ${fmtDuration(st.settleSeconds)} in all, ${fmtInt(st.cutovers)} promotion(s) cut over` +
        `${st.settled ? "" : `, **not settled** after ${st.settleRuns} runs`}${st.held ? `; then a promotion was held: ${st.held}` : ""}. ` +
        `Then a second day of writes (${fmtInt(st.dayWrites.rows)} rows, ${fmtChangedGroups(st.dayWrites)}) and the run on it: **${fmtDuration(st.seconds)}**` +
        (st.unfinished ? `, **unfinished**: ${st.unfinished}.` : "."));
      out.push("");
      out.push("| Table | Step | Status | Seconds | Partitions | Rows moved | Error |");
      out.push("| --- | --- | --- | ---: | ---: | ---: | --- |");
      for (const s of st.steps) out.push(`| ${s.table ?? "–"} | ${s.action} | ${s.status} | ${s.seconds.toFixed(2)} | ${fmtInt(s.partitions)} | ${fmtInt(s.rows)} | ${s.error ?? ""} |`);
    }
  }
  out.push("");

  out.push("## Migration");
  out.push("");
  const m = r.migration;
  if (m.status === "skipped" || !m.table) out.push(`${m.status === "skipped" ? "Skipped" : "**Failed**"}${m.reason ? `: ${m.reason}` : ""}.`);
  else {
    out.push(`Measured with the migration API on \`${m.table}\` (${fmtInt(m.rows)} rows), the second managed table of the same database, so the petri figures above are untouched.` +
      (m.status === "failed" ? " **The run failed** (see below)." : "") + (m.note ? ` ${m.note}.` : ""));
    out.push("");
    out.push("| Figure | Value |");
    out.push("| --- | --- |");
    out.push(`| Offline copy (plan's Option B, \`offline_migrate_table\`) | ${m.offline && "rowsPerSecond" in m.offline ? `${fmtInt(m.offline.rowsPerSecond)} rows/s; ${m.offline.note}` : `failed: ${m.offline && "error" in m.offline ? m.offline.error : "?"}`} |`);
    out.push(`| Offline copy of the petri build (INSERT … SELECT per program, ${fmtInt(b.offlineCopy.rows)} rows) | ${fmtInt(b.offlineCopy.rowsPerSecond)} rows/s |`);
    if (m.online && "backfillRowsPerSecond" in m.online) {
      const o = m.online;
      out.push(`| Online: prepare (\`prepare_migration\` until prepared) | ${o.prepareSeconds.toFixed(1)} s, ${o.prepareCalls} call${o.prepareCalls === 1 ? "" : "s"}; ${fmtInt(o.treeLeaves)} leaves |`);
      out.push(`| Online: sync trigger (\`start_sync\`) | ${o.syncSeconds.toFixed(1)} s |`);
      out.push(`| Online: backfill (batches of 10,000, app writing) | ${fmtInt(o.backfillRowsPerSecond)} rows/s (${o.batches} batches in ${o.backfillSeconds.toFixed(1)} s; the slowest ${o.slowestBatchSeconds.toFixed(2)} s) |`);
      out.push(`| Online: validation | ${o.validateSeconds.toFixed(1)} s |`);
      out.push(`| Online: swap, ACCESS EXCLUSIVE held | **${fmtMs(o.swapLockMs)} ms** (${o.swapAttempts} attempt${o.swapAttempts === 1 ? "" : "s"}) |`);
      out.push(`| Online: total, prepare to swapped | ${fmtDuration(o.totalSeconds)} |`);
      if (o.rollbackLockMs !== undefined || o.rollbackError !== undefined) {
        out.push(`| Online: rollback right after the swap (app writing), ACCESS EXCLUSIVE held | ${o.rollbackError ? `failed: ${o.rollbackError}` : `**${fmtMs(o.rollbackLockMs!)} ms** (${o.rollbackAttempts} attempt${o.rollbackAttempts === 1 ? "" : "s"})`} |`);
      }
    } else out.push(`| Online migration | failed: ${m.online && "error" in m.online ? m.online.error : "?"} |`);
    if (m.app) {
      const rolledBack = m.app.phases.some((p) => p.name === "rollback");
      out.push(`| App (${m.app.sessions} sessions: inserts, routed updates/deletes, key moves) before the migration | ${fmtInt(m.app.baseline.ops)} statements, p50 ${fmtMs(m.app.baseline.p50)} ms, p99 ${fmtMs(m.app.baseline.p99)} ms, max ${fmtMs(m.app.baseline.max)} ms |`);
      out.push(`| App during the migration (prepare to ${rolledBack ? "rollback" : "swap"}) | ${fmtInt(m.app.during.ops)} statements, p50 ${fmtMs(m.app.during.p50)} ms, **p99 ${fmtMs(m.app.during.p99)} ms**, max ${fmtMs(m.app.during.max)} ms |`);
      out.push(`| App statements overlapping the swap | ${fmtInt(m.app.swapWindow.ops)}, slowest ${fmtMs(m.app.swapWindow.max)} ms |`);
      out.push(`| **Longest app statement, prepare to ${rolledBack ? "rolled back" : "swapped"}** | **${fmtMs(m.app.maxWaitMs)} ms** |`);
      out.push(`| App errors / retried serialization failures | ${m.app.errors}${m.app.firstError ? ` (first: ${m.app.firstError})` : ""} / ${m.app.retried} |`);
    }
    if (m.app?.phases.length) {
      out.push("");
      out.push("What the app saw in each phase (its statements that overlapped the phase):");
      out.push("");
      out.push("| Phase | Seconds | App statements | Longest ms | Over 1 s |");
      out.push("| --- | ---: | ---: | ---: | ---: |");
      for (const ph of m.app.phases) out.push(`| ${ph.name} | ${ph.seconds.toFixed(2)} | ${fmtInt(ph.appOps)} | ${fmtMs(ph.appMaxMs)} | ${fmtInt(ph.appOver1s)} |`);
    }
  }
  out.push("");

  out.push("## Build");
  out.push("");
  out.push(`- Demo generator: ${fmtInt(b.generator.rows)} rows in ${fmtDuration(b.generator.seconds)} (${fmtInt(b.generator.rowsPerSecond)} rows/s), partition creation switched off meanwhile (the data exists before the tree, as on a real project).`);
  out.push(`- Tree shape set on the managed tables: \`tree_shape = '${b.tree.shape}'\`; the pre-migration check's lock budget decided the lock setting (see "The tree").`);
  out.push(`- Partitions: \`prepare_migration('petri')\` called until the phase was 'prepared' (${b.prepare.calls} call${b.prepare.calls === 1 ? "" : "s"}, ${fmtDuration(b.prepare.seconds)}, ${fmtInt(b.prepare.leaves)} leaves with DEFAULTs; last answer: ${b.prepare.message}), which also carried the legacy table's foreign keys and plain indexes; then \`drop_migration_helpers\` (back to idle).`);
  out.push(`- Offline copy into the tree: ${fmtInt(b.offlineCopy.rows)} rows in ${fmtDuration(b.offlineCopy.seconds)} (${fmtInt(b.offlineCopy.rowsPerSecond)} rows/s, through the company_id and key-table triggers, foreign keys and indexes). Rows waiting in DEFAULT partitions for a partition of their own: ${fmtInt(b.tree.rowsWaiting)}.`);
  if (b.sessionProbe) {
    const sp = b.sessionProbe;
    out.push(`- Session probe after the copy (CREATE TABLE / single-row insert, rolled back; medians): the copy's session ${fmtMs(sp.copySession.ddlMs)} ms / ${fmtMs(sp.copySession.insertMs)} ms, ` +
      `a fresh session ${fmtMs(sp.freshSession.ddlMs)} ms / ${fmtMs(sp.freshSession.insertMs)} ms (its first insert into the leaf: ${fmtMs(sp.freshSession.firstInsertMs)} ms).`);
  }
  out.push(`- Swap: ${b.swap}.`);
  out.push(`- Indexed legacy copy: ${fmtInt(b.indexedCopy.rows)} rows in ${fmtDuration(b.indexedCopy.seconds)} (same columns, indexes, foreign keys (NOT VALID) and company_id trigger as the legacy table, plus the composite index).`);
  out.push(`- Then VACUUM (ANALYZE) of all three, as autovacuum would leave them.`);
  out.push("");
  out.push("| Step | Seconds | Detail |");
  out.push("| --- | ---: | --- |");
  for (const s of b.steps) out.push(`| ${s.name} | ${s.seconds.toFixed(1)} | ${s.detail} |`);
  out.push("");

  out.push("## Method");
  out.push("");
  out.push("- One database holds the three tables with the same rows. The partitioned table is the live `public.petri_observations` (simulated swap, see Build), so the routed paths (`petri_observations_by_submission`, `get_observation_by_id`, `update_observation_by_id`) run exactly as the app calls them; the submission lookup is measured through the view.");
  out.push("- Every section runs in sessions of its own (queries in one connection, inserts in pre-warmed connections, maintenance, planning and migration each in new ones): what one session has cached changes its speed (see Findings).");
  out.push("- Statements carry their keys as literals and are sent unprepared (simple protocol): each execution is planned, so the planning cost of a large tree is in every figure. They run as `postgres` (BYPASSRLS) so that RLS does not skew the comparison. The id-only statements of their own section are prepared and reused instead, as PostgREST sends them.");
  out.push("- The measuring sessions and the simulated app keep the database's statement_timeout (the compute profile's 2 min); the bench's own long statements (generation, copies, indexes, vacuum, maintenance, the migration phases) run in sessions without it, as an operator's would.");
  out.push("- Per class: warm-up runs, then repetitions in which the variants take turns (rotating order), so noise from other processes hits all of them alike. Fetch, update and submission lookups use a different id each repetition (the same ids on every table).");
  out.push("- p95 is nearest-rank over the repetitions (with few repetitions it is close to the maximum).");
  for (const n of r.notes) out.push(`- ${n}`);
  out.push("");
  out.push("## Machine");
  out.push("");
  out.push("| | |");
  out.push("| --- | --- |");
  out.push(`| CPU | ${r.machine.cpuModel} (${r.machine.cores} cores) |`);
  out.push(`| Memory | ${r.machine.memoryGiB} GiB |`);
  out.push(`| OS / Node | ${r.machine.os} / ${r.machine.node} |`);
  out.push(`| PostgreSQL | ${r.machine.postgres} |`);
  out.push(`| Database | ${r.machine.database} |`);
  for (const [k, val] of Object.entries(r.machine.settings)) out.push(`| ${k} | ${val} |`);
  out.push("");
  out.push("## Reproduce");
  out.push("");
  out.push("```bash");
  out.push(`npm run bench -- ${r.mode === "quick" ? "--quick " : ""}--tree ${b.tree.shape}`);
  out.push("```");
  out.push("");
  out.push("The bench starts its own PostgreSQL cluster (port 54460, `.local/db/bench`, the Supabase compute profile of `SUPABASE_COMPUTE`, Micro by default), pushes the migrations with the Supabase CLI into a fresh `bench` database, builds the data, measures, and writes `results/bench-<timestamp>/` (report.md, result.json, ratios.svg); for a literal tree it restarts the cluster with the max_locks_per_transaction the pre-check asks for. `--db-url` runs it in an empty, freshly migrated database of your own instead, on that server's settings.");
  out.push("");
  return out.join("\n");
}

const pad = (s: string, n: number, right = false) => (right ? s.padStart(n) : s.padEnd(n));

export function terminalTable(r: BenchResult): string {
  const rows: string[][] = [["Query class", "legacy p50", "indexed p50", "partitioned p50 (p95)", "× legacy", "× indexed"]];
  for (const q of r.queries) {
    const p = v(q, "partitioned");
    rows.push([q.title, fmtMs(v(q, "legacy")?.timings.median), fmtMs(v(q, "indexed")?.timings.median),
      p ? `${fmtMs(p.timings.median)} (${fmtMs(p.timings.p95)})` : "–", fmtRatio(q.speedupVsLegacy), fmtRatio(q.speedupVsIndexed)]);
  }
  if (r.inserts) {
    for (const s of r.inserts.shares) {
      const rate = (t: string) => r.inserts!.runs.find((x) => x.table === t && x.commit === s.commit && x.connections === s.connections)?.rowsPerSecond;
      const [l, i, p] = [rate("legacy"), rate("indexed"), rate("partitioned")];
      rows.push([`Insert rows/s, ${s.commit}, ${s.connections} conn`, fmtInt(l), fmtInt(i), fmtInt(p), l && p ? fmtRatio(p / l) : "–", i && p ? fmtRatio(p / i) : "–"]);
    }
  }
  for (const statement of ["select", "update"] as const) {
    const p = (t: string) => r.prepared?.runs.find((x) => x.table === t && x.statement === statement);
    const [l, i, pt] = [p("legacy"), p("indexed"), p("partitioned")];
    if (!pt) continue;
    const ratio = (b: number | undefined) => (b && pt.timings.median > 0 ? fmtRatio(b / pt.timings.median) : "–");
    rows.push([`Id-only ${statement}, prepared (${fmtInt(pt.relationLocks)} locks)`, fmtMs(l?.timings.median), fmtMs(i?.timings.median),
      pt.error ? "error" : `${fmtMs(pt.timings.median)} (${fmtMs(pt.timings.p95)})`, ratio(l?.timings.median), ratio(i?.timings.median)]);
  }
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? "").length)));
  const line = (row: string[]) => row.map((x, c) => pad(x, w[c]!, c > 0)).join("  ");
  const out = [line(rows[0]!), w.map((n) => "-".repeat(n)).join("  "), ...rows.slice(1).map(line)];
  out.push("");
  out.push("times in ms; × = legacy p50 ÷ partitioned p50 (for inserts: partitioned rows/s ÷ legacy rows/s)");
  out.push("");
  for (const g of [...r.goals]) out.push(`${g.status === "met" ? "✔" : g.status === "missed" ? "✘" : "–"} ${g.goal}: ${g.measured}${g.reason ? `\n    ${g.reason}` : ""}`);
  return out.join("\n");
}

export interface WrittenFiles { json: string; markdown: string; svg: string; published?: string[] }

export function writeOutputs(r: BenchResult, outDir: string, publish: boolean): WrittenFiles {
  mkdirSync(outDir, { recursive: true });
  const svg = ratioChartSvg(chartRows(r), `Partitioned (${r.build.tree.shape} tree) vs legacy: speed ratio (p50)`,
    `${r.mode === "quick" ? "quick mode, " : ""}${fmtInt(r.build.rows.legacy)} rows, ${fmtInt(r.build.tree.leaves)} leaves; ${r.machine.cpuModel}, ${r.machine.cores} cores`);
  const files: WrittenFiles = { json: join(outDir, "result.json"), markdown: join(outDir, "report.md"), svg: join(outDir, "ratios.svg") };
  writeFileSync(files.json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(files.svg, svg);
  writeFileSync(files.markdown, markdownReport(r, "ratios.svg"));
  if (publish) {
    // one report per tree variant: docs/benchmarks/sized.md, literal.md (docs/benchmarks.md cites them)
    const docs = join(REPO_ROOT, "docs", "benchmarks");
    const name = r.build.tree.shape;
    mkdirSync(docs, { recursive: true });
    const pub = [join(docs, `${name}.json`), join(docs, `${name}.svg`), join(docs, `${name}.md`)];
    writeFileSync(pub[0]!, `${JSON.stringify(r, null, 2)}\n`);
    writeFileSync(pub[1]!, svg);
    writeFileSync(pub[2]!, markdownReport(r, `${name}.svg`));
    files.published = pub.map((p) => relative(REPO_ROOT, p));
  }
  return files;
}
