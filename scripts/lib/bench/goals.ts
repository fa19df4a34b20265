// The figures checked against the issue's goals and the plan's promises. Every verdict carries the
// measured value and, where it falls short (or cannot be judged at this scale), the reason in
// numbers taken from the same run.
import { POINT_CLASS_IDS, SCAN_CLASS_IDS, WHOLE_TABLE_CLASS_IDS } from "./queries.ts";
import { fmtInt, fmtMs, fmtRatio } from "./stats.ts";
import { evaluate, failed, type Goal, isUnjudged, notMeasured, type Unjudged } from "./goal-table.ts";
import type { BenchResult, GoalResult, MigrationResult, QueryClassResult, VariantResult } from "./types.ts";

/** A run's measured result, before its goals are judged. */
export type ResultSoFar = Omit<BenchResult, "goals" | "promises" | "findings">;

const cls = (r: ResultSoFar, id: string): QueryClassResult | undefined => r.queries.find((q) => q.id === id);
const variant = (r: ResultSoFar, id: string, v: string): VariantResult | undefined => cls(r, id)?.variants.find((x) => x.id === v);
const p50 = (v: VariantResult | undefined) => v?.timings.median ?? Number.NaN;

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

const QUERIES_NOT_RUN = notMeasured("query section not run");

/** The scan classes judged against the indexed legacy table one by one (the plan's example aggregate is a promise). */
const JUDGED_SCANS = SCAN_CLASS_IDS.filter((x) => x !== "plan_aggregate");

/**
 * How a routed RPC reaches its row: its keyed statement (a variant of the class) and what it does
 * around it, worded as published (test/cli/bench-goals.test.ts gives the published runs back word
 * for word); runs that measured the parts alone (queries.ts, variants part_*) add each part's share.
 */
const ROUTED_STATEMENT: Record<(typeof POINT_CLASS_IDS)[number], { extra: string; how: string; rpc: string }> = {
  fetch_by_id: { extra: "partitioned_keys", rpc: "get_observation_by_id",
    how: "get_observation_by_id looks the keys up in partition_mgmt.observation_keys, then runs a keyed SELECT in a dynamic statement" },
  submission_lookup: { extra: "partitioned_site_keys", rpc: "the view",
    how: "the view finds the submission's program and site, then runs a statement keyed by program and site (not by month) inside a PL/pgSQL function" },
  update_by_id: { extra: "partitioned_keys", rpc: "update_observation_by_id",
    how: "update_observation_by_id resolves the table, checks the column names, looks the keys up and runs the keyed UPDATE, returning the row as JSON" },
};

/**
 * What each part of a routed call costs, from the p50s of its parts run as statements of their
 * own: each part's own share is its time less the round trip (select 1), the rest is what lies
 * between the parts (the dispatch, the function's plan handling).
 */
function routedParts(r: ResultSoFar, id: (typeof POINT_CLASS_IDS)[number]): string {
  const rt = r.roundTrip?.selectOne.median;
  const whole = p50(variant(r, id, "partitioned"));
  const fn = p50(variant(r, id, "part_function"));
  const route = p50(variant(r, id, "part_route"));
  const keyed = variant(r, id, id === "fetch_by_id" ? "part_json" : ROUTED_STATEMENT[id].extra);
  if (rt === undefined || !Number.isFinite(fn) || !keyed) return "";
  const own = (ms: number) => fmtMs(Math.max(0, ms - rt));
  const parts = [`round trip ${fmtMs(rt)} ms`];
  if (Number.isFinite(route)) parts.push(`key lookup (route()) ${own(route)} ms`);
  parts.push(`keyed statement ${own(p50(keyed))} ms (planning ${fmtMs(keyed.planning?.median)} ms)`);
  const inside = fn - rt - (Number.isFinite(route) ? route - rt : 0) - (p50(keyed) - rt);
  parts.push(`the generated function around them ${fmtMs(Math.max(0, inside))} ms`);
  parts.push(`${ROUTED_STATEMENT[id].rpc} around the function ${fmtMs(Math.max(0, whole - fn))} ms`);
  return ` Of its ${fmtMs(whole)} ms (the public function calls the table's generated function by name, which calls route() ` +
    `and runs the keyed statement): ${parts.join(", ")} (p50s of each part run alone).`;
}

