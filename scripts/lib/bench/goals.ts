// The figures checked against the issue's goals and the plan's promises. Every verdict carries the
// measured value and, where it falls short (or cannot be judged at this scale), the reason in
// numbers taken from the same run.
import { fmtInt, fmtMs, fmtRatio } from "./stats.ts";
import type { BenchResult, GoalResult, QueryClassResult, VariantResult } from "./types.ts";

type ResultSoFar = Omit<BenchResult, "goals" | "promises" | "findings">;

const cls = (r: ResultSoFar, id: string): QueryClassResult | undefined => r.queries.find((q) => q.id === id);
const variant = (r: ResultSoFar, id: string, v: string): VariantResult | undefined => cls(r, id)?.variants.find((x) => x.id === v);
const p50 = (v: VariantResult | undefined) => v?.timings.median ?? Number.NaN;
const notRun = (id: string, goal: string, what = "query section not run"): GoalResult => ({ id, goal, status: "not measured", measured: "–", reason: what });

/** The partitioned statement's reads and planning, for reasons. */
function planNote(r: ResultSoFar, classId: string, v = "partitioned"): string {
  const x = variant(r, classId, v);
  if (!x) return "";
  const parts: string[] = [];
  if (x.partitionsInPlan !== undefined) parts.push(`${x.partitionsInPlan} partitions in the plan`);
  if (x.planning) parts.push(`planning ${fmtMs(x.planning.median)} ms of its ${fmtMs(x.timings.median)} ms`);
  return parts.join(", ");
}

/** 1/N of the rows: the ceiling of any speed-up over a full scan for a query that reads them all. */
function ceiling(r: ResultSoFar, classId: string): { n: number; text: string } | null {
  const c = cls(r, classId);
  if (!c?.matchedRows || !r.build.rows.legacy) return null;
  const n = r.build.rows.legacy / c.matchedRows;
  return { n, text: `the filter selects ${fmtInt(c.matchedRows)} of ${fmtInt(r.build.rows.legacy)} rows (1/${n.toFixed(0)})` };
}

/** Why a speed-up vs the legacy table stays below `min`, from the class's own figures. */
function shortfall(r: ResultSoFar, classId: string, x: number, min: number): string {
  const c = ceiling(r, classId);
  if (c && c.n < min) {
    return `unattainable at this shape: ${c.text}, so a statement that must read all of them can be at most about ${c.n.toFixed(0)}× faster than the legacy table's full scan.`;
  }
  const base = c ? `${c.text}, a ceiling of about ${c.n.toFixed(0)}×; ` : "";
  return `${base}what keeps it at ${fmtRatio(x)}: the partitioned statement's own cost (${planNote(r, classId)}) against a legacy full scan of only ` +
    `${fmtMs(p50(variant(r, classId, "legacy")))} ms${r.build.rows.legacy < 1_000_000 ? " (a small table: the ratio grows with it)" : ""}.`;
}

/** When even the legacy table misses an absolute goal on this machine, say so: the floor is the machine's. */
function baselineNote(r: ResultSoFar, classId: string, goalMs: number, why = ""): string {
  const l = variant(r, classId, "legacy");
  const rt = r.roundTrip ? ` The client round trip alone (select 1) is ${fmtMs(r.roundTrip.selectOne.median)} ms.` : "";
  if (l && p50(l) > goalMs) return ` Even the legacy table needs ${fmtMs(p50(l))} ms for the same request here${why}: on this machine the floor is above the goal.${rt}`;
  return rt;
}

