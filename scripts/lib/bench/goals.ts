// The figures checked against the issue's goals and the plan's promises. Every verdict carries the
// measured value and, where it falls short (or cannot be judged at this scale), the reason in
// numbers taken from the same run.
import { POINT_CLASS_IDS, SCAN_CLASS_IDS, WHOLE_TABLE_CLASS_IDS } from "./queries.ts";
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

/** The tree in numbers: what a scan on it reads. */
function treeNote(r: ResultSoFar): string {
  const t = r.build.tree;
  const perSite = r.build.demo.petriPerSiteMonth * r.build.demo.months;
  return `${t.shape} tree: ${fmtInt(t.leaves)} leaves (${fmtInt(t.defaults)} DEFAULT), ${fmtInt(t.ownPrograms)} of ${fmtInt(t.programs)} programs and ${fmtInt(t.ownSites)} of ${fmtInt(t.sites)} sites with partitions of their own` +
    (t.shape === "sized" ? `; a site holds about ${fmtInt(perSite)} rows against the target of ${fmtInt(t.targetRowsPerLeaf)} per leaf` : "") +
    `; rows per leaf ${fmtInt(t.rowsPerLeaf.min)} / ${fmtInt(t.rowsPerLeaf.median)} / ${fmtInt(t.rowsPerLeaf.max)} (min / median / max)`;
}

/** Why a scan class is not faster than the indexed legacy table, from the class's own figures (the tree: treeNote). */
function scanCause(r: ResultSoFar, classId: string): string {
  const c = cls(r, classId);
  const ix = variant(r, classId, "indexed");
  const matched = c?.matchedRows !== undefined ? `the filter selects ${fmtInt(c.matchedRows)} of ${fmtInt(r.build.rows.legacy)} rows; ` : "";
  return `${matched}partitioned: ${planNote(r, classId)}; the composite index reads the same rows in ${fmtMs(p50(ix))} ms (planning ${fmtMs(ix?.planning?.median)} ms)`;
}

/** Partitioned p50 ÷ baseline p50 (how many times the baseline's time the partitioned table takes). */
function timesOf(r: ResultSoFar, classId: string, baseline: "legacy" | "indexed"): number {
  return p50(variant(r, classId, "partitioned")) / p50(variant(r, classId, baseline));
}

/** The verdict of a ratio goal: missed unless measured and within the bound. */
function verdict(ok: boolean, measured: number): GoalResult["status"] {
  return Number.isFinite(measured) && ok ? "met" : "missed";
}