const scanSpeedups = (r: ResultSoFar) => SCAN_CLASS_IDS.map((id) => ({ id, title: cls(r, id)?.title ?? id, x: cls(r, id)?.speedupVsIndexed ?? Number.NaN }));

type OnlineMigration = Exclude<NonNullable<MigrationResult["online"]>, { error: string }>;

/** The online migration's figures, or why there are none (section skipped, migration failed). */
function onlineMigration(r: ResultSoFar): OnlineMigration | Unjudged {
  const m = r.migration;
  if (m.status === "skipped") return notMeasured("migration section not run");
  const on = m.online && "swapLockMs" in m.online ? m.online : undefined;
  if (!on) return failed((m.online && "error" in m.online ? m.online.error : m.reason) ?? "the online migration did not finish");
  return on;
}
/** The online migration's figures, where a goal judged on them asks for the words around them. */
const online = (r: ResultSoFar) => onlineMigration(r) as OnlineMigration;

/** The prepared id-only runs of one statement on both tables, or why there are none. */
function preparedRuns(r: ResultSoFar, statement: "select" | "update") {
  const run = r.prepared?.runs.find((x) => x.table === "partitioned" && x.statement === statement);
  const legacy = r.prepared?.runs.find((x) => x.table === "legacy" && x.statement === statement);
  return { run: run!, legacy };
}