export function evaluateGoals(r: ResultSoFar): GoalResult[] {
  const leaves = r.build.tree.leaves;
  const enoughLeaves = leaves >= 2000;
  const small = `the tree has ${fmtInt(leaves)} leaves at this scale (< 2,000): run the full scale`;
  const goals: GoalResult[] = [];

  const agg = cls(r, "plan_aggregate");
  {
    const goal = "Plan's example aggregate ≥50× faster than the legacy table as shipped";
    const x = agg?.speedupVsLegacy;
    if (!agg || x === null || x === undefined) goals.push(notRun("aggregate_vs_legacy", goal));
    else goals.push({
      id: "aggregate_vs_legacy", goal, status: x >= 50 ? "met" : "missed",
      measured: `${fmtRatio(x)} (${fmtMs(p50(variant(r, "plan_aggregate", "legacy")))} ms → ${fmtMs(p50(variant(r, "plan_aggregate", "partitioned")))} ms)`,
      reason: x >= 50 ? "" : shortfall(r, "plan_aggregate", x, 50),
    });
  }
  {
    const goal = "Plan's example aggregate ≥2× faster than the legacy table with a composite index";
    const x = agg?.speedupVsIndexed;
    if (!agg || x === null || x === undefined) goals.push(notRun("aggregate_vs_indexed", goal));
    else goals.push({
      id: "aggregate_vs_indexed", goal, status: x >= 2 ? "met" : "missed",
      measured: `${fmtRatio(x)} (${fmtMs(p50(variant(r, "plan_aggregate", "indexed")))} ms → ${fmtMs(p50(variant(r, "plan_aggregate", "partitioned")))} ms)`,
      reason: x >= 2 ? "" : `the composite index (program_id, site_id, created_at) already narrows the read to the same ${fmtInt(agg.matchedRows)} rows ` +
        `(planning ${fmtMs(variant(r, "plan_aggregate", "indexed")?.planning?.median)} ms); the partitioned table saves only the scattered heap visits and pays ${planNote(r, "plan_aggregate")}.`,
    });
  }

  const sub = variant(r, "submission_lookup", "partitioned");
  const subKeys = variant(r, "submission_lookup", "partitioned_site_keys");
  {
    const goal = "Submission lookup p50 ≤1 ms with ≥2,000 leaves";
    if (!sub) goals.push(notRun("submission_p50", goal));
    else {
      const ok = p50(sub) <= 1;
      goals.push({
        id: "submission_p50", goal, status: !enoughLeaves ? "not measured" : ok ? "met" : "missed",
        measured: `p50 ${fmtMs(p50(sub))} ms, p95 ${fmtMs(sub.timings.p95)} ms (routed view, ${fmtInt(leaves)} leaves)`,
        reason: !enoughLeaves ? small : ok ? "" :
          `the view finds the submission's program and site, then runs a statement keyed by program and site but not by month, which reads every month of the site` +
          `${subKeys ? ` (that statement alone: p50 ${fmtMs(p50(subKeys))} ms, ${planNote(r, "submission_lookup", "partitioned_site_keys")})` : ""}; ` +
          `the rest is the lateral join and the PL/pgSQL function with its dynamic statement.` +
          baselineNote(r, "submission_lookup", 1),
      });
    }
  }

  const upd = variant(r, "update_by_id", "partitioned");
  const updKeys = variant(r, "update_by_id", "partitioned_keys");
  {
    const goal = "Update by observation_id p50 ≤2 ms with ≥2,000 leaves";
    if (!upd) goals.push(notRun("update_p50", goal));
    else {
      const ok = p50(upd) <= 2;
      goals.push({
        id: "update_p50", goal, status: !enoughLeaves ? "not measured" : ok ? "met" : "missed",
        measured: `p50 ${fmtMs(p50(upd))} ms, p95 ${fmtMs(upd.timings.p95)} ms (update_observation_by_id, ${fmtInt(leaves)} leaves)`,
        reason: !enoughLeaves ? small : ok ? "" :
          `the RPC resolves the table, checks the column names, looks the keys up in partition_mgmt.observation_keys and runs the keyed UPDATE ` +
          `(a keyed UPDATE alone: p50 ${fmtMs(p50(updKeys))} ms, ${planNote(r, "update_by_id", "partitioned_keys")}).` +
          baselineNote(r, "update_by_id", 2, " (each UPDATE commits, and the commit waits for the WAL flush)"),
      });
    }
  }

  {
    const goal = "Planning of a fully keyed query ≤1 ms at 2,000 leaves";
    const lvl = r.planning?.levels.filter((l) => l.leaves >= 2000).sort((a, b) => a.leaves - b.leaves)[0];
    if (!lvl) {
      goals.push({
        id: "planning_keyed", goal, status: "not measured",
        measured: r.planning?.levels.length ? r.planning.levels.map((l) => `${fmtInt(l.leaves)} leaves: p50 ${fmtMs(l.keyed.planning.median)} ms`).join("; ") : "–",
        reason: r.planning?.error ?? (r.planning ? "the series stops below 2,000 leaves at this scale: run the full scale" : "planning section not run"),
      });
    } else {
      const ok = lvl.keyed.planning.median <= 1;
      goals.push({
        id: "planning_keyed", goal, status: ok ? "met" : "missed",
        measured: `p50 ${fmtMs(lvl.keyed.planning.median)} ms, p95 ${fmtMs(lvl.keyed.planning.p95)} ms at ${fmtInt(lvl.leaves)} leaves (cold connection: ${fmtMs(lvl.keyed.coldPlanningMs)} ms; id-only: ${fmtMs(lvl.idOnly?.planning.median)} ms)`,
        reason: ok ? "" : `plan-time pruning still costs ${fmtMs(lvl.keyed.planning.median)} ms at ${fmtInt(lvl.leaves)} leaves (see the planning table for the trend).`,
      });
    }
  }

  {
    const goal = "Insert throughput ≥70% of the legacy table";
    if (!r.inserts) goals.push(notRun("insert_share", goal, "insert section not run"));
    else {
      const shares = r.inserts.shares.filter((s) => Number.isFinite(s.share));
      const worst = Math.min(...shares.map((s) => s.share));
      const ok = shares.length > 0 && worst >= 0.7;
      const pl = r.inserts.profile.find((p) => p.label === "partitioned");
      const leaf = r.inserts.profile.find((p) => p.label !== "partitioned" && p.table === "partitioned");
      const lg = r.inserts.profile.find((p) => p.label === "legacy");
      const list = (p: typeof pl) => (p?.triggers ?? []).map((t) => `${t.name} ${fmtMs(t.ms)}`).join(", ");
      const missed = shares.filter((s) => s.share < 0.7).map((s) => `${s.commit} commits, ${s.connections} connection${s.connections > 1 ? "s" : ""}`);
      goals.push({
        id: "insert_share", goal, status: ok ? "met" : "missed",
        measured: shares.map((s) => `${s.commit}, ${s.connections} conn: ${(s.share * 100).toFixed(0)}%`).join("; "),
        reason: ok ? "" :
          `missed with ${missed.join(" and ")}. Per insert (EXPLAIN ANALYZE, ms): partitioned ${fmtMs(pl?.executionMs)} = triggers ${list(pl)} + routing and writes ${fmtMs(pl?.otherMs)}; ` +
          `legacy ${fmtMs(lg?.executionMs)} = ${list(lg)} + writes ${fmtMs(lg?.otherMs)}.` +
          (leaf && pl ? ` Straight into the leaf the same insert takes ${fmtMs(leaf.executionMs)} ms: tuple routing through the three levels costs about ${fmtMs(pl.executionMs - leaf.executionMs)} ms.` : "") +
          " The key-table trigger is the price of a unique observation_id across the tree; the partitioned leaf also maintains one more index (the 4-column primary key plus (program_id, site_id, created_at, observation_id))." +
          " With durable commits the WAL flush dominates and hides most of it.",
      });
    }
  }
  return goals;
}