export function evaluateGoals(r: ResultSoFar): GoalResult[] {
  const goals: GoalResult[] = [];
  const queriesRun = r.queries.length > 0;

  // the plan's scans: none slower than the indexed legacy table, four of them at least 1.5x faster
  {
    const goal = "No scan class slower than the legacy table with a composite index";
    if (!queriesRun) goals.push(notRun("scans_not_slower", goal));
    else {
      const xs = SCAN_CLASS_IDS.map((id) => ({ id, title: cls(r, id)?.title ?? id, x: cls(r, id)?.speedupVsIndexed ?? Number.NaN }));
      const slower = xs.filter((x) => !(x.x >= 1));
      goals.push({
        id: "scans_not_slower", goal, status: slower.length === 0 ? "met" : "missed",
        measured: xs.map((x) => `${x.title} ${fmtRatio(x.x)}`).join("; ") + " (indexed p50 ÷ partitioned p50)",
        reason: slower.length === 0 ? "" : slower.map((x) => `${x.title}: ${fmtMs(p50(variant(r, x.id, "indexed")))} ms indexed vs ${fmtMs(p50(variant(r, x.id, "partitioned")))} ms partitioned; ${scanCause(r, x.id)}.`).join(" ") +
          ` The ${treeNote(r)}.`,
      });
    }
  }
  for (const id of SCAN_CLASS_IDS.filter((x) => x !== "plan_aggregate")) {
    const c = cls(r, id);
    const goal = `${c?.title ?? id} ≥1.5× faster than the legacy table with a composite index`;
    if (!c) { goals.push(notRun(`scan_${id}`, goal)); continue; }
    const x = c.speedupVsIndexed ?? Number.NaN;
    goals.push({
      id: `scan_${id}`, goal, status: verdict(x >= 1.5, x),
      measured: `${fmtRatio(x)} (${fmtMs(p50(variant(r, id, "indexed")))} ms → ${fmtMs(p50(variant(r, id, "partitioned")))} ms)`,
      reason: x >= 1.5 ? "" : `${scanCause(r, id)}. The ${treeNote(r)}.`,
    });
  }

  // routed point access: within 1.5x of the indexed legacy table
  const routedStatement: Record<(typeof POINT_CLASS_IDS)[number], { extra: string; how: string }> = {
    fetch_by_id: { extra: "partitioned_keys", how: "get_observation_by_id looks the keys up in partition_mgmt.observation_keys, then runs a keyed SELECT in a dynamic statement" },
    submission_lookup: { extra: "partitioned_site_keys", how: "the view finds the submission's program and site, then runs a statement keyed by program and site (not by month) inside a PL/pgSQL function" },
    update_by_id: { extra: "partitioned_keys", how: "update_observation_by_id resolves the table, checks the column names, looks the keys up and runs the keyed UPDATE, returning the row as JSON" },
  };
  for (const id of POINT_CLASS_IDS) {
    const c = cls(r, id);
    const goal = `${c?.title ?? id} (routed) within 1.5× of the legacy table with a composite index`;
    if (!c) { goals.push(notRun(`point_${id}`, goal)); continue; }
    const x = timesOf(r, id, "indexed");
    const how = routedStatement[id];
    const keyed = variant(r, id, how.extra);
    goals.push({
      id: `point_${id}`, goal, status: verdict(x <= 1.5, x),
      measured: `${fmtMs(p50(variant(r, id, "partitioned")))} ms vs ${fmtMs(p50(variant(r, id, "indexed")))} ms indexed: ${x.toFixed(2)}× its time (p95 ${fmtMs(variant(r, id, "partitioned")?.timings.p95)} ms)`,
      reason: x <= 1.5 ? "" : `${how.how}; that statement alone takes ${fmtMs(p50(keyed))} ms (${planNote(r, id, how.extra)}), the rest is the function around it.` +
        baselineNote(r, id, Number.POSITIVE_INFINITY),
    });
  }

  // statements over the whole table: within 1.5x of the legacy table
  for (const id of WHOLE_TABLE_CLASS_IDS) {
    const c = cls(r, id);
    const goal = `${c?.title ?? id} within 1.5× of the legacy table`;
    if (!c) { goals.push(notRun(`whole_${id}`, goal)); continue; }
    const x = timesOf(r, id, "legacy");
    const noJit = variant(r, id, "partitioned_nojit");
    goals.push({
      id: `whole_${id}`, goal, status: verdict(x <= 1.5, x),
      measured: `${fmtMs(p50(variant(r, id, "partitioned")))} ms vs ${fmtMs(p50(variant(r, id, "legacy")))} ms legacy: ${x.toFixed(2)}× its time`,
      reason: x <= 1.5 ? "" : `the plan has one scan per leaf (${planNote(r, id)}); ` +
        (!noJit ? "" : p50(noJit) < (2 / 3) * p50(variant(r, id, "partitioned"))
          ? `with JIT off for the statement it takes ${fmtMs(p50(noJit))} ms: JIT (jit = ${r.machine.settings.jit ?? "?"} on the server) compiles every leaf's scan again. `
          : `JIT is not the cause (JIT off: ${fmtMs(p50(noJit))} ms). `) + `The ${treeNote(r)}.`,
    });
  }

  // id-only statements as PostgREST sends them: prepared, reused with other ids
  for (const statement of ["select", "update"] as const) {
    const goal = `Id-only ${statement.toUpperCase()} sent prepared (as PostgREST sends it) on the partitioned table: p50 ≤5 ms`;
    const run = r.prepared?.runs.find((x) => x.table === "partitioned" && x.statement === statement);
    if (!r.prepared) { goals.push(notRun(`prepared_${statement}`, goal)); continue; }
    if (!run || run.error) {
      goals.push({ id: `prepared_${statement}`, goal, status: "missed", measured: "failed", reason: run?.error ?? "no run recorded" });
      continue;
    }
    const legacy = r.prepared.runs.find((x) => x.table === "legacy" && x.statement === statement);
    const ok = run.timings.median <= 5;
    const legacyMs = legacy?.timings.median ?? Number.NaN;
    const lockBound = run.relationLocks > 10 * (legacy?.relationLocks ?? 1);
    const cause = [
      lockBound
        ? `without the partition keys nothing is pruned: ${run.genericPlans > 0 ? "the generic plan" : "every custom plan"} holds every leaf, and each execution locks ${fmtInt(run.relationLocks)} relations ` +
          `(${fmtInt(run.sharedLockSlots)} of them in the shared lock table; a custom plan would also lock every index: ${fmtInt(r.build.tree.lockBudget.keylessLocks)} by partition_mgmt.lock_budget()) and probes the id index of each of ${fmtInt(r.build.tree.leaves)} leaves`
        : `the locks are not the cause here (${fmtInt(run.relationLocks)} relation locks vs ${fmtInt(legacy?.relationLocks)} on the legacy table: ${fmtInt(r.build.tree.leaves)} leaves)`,
      `the legacy table: p50 ${fmtMs(legacyMs)} ms with ${fmtInt(legacy?.relationLocks)} locks` +
        (legacyMs > 2.5 ? ` (${statement === "update" ? "each UPDATE commits and waits for the WAL flush: " : ""}on this machine the floor is ${fmtMs(legacyMs)} ms)` : ""),
    ];
    goals.push({
      id: `prepared_${statement}`, goal, status: verdict(ok, run.timings.median),
      measured: `p50 ${fmtMs(run.timings.median)} ms, p95 ${fmtMs(run.timings.p95)} ms; one execution holds ${fmtInt(run.relationLocks)} relation locks (${fmtInt(run.sharedLockSlots)} in the shared lock table); ` +
        `${run.genericPlans} generic / ${run.customPlans} custom plans`,
      reason: ok ? "" : `${cause.join("; ")}.${lockBound ? " Use the routed RPCs (get_observation_by_id, update_observation_by_id)." : ""}`,
    });
  }

  // the online migration
  const m = r.migration;
  const on = m.online && "swapLockMs" in m.online ? m.online : undefined;
  const failed = m.status === "skipped" ? undefined : m.online && "error" in m.online ? m.online.error : m.reason;
  const migrationGoal = (id: string, goal: string, f: () => GoalResult) => {
    if (m.status === "skipped") goals.push(notRun(id, goal, "migration section not run"));
    else if (!on) goals.push({ id, goal, status: "missed", measured: "failed", reason: failed ?? "the online migration did not finish" });
    else goals.push(f());
  };
  migrationGoal("swap_hold", "Swap holds ACCESS EXCLUSIVE ≤100 ms, with the app writing", () => {
    const o = on!;
    const ok = o.swapLockMs <= 100;
    return {
      id: "swap_hold", goal: "Swap holds ACCESS EXCLUSIVE ≤100 ms, with the app writing", status: verdict(ok, o.swapLockMs),
      measured: `${fmtMs(o.swapLockMs)} ms (${o.swapAttempts} attempt${o.swapAttempts === 1 ? "" : "s"}; ${fmtInt(o.treeLeaves)} leaves in the ${m.table} tree)`,
      reason: ok ? "" : `swap_tables' catalog work under the lock (renames, policies, grants, triggers, views) on a tree of ${fmtInt(o.treeLeaves)} leaves` +
        (m.app ? `; ${fmtInt(m.app.swapWindow.ops)} app statements overlapped the swap, the slowest ${fmtMs(m.app.swapWindow.max)} ms` : "") + ".",
    };
  });
  migrationGoal("rollback_hold", "Rollback holds ACCESS EXCLUSIVE ≤100 ms, with the app writing", () => {
    const o = on!;
    const goal = "Rollback holds ACCESS EXCLUSIVE ≤100 ms, with the app writing";
    if (o.rollbackLockMs === undefined && o.rollbackError === undefined) return notRun("rollback_hold", goal, "this result predates the rollback measurement");
    if (o.rollbackError !== undefined || !Number.isFinite(o.rollbackLockMs)) {
      return { id: "rollback_hold", goal, status: "missed", measured: "failed", reason: o.rollbackError ?? "no 'swapped-back' entry in partition_mgmt.migration_log" };
    }
    const ms = o.rollbackLockMs!;
    const ok = ms <= 100;
    const w = m.app?.phases.find((p) => p.name === "rollback");
    return {
      id: "rollback_hold", goal, status: verdict(ok, ms),
      measured: `${fmtMs(ms)} ms (${o.rollbackAttempts} attempt${o.rollbackAttempts === 1 ? "" : "s"}; ${fmtInt(o.treeLeaves)} leaves in the ${m.table} tree)`,
      reason: ok ? "" : `rollback_migration's catalog work under the lock on a tree of ${fmtInt(o.treeLeaves)} leaves` +
        (w ? `; ${fmtInt(w.appOps)} app statements overlapped the rollback, the slowest ${fmtMs(w.appMaxMs)} ms` : "") + ".",
    };
  });
  migrationGoal("app_wait", "No app statement waits more than 1 s at any point of the online migration (prepare, sync, backfill, validate, swap, rollback)", () => {
    const a = m.app;
    const o = on!;
    const goal = "No app statement waits more than 1 s at any point of the online migration (prepare, sync, backfill, validate, swap, rollback)";
    if (!a) return { id: "app_wait", goal, status: "missed", measured: "–", reason: "no app statements recorded" };
    const ok = a.maxWaitMs <= 1000 && a.errors === 0;
    const worst = [...a.phases].sort((x, y) => y.appMaxMs - x.appMaxMs)[0];
    return {
      id: "app_wait", goal, status: verdict(ok, a.maxWaitMs),
      measured: `longest ${fmtMs(a.maxWaitMs)} ms (${a.phases.map((p) => `${p.name} ${fmtMs(p.appMaxMs)}`).join(", ")} ms); ${a.errors} app errors`,
      reason: ok ? "" : [
        a.maxWaitMs > 1000 && worst ? `the longest app statement overlapped the ${worst.name} phase (${worst.seconds.toFixed(1)} s; ${fmtInt(worst.appOver1s)} of its ${fmtInt(worst.appOps)} app statements took more than 1 s; app p50 before the migration ${fmtMs(a.baseline.p50)} ms)` +
          (worst.name === "backfill" ? `; the backfill ran ${o.batches} batches of 10,000 rows in ${o.backfillSeconds.toFixed(1)} s, ${(o.backfillSeconds / Math.max(1, o.batches)).toFixed(2)} s on average and ${o.slowestBatchSeconds.toFixed(2)} s the slowest, ` +
            `each holding FOR SHARE on its rows until it commits (an app update or delete of one of them waits for the batch)` +
            (worst.appMaxMs / 1000 > o.slowestBatchSeconds ? `; the longest wait is longer than the slowest batch, so more than one batch or something else held it (load average ${r.machine.loadAverageEnd?.join(" / ") ?? "?"} at the end of the run)` : "") : "") : "",
        a.errors > 0 ? `${a.errors} app statements failed (first: ${a.firstError ?? "?"})` : "",
      ].filter(Boolean).join("; ") + ".",
    };
  });
  migrationGoal("backfill_share", "Online backfill with the app writing ≥50% of the offline copy's rows/s", () => {
    const o = on!;
    const goal = "Online backfill with the app writing ≥50% of the offline copy's rows/s";
    const off = m.offline && "rowsPerSecond" in m.offline ? m.offline : undefined;
    if (!off) return { id: "backfill_share", goal, status: "missed", measured: `online ${fmtInt(o.backfillRowsPerSecond)} rows/s; offline failed`, reason: m.offline && "error" in m.offline ? m.offline.error : "no offline copy" };
    const share = o.backfillRowsPerSecond / off.rowsPerSecond;
    const during = m.app?.phases.find((p) => p.name === "backfill");
    return {
      id: "backfill_share", goal, status: verdict(share >= 0.5, share),
      measured: `${(share * 100).toFixed(0)}% (${fmtInt(o.backfillRowsPerSecond)} vs ${fmtInt(off.rowsPerSecond)} rows/s)`,
      reason: share >= 0.5 ? "" : `${o.batches} keyset batches of 10,000 rows (${(o.backfillSeconds / Math.max(1, o.batches)).toFixed(2)} s each; each batch locks its rows FOR SHARE, commits and finds its place again) ` +
        `while the app ran ${fmtInt(during?.appOps)} statements through the sync trigger; the offline copy is one INSERT … SELECT with the table locked.`,
    };
  });

  {
    const goal = "Maintenance run (maintenance_runner(), as the nightly job) ≤10 s on the built trees, finished";
    const mt = r.maintenance;
    if (!mt) goals.push(notRun("maintenance", goal, "maintenance section not run"));
    else {
      const ok = !mt.error && !mt.unfinished && mt.seconds <= 10;
      const slow = [...mt.steps].sort((a, b) => b.seconds - a.seconds).slice(0, 3);
      goals.push({
        id: "maintenance", goal, status: verdict(ok, mt.seconds),
        measured: `${mt.seconds.toFixed(1)} s (${fmtInt(r.build.tree.allTablesLeaves)} leaves in all)`,
        reason: ok ? "" : mt.error ?? `${mt.unfinished ? `unfinished: ${mt.unfinished}; ` : ""}slowest steps: ${slow.map((x) => `${x.table ?? "–"} ${x.action} ${x.seconds.toFixed(1)} s`).join(", ")}.`,
      });
    }
  }

  {
    const goal = "Insert throughput ≥80% of the legacy table (durable commits, 1 and 4 connections)";
    if (!r.inserts) goals.push(notRun("insert_share", goal, "insert section not run"));
    else {
      const durable = r.inserts.shares.filter((s) => s.commit === "durable");
      const worst = Math.min(...durable.map((s) => s.share));
      const ok = durable.length > 0 && worst >= 0.8;
      const pl = r.inserts.profile.find((p) => p.label === "partitioned");
      const leaf = r.inserts.profile.find((p) => p.label !== "partitioned" && p.table === "partitioned");
      const lg = r.inserts.profile.find((p) => p.label === "legacy");
      const list = (p: typeof pl) => (p?.triggers ?? []).map((t) => `${t.name} ${fmtMs(t.ms)}`).join(", ");
      const missed = durable.filter((s) => !(s.share >= 0.8)).map((s) => `${s.connections} connection${s.connections > 1 ? "s" : ""}`);
      goals.push({
        id: "insert_share", goal, status: verdict(ok, worst),
        measured: r.inserts.shares.map((s) => `${s.commit}, ${s.connections} conn: ${(s.share * 100).toFixed(0)}%`).join("; ") + " (async: the CPU cost alone, not judged)",
        reason: ok ? "" :
          `missed with ${missed.join(" and ")}. Per insert (EXPLAIN ANALYZE, ms): partitioned ${fmtMs(pl?.executionMs)} = triggers ${list(pl)} + routing and writes ${fmtMs(pl?.otherMs)}; ` +
          `legacy ${fmtMs(lg?.executionMs)} = ${list(lg)} + writes ${fmtMs(lg?.otherMs)}.` +
          (leaf && pl ? ` Straight into the leaf the same insert takes ${fmtMs(leaf.executionMs)} ms: tuple routing costs about ${fmtMs(pl.executionMs - leaf.executionMs)} ms.` : "") +
          " The key-table trigger is the price of a unique observation_id across the tree.",
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
  if (page && (page.speedupVsLegacy ?? 0) < 50 && (variant(r, "program_page", "partitioned")?.partitionsInPlan ?? 0) > 1) {
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