/** The issue's goals, one object each, in the report's order. */
export const GOALS: readonly Goal<ResultSoFar>[] = [
  // the plan's scans: none slower than the indexed legacy table, four of them at least 1.5x faster
  {
    id: "scans_not_slower",
    goal: "No scan class slower than the legacy table with a composite index",
    targets: [{ figure: "slowestSpeedup", atLeast: 1 }],
    figures: (r) => (r.queries.length === 0 ? QUERIES_NOT_RUN : { slowestSpeedup: Math.min(...scanSpeedups(r).map((x) => x.x)) }),
    measured: (r) => scanSpeedups(r).map((x) => `${x.title} ${fmtRatio(x.x)}`).join("; ") + " (indexed p50 ÷ partitioned p50)",
    missed: (r) => scanSpeedups(r).filter((x) => !(x.x >= 1))
      .map((x) => `${x.title}: ${fmtMs(p50(variant(r, x.id, "indexed")))} ms indexed vs ${fmtMs(p50(variant(r, x.id, "partitioned")))} ms partitioned; ${scanCause(r, x.id)}.`).join(" ") +
      ` The ${treeNote(r)}.`,
  },
  ...JUDGED_SCANS.map((id): Goal<ResultSoFar> => ({
    id: `scan_${id}`,
    goal: (r) => `${cls(r, id)?.title ?? id} ≥1.5× faster than the legacy table with a composite index`,
    targets: [{ figure: "speedup", atLeast: 1.5 }],
    figures: (r) => (!cls(r, id) ? QUERIES_NOT_RUN : { speedup: cls(r, id)!.speedupVsIndexed ?? Number.NaN }),
    measured: (r, f) => `${fmtRatio(f.speedup)} (${fmtMs(p50(variant(r, id, "indexed")))} ms → ${fmtMs(p50(variant(r, id, "partitioned")))} ms)`,
    missed: (r) => `${scanCause(r, id)}. The ${treeNote(r)}.`,
  })),

  // routed point access: within 1.5x of the indexed legacy table
  ...POINT_CLASS_IDS.map((id): Goal<ResultSoFar> => ({
    id: `point_${id}`,
    goal: (r) => `${cls(r, id)?.title ?? id} (routed) within 1.5× of the legacy table with a composite index`,
    targets: [{ figure: "times", atMost: 1.5 }],
    figures: (r) => (!cls(r, id) ? QUERIES_NOT_RUN : { times: timesOf(r, id, "indexed") }),
    measured: (r, f) => `${fmtMs(p50(variant(r, id, "partitioned")))} ms vs ${fmtMs(p50(variant(r, id, "indexed")))} ms indexed: ${f.times!.toFixed(2)}× its time (p95 ${fmtMs(variant(r, id, "partitioned")?.timings.p95)} ms)`,
    missed: (r) => {
      const how = ROUTED_STATEMENT[id];
      return `${how.how}; that statement alone takes ${fmtMs(p50(variant(r, id, how.extra)))} ms (${planNote(r, id, how.extra)}), the rest is the function around it.` +
        routedParts(r, id) + baselineNote(r, id, Number.POSITIVE_INFINITY);
    },
  })),

  // statements over the whole table: within 1.5x of the legacy table
  ...WHOLE_TABLE_CLASS_IDS.map((id): Goal<ResultSoFar> => ({
    id: `whole_${id}`,
    goal: (r) => `${cls(r, id)?.title ?? id} within 1.5× of the legacy table`,
    targets: [{ figure: "times", atMost: 1.5 }],
    figures: (r) => (!cls(r, id) ? QUERIES_NOT_RUN : { times: timesOf(r, id, "legacy") }),
    measured: (r, f) => `${fmtMs(p50(variant(r, id, "partitioned")))} ms vs ${fmtMs(p50(variant(r, id, "legacy")))} ms legacy: ${f.times!.toFixed(2)}× its time`,
    missed: (r) => {
      const noJit = variant(r, id, "partitioned_nojit");
      return `the plan has one scan per leaf (${planNote(r, id)}); ` +
        (!noJit ? "" : p50(noJit) < (2 / 3) * p50(variant(r, id, "partitioned"))
          ? `with JIT off for the statement it takes ${fmtMs(p50(noJit))} ms: JIT (jit = ${r.machine.settings.jit ?? "?"} on the server) compiles every leaf's scan again. `
          : `JIT is not the cause (JIT off: ${fmtMs(p50(noJit))} ms). `) + `The ${treeNote(r)}.`;
    },
  })),

  // id-only statements as PostgREST sends them: prepared, reused with other ids
  ...(["select", "update"] as const).map((statement): Goal<ResultSoFar> => ({
    id: `prepared_${statement}`,
    goal: `Id-only ${statement.toUpperCase()} sent prepared (as PostgREST sends it) on the partitioned table: p50 ≤5 ms`,
    targets: [{ figure: "p50Ms", atMost: 5 }],
    figures: (r) => {
      if (!r.prepared) return QUERIES_NOT_RUN;
      const { run } = preparedRuns(r, statement);
      if (!run || run.error) return failed(run?.error ?? "no run recorded");
      return { p50Ms: run.timings.median };
    },
    measured: (r) => {
      const { run } = preparedRuns(r, statement);
      return `p50 ${fmtMs(run.timings.median)} ms, p95 ${fmtMs(run.timings.p95)} ms; one execution holds ${fmtInt(run.relationLocks)} relation locks (${fmtInt(run.sharedLockSlots)} in the shared lock table); ` +
        `${run.genericPlans} generic / ${run.customPlans} custom plans`;
    },
    missed: (r) => {
      const { run, legacy } = preparedRuns(r, statement);
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
      return `${cause.join("; ")}.${lockBound ? " Use the routed RPCs (get_observation_by_id, update_observation_by_id)." : ""}`;
    },
  })),

  // the online migration
  {
    id: "swap_hold",
    goal: "Swap holds ACCESS EXCLUSIVE ≤100 ms, with the app writing",
    targets: [{ figure: "lockMs", atMost: 100 }],
    figures: (r) => {
      const o = onlineMigration(r);
      return isUnjudged(o) ? o : { lockMs: o.swapLockMs };
    },
    measured: (r, f) => {
      const o = online(r);
      return `${fmtMs(f.lockMs)} ms (${o.swapAttempts} attempt${o.swapAttempts === 1 ? "" : "s"}; ${fmtInt(o.treeLeaves)} leaves in the ${r.migration.table} tree)`;
    },
    missed: (r) => {
      const o = online(r);
      const app = r.migration.app;
      return `swap_tables' catalog work under the lock (renames, policies, grants, triggers, views) on a tree of ${fmtInt(o.treeLeaves)} leaves` +
        (app ? `; ${fmtInt(app.swapWindow.ops)} app statements overlapped the swap, the slowest ${fmtMs(app.swapWindow.max)} ms` : "") + ".";
    },
  },
  {
    id: "rollback_hold",
    goal: "Rollback holds ACCESS EXCLUSIVE ≤100 ms, with the app writing",
    targets: [{ figure: "lockMs", atMost: 100 }],
    figures: (r) => {
      const o = onlineMigration(r);
      if (isUnjudged(o)) return o;
      if (o.rollbackLockMs === undefined && o.rollbackError === undefined) return notMeasured("this result predates the rollback measurement");
      if (o.rollbackError !== undefined || !Number.isFinite(o.rollbackLockMs)) {
        return failed(o.rollbackError ?? "no 'swapped-back' entry in partition_mgmt.migration_log");
      }
      return { lockMs: o.rollbackLockMs! };
    },
    measured: (r, f) => {
      const o = online(r);
      return `${fmtMs(f.lockMs)} ms (${o.rollbackAttempts} attempt${o.rollbackAttempts === 1 ? "" : "s"}; ${fmtInt(o.treeLeaves)} leaves in the ${r.migration.table} tree)`;
    },
    missed: (r) => {
      const o = online(r);
      const w = r.migration.app?.phases.find((p) => p.name === "rollback");
      return `rollback_migration's catalog work under the lock on a tree of ${fmtInt(o.treeLeaves)} leaves` +
        (w ? `; ${fmtInt(w.appOps)} app statements overlapped the rollback, the slowest ${fmtMs(w.appMaxMs)} ms` : "") + ".";
    },
  },
  {
    id: "app_wait",
    goal: "No app statement waits more than 1 s at any point of the online migration (prepare, sync, backfill, validate, swap, rollback)",
    targets: [{ figure: "maxWaitMs", atMost: 1000 }, { figure: "errors", atMost: 0 }],
    figures: (r) => {
      const o = onlineMigration(r);
      if (isUnjudged(o)) return o;
      const a = r.migration.app;
      if (!a) return failed("no app statements recorded", "–");
      return { maxWaitMs: a.maxWaitMs, errors: a.errors };
    },
    measured: (r) => {
      const a = r.migration.app!;
      return `longest ${fmtMs(a.maxWaitMs)} ms (${a.phases.map((p) => `${p.name} ${fmtMs(p.appMaxMs)}`).join(", ")} ms); ${a.errors} app errors`;
    },
    missed: (r) => {
      const a = r.migration.app!;
      const o = online(r);
      const worst = [...a.phases].sort((x, y) => y.appMaxMs - x.appMaxMs)[0];
      return [
        a.maxWaitMs > 1000 && worst ? `the longest app statement overlapped the ${worst.name} phase (${worst.seconds.toFixed(1)} s; ${fmtInt(worst.appOver1s)} of its ${fmtInt(worst.appOps)} app statements took more than 1 s; app p50 before the migration ${fmtMs(a.baseline.p50)} ms)` +
          (worst.name === "backfill" ? `; the backfill ran ${o.batches} batches of 10,000 rows in ${o.backfillSeconds.toFixed(1)} s, ${(o.backfillSeconds / Math.max(1, o.batches)).toFixed(2)} s on average and ${o.slowestBatchSeconds.toFixed(2)} s the slowest, ` +
            `each holding FOR SHARE on its rows until it commits (an app update or delete of one of them waits for the batch)` +
            (worst.appMaxMs / 1000 > o.slowestBatchSeconds ? `; the longest wait is longer than the slowest batch, so more than one batch or something else held it (load average ${r.machine.loadAverageEnd?.join(" / ") ?? "?"} at the end of the run)` : "") : "") : "",
        a.errors > 0 ? `${a.errors} app statements failed (first: ${a.firstError ?? "?"})` : "",
      ].filter(Boolean).join("; ") + ".";
    },
  },
  {
    id: "backfill_share",
    goal: "Online backfill with the app writing ≥50% of the offline copy's rows/s",
    targets: [{ figure: "share", atLeast: 0.5 }],
    figures: (r) => {
      const o = onlineMigration(r);
      if (isUnjudged(o)) return o;
      const m = r.migration;
      const off = m.offline && "rowsPerSecond" in m.offline ? m.offline : undefined;
      if (!off) return failed(m.offline && "error" in m.offline ? m.offline.error : "no offline copy", `online ${fmtInt(o.backfillRowsPerSecond)} rows/s; offline failed`);
      return { share: o.backfillRowsPerSecond / off.rowsPerSecond, online: o.backfillRowsPerSecond, offline: off.rowsPerSecond };
    },
    measured: (_r, f) => `${(f.share! * 100).toFixed(0)}% (${fmtInt(f.online)} vs ${fmtInt(f.offline)} rows/s)`,
    missed: (r) => {
      const o = online(r);
      const during = r.migration.app?.phases.find((p) => p.name === "backfill");
      return `${o.batches} keyset batches of 10,000 rows (${(o.backfillSeconds / Math.max(1, o.batches)).toFixed(2)} s each; each batch locks its rows FOR SHARE, commits and finds its place again) ` +
        `while the app ran ${fmtInt(during?.appOps)} statements through the sync trigger; the offline copy is one INSERT … SELECT with the table locked.`;
    },
  },

  {
    id: "maintenance",
    goal: "Maintenance run (maintenance_runner(), as the nightly job) ≤10 s on the built trees, finished",
    // `errored` and `unfinished` are 1 when the run raised an error or stopped before the end
    targets: [{ figure: "seconds", atMost: 10 }, { figure: "errored", atMost: 0 }, { figure: "unfinished", atMost: 0 }],
    figures: (r) => {
      const mt = r.maintenance;
      if (!mt) return notMeasured("maintenance section not run");
      return { seconds: mt.seconds, errored: mt.error ? 1 : 0, unfinished: mt.unfinished ? 1 : 0 };
    },
    measured: (r, f) => `${f.seconds!.toFixed(1)} s (${fmtInt(r.build.tree.allTablesLeaves)} leaves in all)`,
    missed: (r) => {
      const mt = r.maintenance!;
      const slow = [...mt.steps].sort((a, b) => b.seconds - a.seconds).slice(0, 3);
      return mt.error ?? `${mt.unfinished ? `unfinished: ${mt.unfinished}; ` : ""}slowest steps: ${slow.map((x) => `${x.table ?? "–"} ${x.action} ${x.seconds.toFixed(1)} s`).join(", ")}.`;
    },
  },

  {
    id: "insert_share",
    goal: "Insert throughput ≥80% of the legacy table (durable commits, 1 and 4 connections)",
    // the worst durable share; with no durable run it is Infinity, which meets no target
    targets: [{ figure: "worstDurableShare", atLeast: 0.8 }],
    figures: (r) => {
      if (!r.inserts) return notMeasured("insert section not run");
      return { worstDurableShare: Math.min(...r.inserts.shares.filter((s) => s.commit === "durable").map((s) => s.share)) };
    },
    measured: (r) => r.inserts!.shares.map((s) => `${s.commit}, ${s.connections} conn: ${(s.share * 100).toFixed(0)}%`).join("; ") + " (async: the CPU cost alone, not judged)",
    missed: (r) => {
      const ins = r.inserts!;
      const pl = ins.profile.find((p) => p.label === "partitioned");
      const leaf = ins.profile.find((p) => p.label !== "partitioned" && p.table === "partitioned");
      const lg = ins.profile.find((p) => p.label === "legacy");
      const list = (p: typeof pl) => (p?.triggers ?? []).map((t) => `${t.name} ${fmtMs(t.ms)}`).join(", ");
      const missed = ins.shares.filter((s) => s.commit === "durable" && !(s.share >= 0.8)).map((s) => `${s.connections} connection${s.connections > 1 ? "s" : ""}`);
      return `missed with ${missed.join(" and ")}. Per insert (EXPLAIN ANALYZE, ms): partitioned ${fmtMs(pl?.executionMs)} = triggers ${list(pl)} + routing and writes ${fmtMs(pl?.otherMs)}; ` +
        `legacy ${fmtMs(lg?.executionMs)} = ${list(lg)} + writes ${fmtMs(lg?.otherMs)}.` +
        (leaf && pl ? ` Straight into the leaf the same insert takes ${fmtMs(leaf.executionMs)} ms: tuple routing costs about ${fmtMs(pl.executionMs - leaf.executionMs)} ms.` : "") +
        " The key-table trigger is the price of a unique observation_id across the tree.";
    },
  },
];