/** The plan's "Performance Expectations" and "Success Criteria", as measured. */
export function evaluatePromises(r: ResultSoFar): GoalResult[] {
  const out: GoalResult[] = [];
  const abs = (id: string, classId: string, maxMs: number, text: string) => {
    const x = variant(r, classId, "partitioned");
    if (!x) return out.push(notRun(id, text));
    const ok = p50(x) <= maxMs;
    out.push({ id, goal: text, status: ok ? "met" : "missed", measured: `p50 ${fmtMs(p50(x))} ms, p95 ${fmtMs(x.timings.p95)} ms`, reason: ok ? "" : planNote(r, classId) });
  };
  abs("program_ms", "program_filter", 200, "Program filter: 50–200 ms");
  abs("site_ms", "site_filter", 100, "Site filter: 20–100 ms");
  abs("date_ms", "date_range", 500, "Date range: 100–500 ms");
  abs("submission_ms", "submission_lookup", 20, "Submission filter: 5–20 ms");
  abs("aggregate_ms", "plan_aggregate", 100, "Example aggregate: 10 s → 100 ms");
  const ratio = (id: string, classId: string, min: number, text: string, why?: string) => {
    const c = cls(r, classId);
    const x = c?.speedupVsLegacy;
    if (!c || x === null || x === undefined) return out.push(notRun(id, text));
    const ok = x >= min;
    out.push({ id, goal: text, status: ok ? "met" : "missed", measured: `${fmtRatio(x)} vs legacy, ${fmtRatio(c.speedupVsIndexed)} vs indexed`, reason: ok ? "" : why ?? shortfall(r, classId, x, min) });
  };
  ratio("program_50x_filter", "program_filter", 50, "program_id queries 50×+ faster: program aggregate");
  ratio("program_50x_page", "program_page", 50, "program_id queries 50×+ faster: program page (newest 100)",
    `the partitioned statement opens every leaf of the program (${planNote(r, "program_page")}): each leaf's index on (created_at desc, observation_id desc) ` +
    `lets the Merge Append stop after 100 rows, so what remains is planning and starting one index scan per leaf, a cost that grows with the program's months and sites.`);
  ratio("program_50x_range", "date_range", 50, "program_id queries 50×+ faster: program + one month");
  ratio("site_100x_filter", "site_filter", 100, "Site-specific queries 100×+ faster: site aggregate");
  ratio("site_100x_aggregate", "plan_aggregate", 100, "Site-specific queries 100×+ faster: plan's example aggregate");
  return out;
}