export function evaluateGoals(r: ResultSoFar): GoalResult[] {
  return evaluate(GOALS, r);
}

/** A promise of an absolute time: the partitioned statement's p50 at most `maxMs`. */
const absolutePromise = (id: string, classId: string, maxMs: number, goal: string): Goal<ResultSoFar> => ({
  id, goal,
  targets: [{ figure: "p50Ms", atMost: maxMs }],
  figures: (r) => (!variant(r, classId, "partitioned") ? QUERIES_NOT_RUN : { p50Ms: p50(variant(r, classId, "partitioned")) }),
  measured: (r, f) => `p50 ${fmtMs(f.p50Ms)} ms, p95 ${fmtMs(variant(r, classId, "partitioned")!.timings.p95)} ms`,
  missed: (r) => planNote(r, classId),
});

/** A promise of a speed-up over the legacy table of at least `min`; `why` replaces the computed shortfall. */
const ratioPromise = (id: string, classId: string, min: number, goal: string, why?: (r: ResultSoFar) => string): Goal<ResultSoFar> => ({
  id, goal,
  targets: [{ figure: "speedup", atLeast: min }],
  figures: (r) => {
    const x = cls(r, classId)?.speedupVsLegacy;
    return x === null || x === undefined ? QUERIES_NOT_RUN : { speedup: x };
  },
  measured: (r, f) => `${fmtRatio(f.speedup)} vs legacy, ${fmtRatio(cls(r, classId)!.speedupVsIndexed)} vs indexed`,
  missed: (r, f) => (why ? why(r) : shortfall(r, classId, f.speedup!, min)),
});

/** The plan's "Performance Expectations" and "Success Criteria", one object each, in the report's order. */
export const PROMISES: readonly Goal<ResultSoFar>[] = [
  absolutePromise("program_ms", "program_filter", 200, "Program filter: 50–200 ms"),
  absolutePromise("site_ms", "site_filter", 100, "Site filter: 20–100 ms"),
  absolutePromise("date_ms", "date_range", 500, "Date range: 100–500 ms"),
  absolutePromise("submission_ms", "submission_lookup", 20, "Submission filter: 5–20 ms"),
  absolutePromise("aggregate_ms", "plan_aggregate", 100, "Example aggregate: 10 s → 100 ms"),
  ratioPromise("program_50x_filter", "program_filter", 50, "program_id queries 50×+ faster: program aggregate"),
  ratioPromise("program_50x_page", "program_page", 50, "program_id queries 50×+ faster: program page (newest 100)", (r) =>
    `the partitioned statement opens every leaf of the program (${planNote(r, "program_page")}): each leaf's index on (created_at desc, observation_id desc) ` +
    `lets the Merge Append stop after 100 rows, so what remains is planning and starting one index scan per leaf, a cost that grows with the program's months and sites.`),
  ratioPromise("program_50x_range", "date_range", 50, "program_id queries 50×+ faster: program + one month"),
  ratioPromise("site_100x_filter", "site_filter", 100, "Site-specific queries 100×+ faster: site aggregate"),
  ratioPromise("site_100x_aggregate", "plan_aggregate", 100, "Site-specific queries 100×+ faster: plan's example aggregate"),
];

/** The plan's "Performance Expectations" and "Success Criteria", as measured. */
export function evaluatePromises(r: ResultSoFar): GoalResult[] {
  return evaluate(PROMISES, r);
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