/** Where the engine is slow, stated with this run's numbers (only what the run measured). */
export function findings(r: ResultSoFar): string[] {
  const out: string[] = [];
  const full = cls(r, "full_scan");
  const jitOn = variant(r, "full_scan", "partitioned");
  const jitOff = variant(r, "full_scan", "partitioned_nojit");
  if (full && jitOn && jitOff && p50(jitOn) > 1.5 * p50(jitOff)) {
    out.push(`**JIT on a statement over the whole tree.** The full scan takes ${fmtMs(p50(jitOn))} ms with the server's JIT and ${fmtMs(p50(jitOff))} ms with \`set jit = off\`: ` +
      `the plan has one scan node per leaf (${fmtInt(jitOn.partitionsInPlan)} partitions) and JIT compiles each (legacy: ${fmtMs(p50(variant(r, "full_scan", "legacy")))} ms). ` +
      "Statements that read most of the tree (reports, exports) should run with jit off (or a higher jit_above_cost) for the roles that send them.");
  }
  const page = cls(r, "program_page");
  if (page && (page.speedupVsLegacy ?? 0) < 50) {
    out.push(`**The read API's default request (newest rows of a program) opens every leaf of the program**: ${fmtMs(p50(variant(r, "program_page", "partitioned")))} ms ` +
      `(${planNote(r, "program_page")}). The per-leaf index on (created_at desc, observation_id desc) makes the Merge Append stop after one page; ` +
      "the rest is planning and starting one scan per leaf. Passing a site or a date range (the API's optional filters) prunes it to a few leaves.");
  }
  const sp = r.build.sessionProbe;
  if (sp && sp.copySession.ddlMs > 3 * sp.freshSession.ddlMs) {
    out.push(`**A session that has written into every leaf gets slow at catalog changes.** After the copy (${fmtInt(r.build.tree.leaves)} leaves), a CREATE TABLE in the copy's session took ` +
      `${fmtMs(sp.copySession.ddlMs)} ms vs ${fmtMs(sp.freshSession.ddlMs)} ms in a fresh one; a single-row insert ${fmtMs(sp.copySession.insertMs)} ms vs ${fmtMs(sp.freshSession.insertMs)} ms. ` +
      "PostgreSQL compiles the two PL/pgSQL row triggers and the three foreign-key checks once per leaf and session, and every invalidation the session processes walks all of them. " +
      "Run the copy and the backfill in their own sessions, and let the pooler recycle app sessions (e.g. a server lifetime) rather than keep one for days.");
  }
  if (sp) {
    out.push(`**The first insert into a leaf in a new session costs ${fmtMs(sp.freshSession.firstInsertMs)} ms** (then ${fmtMs(sp.freshSession.insertMs)} ms): compiling that leaf's triggers and foreign-key checks.` +
      (r.inserts?.firstTouch.length ? ` In the insert warm-up, the first insert per site and connection averaged ${r.inserts.firstTouch.map((f) => `${fmtMs(f.meanMs)} ms (${f.table})`).join(", ")}.` : ""));
  }
  const cp = r.inserts?.copyProfile;
  if (cp?.length) {
    const p = cp.find((x) => x.label === "partitioned");
    const l = cp.find((x) => x.label === "legacy");
    if (p && l) {
      out.push(`**The copy (and the backfill) run at ${fmtInt(r.build.offlineCopy.rowsPerSecond)} rows/s**: ${fmtInt(p.executionMs * 1000)} µs per row into the tree vs ${fmtInt(l.executionMs * 1000)} µs into the legacy table; ` +
        `per row: ${p.triggers.map((t) => `${t.name} ${fmtInt(t.ms * 1000)} µs`).join(", ")}, routing and writes ${fmtInt(p.otherMs * 1000)} µs. ` +
        "The row triggers (company_id, key table) and the per-row foreign-key checks dominate: a copy could skip the company_id trigger for rows that already carry it and check foreign keys once per batch.");
    }
  }
  const lv = r.planning?.levels.filter((l) => l.idOnly).at(-1);
  if (lv?.idOnly) {
    out.push(`**Statements without the keys plan every leaf**: at ${fmtInt(lv.leaves)} leaves an id-only statement plans in ${fmtMs(lv.idOnly.planning.median)} ms warm and ` +
      `${fmtMs(lv.idOnly.coldPlanningMs)} ms as the first statement of a new session (a keyed one: ${fmtMs(lv.keyed.planning.median)} ms / ${fmtMs(lv.keyed.coldPlanningMs)} ms). ` +
      "Anything that reaches the table without program_id, site_id and created_at (ad-hoc .eq('observation_id') calls, joins on the id) pays this: use the routed RPCs.");
  }
  return out;
}
