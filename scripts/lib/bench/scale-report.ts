// The scale curve's report: every cost the bench and the push bench measure, at every scale they
// were measured at, and how it grows with the rows (docs/benchmarks/scale.md, .json, .svg).
//
// A cost's growth exponent between two scales is log(cost ratio) / log(rows ratio): 0 for a cost
// that does not grow with the table, 1 for one that grows as the table does. Each cost says how
// the rows it must touch grow (0: a fixed amount, a row, a page or a day of writes; 1: a share of
// the table); a cost whose exponent passes that by more than MARGIN grows faster than the rows it
// touches, and the report names it with its cause (scale-causes.json, by cost id) and the plan
// figures the bench recorded. Inputs are bench results (result.json), push bench results
// (bench-adoption --out) and earlier curves (scale.json, whose points are taken over): per cost and
// scale the newest measurement is shown. Nothing is extrapolated: a scale without a measurement
// is listed as not measured.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { REPO_ROOT } from "../cluster.ts";
import { esc } from "./chart.ts";
import { fmtChangedGroups, fmtInt } from "./stats.ts";
import type { BenchResult } from "./types.ts";

/** exponent above the rows' own by more than this: grows faster than the rows it touches */
export const MARGIN = 0.2;
/** the scales the issue asks for: each missing one is listed as not measured */
export const TARGET_SCALES = [1_000_000, 5_000_000, 20_000_000];
/** the maintenance goal: the whole run within this factor across scales, and at most GOAL_5M_SECONDS at 5M */
export const MAINTENANCE_SPREAD = 1.5;
export const MAINTENANCE_5M_SECONDS = 2;

export type CostGroup = "queries" | "prepared" | "inserts" | "maintenance" | "migration" | "push";
export const GROUP_TITLES: Record<CostGroup, string> = {
  queries: "Query classes (p50 per statement)",
  prepared: "Id-only statements, prepared (p50)",
  inserts: "Inserts, durable commits (time per row at the measured throughput)",
  maintenance: "Maintenance after the same day of writes",
  migration: "Online migration of the gasifier table (its rows are the x axis)",
  push: "The push and its setup steps while the app writes (petri + gasifier rows are the x axis)",
};

export interface CostPoint {
  /** rows of the table(s) the cost is measured on (rowsOf) */
  rows: number;
  /** petri rows of the run (its scale) */
  scale: number;
  value: number;
  measuredAt: string;
  source: string;
  /** figures beside the value: rows matched, planning time, partitions in the plan, steps */
  detail?: string;
}

export interface CostCurve {
  id: string;
  group: CostGroup;
  label: string;
  unit: "ms" | "s";
  /** how the rows the cost must touch grow with the table: 0 a fixed amount, 1 a share of the table */
  touches: 0 | 1;
  touchesWhat: string;
  rowsOf: "petri" | "gasifier" | "petri + gasifier";
  points: CostPoint[];
  /** between consecutive scales, the larger's exponent */
  steps: { fromRows: number; toRows: number; exponent: number }[];
  /** smallest to largest scale; null with one point */
  overall: number | null;
  faster: boolean;
  cause?: string;
}

/**
 * Slowest ÷ fastest maintenance run, judged at the goal's scales (TARGET_SCALES) when two or more
 * of them were measured, else across every scale measured; spreadAll is across every scale.
 */
export interface Spread {
  points: CostPoint[];
  spread: number | null;
  withinSpread: boolean | null;
  /** the scales spread and withinSpread are taken over (absent in older curves: every scale) */
  judgedScales?: number[];
  spreadAll?: number | null;
}

export interface ScaleReport {
  version: 1;
  writtenAt: string;
  margin: number;
  inputs: { source: string; kind: "bench" | "push" | "curve"; measuredAt: string; scale: number; mode: string; what: string; tree?: string; load?: string }[];
  costs: CostCurve[];
  maintenance: Spread & {
    at5m: number | null; at5mMet: boolean | null;
    /** the same spread over the runs once the tree had settled (maintenance.steady; absent in older curves) */
    settled?: Spread;
  };
  notMeasured: string[];
}

interface AdoptionResult {
  measured_at: string;
  rows: { petri: number; gasifier: number };
  push: { seconds: number };
  setup: { steps: { task: string; kind: string; seconds: number }[] };
  app: { windows: { window: string; max: number }[] };
}

type Sample = Omit<CostCurve, "points" | "steps" | "overall" | "faster" | "cause"> & { point: CostPoint };

/** What each query class must read: a fixed amount (a page, a submission, a row) or a share of the table. */
const QUERY_TOUCHES: Record<string, { touches: 0 | 1; what: string }> = {
  count_all: { touches: 1, what: "every row" },
  full_scan: { touches: 1, what: "every row" },
  program_filter: { touches: 1, what: "one program's rows (a share of the table)" },
  program_page: { touches: 0, what: "a page of 100 rows" },
  site_filter: { touches: 1, what: "one site's rows (a share of the table)" },
  date_range: { touches: 1, what: "one program's month (a share of the table)" },
  plan_aggregate: { touches: 1, what: "one site's last 3 months (a share of the table)" },
  submission_lookup: { touches: 0, what: "one submission's rows" },
  fetch_by_id: { touches: 0, what: "one row" },
  update_by_id: { touches: 0, what: "one row" },
};
const TABLE_LABEL: Record<string, string> = { legacy: "legacy", indexed: "indexed legacy", partitioned: "partitioned" };

function benchSamples(r: BenchResult, source: string): Sample[] {
  const at = r.finishedAt;
  const scale = r.build.rows.legacy;
  const out: Sample[] = [];
  const point = (rows: number, value: number, detail?: string): CostPoint => ({ rows, scale, value, measuredAt: at, source, ...(detail ? { detail } : {}) });
  for (const q of r.queries) {
    const t = QUERY_TOUCHES[q.id] ?? { touches: 1 as const, what: "unknown (treated as a share of the table)" };
    for (const v of q.variants) {
      if (!(v.id in TABLE_LABEL) || v.error || !Number.isFinite(v.timings.median)) continue;
      const detail = [q.matchedRows !== undefined ? `${fmtInt(q.matchedRows)} rows matched` : "",
        v.planning ? `planning ${v.planning.median.toFixed(2)} ms` : "", v.partitionsInPlan !== undefined ? `${v.partitionsInPlan} partitions in plan` : ""].filter(Boolean).join(", ");
      out.push({ id: `query.${q.id}.${v.id}`, group: "queries", label: `${q.title}: ${TABLE_LABEL[v.id]}`, unit: "ms", touches: t.touches, touchesWhat: t.what, rowsOf: "petri",
        point: point(scale, v.timings.median, detail) });
    }
  }
  for (const p of r.prepared?.runs ?? []) {
    if (p.error) continue;
    out.push({ id: `prepared.${p.statement}.${p.table}`, group: "prepared", label: `Id-only ${p.statement}, prepared: ${TABLE_LABEL[p.table]}`, unit: "ms", touches: 0, touchesWhat: "one row", rowsOf: "petri",
      point: point(scale, p.timings.median, `${p.relationLocks} relation locks, ${p.genericPlans} generic / ${p.customPlans} custom plans`) });
  }
  for (const x of r.inserts?.runs ?? []) {
    if (x.commit !== "durable" || !(x.rowsPerSecond > 0)) continue;
    out.push({ id: `insert.${x.connections}.${x.table}`, group: "inserts", label: `Insert, ${x.connections} connection${x.connections > 1 ? "s" : ""}: ${TABLE_LABEL[x.table]}`, unit: "ms", touches: 0, touchesWhat: "one row",
      rowsOf: "petri", point: point(scale, 1000 / x.rowsPerSecond, `${fmtInt(x.rowsPerSecond)} rows/s`) });
  }
  const mt = r.maintenance;
  // only runs after a day of writes: a run without it (results before the scale curve) recomputed
  // whatever the sections before it wrote, not the same work at every scale
  if (mt?.dayWrites && !mt.error) {
    const slow = [...mt.steps].sort((a, b) => b.seconds - a.seconds)[0];
    out.push({ id: "maintenance.run", group: "maintenance", label: "Maintenance run (maintenance_runner(), the nightly job)", unit: "s", touches: 0,
      touchesWhat: `the day of writes (${fmtInt(mt.dayWrites.rows)} rows)`, rowsOf: "petri",
      point: point(scale, mt.seconds, `${fmtInt(mt.dayWrites.rows)} rows written in ${fmtInt(mt.dayWrites.statements)} statements, ${fmtChangedGroups(mt.dayWrites)}; ` +
        `${mt.steps.length} steps, slowest ${slow ? `${slow.table ?? "–"} ${slow.action} ${slow.seconds.toFixed(2)} s` : "–"}${mt.unfinished ? `; unfinished: ${mt.unfinished}` : ""}` +
        (mt.settleSeconds === undefined && (r.queries.length > 0 || r.inserts) ? "; also what the sections before it wrote (a run without the untimed first run)" : "")) });
  }
  // the nightly cost once the tree has settled: the steady run when the measured one restructured
  // the tree; a measured run that finished with at most one promote check per table was that already
  if (mt?.dayWrites && !mt.error) {
    const checks = new Map<string, number>();
    for (const x of mt.steps) if (x.action === "promote") checks.set(x.table ?? "", (checks.get(x.table ?? "") ?? 0) + 1);
    const settledAlready = !mt.unfinished && [...checks.values()].every((n) => n <= 1);
    const st = mt.steady;
    const STEADY = { id: "maintenance.steady", group: "maintenance", label: "Maintenance run once the tree has settled (the day's promotions done or held)", unit: "s", touches: 0 } as const;
    if (st && !st.unfinished) {
      const slow = [...st.steps].sort((a, b) => b.seconds - a.seconds)[0];
      out.push({ ...STEADY,
        touchesWhat: `the day of writes (${fmtInt(st.dayWrites.rows)} rows)`, rowsOf: "petri",
        point: point(scale, st.seconds, `after ${st.settleRuns} nightly runs (${Math.round(st.settleSeconds)} s, ${st.cutovers} promotions cut over${st.held ? ", then held by the lock budget" : ""}), ` +
          `a second day of ${fmtInt(st.dayWrites.rows)} rows, ${fmtChangedGroups(st.dayWrites)}; ${st.steps.length} steps, slowest ${slow ? `${slow.table ?? "–"} ${slow.action} ${slow.seconds.toFixed(2)} s` : "–"}`) });
    } else if (!st && settledAlready) {
      out.push({ ...STEADY,
        touchesWhat: `the day of writes (${fmtInt(mt.dayWrites.rows)} rows)`, rowsOf: "petri",
        point: point(scale, mt.seconds, "the measured run promoted nothing: the tree was settled") });
    }
  }
  const m = r.migration;
  if (m.status === "measured" && m.rows && m.online && !("error" in m.online)) {
    const o = m.online;
    const g = m.rows;
    const add = (id: string, label: string, unit: "ms" | "s", touches: 0 | 1, what: string, value: number, detail?: string) =>
      out.push({ id: `migration.${id}`, group: "migration", label, unit, touches, touchesWhat: what, rowsOf: "gasifier", point: point(g, value, detail) });
    add("prepare", "Prepare (prepare_migration until prepared)", "s", 1, "the table's (program, site) counts that size the tree", o.prepareSeconds, `${o.prepareCalls} calls, ${fmtInt(o.treeLeaves)} leaves`);
    add("backfill", "Backfill (online, app writing)", "s", 1, "every row", o.backfillSeconds, `${fmtInt(o.backfillRowsPerSecond)} rows/s, ${o.batches} batches, slowest ${o.slowestBatchSeconds.toFixed(2)} s`);
    add("validate", "Validation", "s", 1, "every row", o.validateSeconds);
    add("swap", "Swap: ACCESS EXCLUSIVE held", "ms", 0, "the catalog (renames)", o.swapLockMs, `${o.swapAttempts} attempt(s)`);
    if (o.rollbackLockMs !== undefined) add("rollback", "Rollback after the swap: ACCESS EXCLUSIVE held", "ms", 0, "the catalog (renames)", o.rollbackLockMs);
    if (m.offline && !("error" in m.offline)) add("offline", "Offline copy (table locked)", "s", 1, "every row", m.offline.seconds, `${fmtInt(m.offline.rowsPerSecond)} rows/s`);
    if (m.app) add("app_wait", "Longest app statement, prepare to the last phase", "ms", 0, "one row per statement", m.app.maxWaitMs, `${fmtInt(m.app.during.ops)} app statements, p99 ${m.app.during.p99.toFixed(1)} ms`);
  }
  return out;
}

const SETUP_TOUCHES: Record<string, 0 | 1> = { backfill: 1, index: 1, check: 1, policy: 0 };

function pushSamples(r: AdoptionResult, source: string): Sample[] {
  const rows = r.rows.petri + r.rows.gasifier;
  const point = (value: number, detail?: string): CostPoint => ({ rows, scale: r.rows.petri, value, measuredAt: r.measured_at, source, ...(detail ? { detail } : {}) });
  const out: Sample[] = [{ id: "push.push", group: "push", label: "supabase db push (every migration)", unit: "s", touches: 0, touchesWhat: "no row (catalog only)", rowsOf: "petri + gasifier", point: point(r.push.seconds) }];
  for (const s of r.setup.steps) {
    const touches = s.task.endsWith(":metrics") || s.task === "metrics" ? 1 : SETUP_TOUCHES[s.kind] ?? 1;
    out.push({ id: `push.setup.${s.task}`, group: "push", label: `Setup step ${s.task}`, unit: "s", touches, touchesWhat: touches ? "the table's rows" : "no row (catalog only)", rowsOf: "petri + gasifier", point: point(s.seconds) });
  }
  const during = r.app.windows.filter((w) => !w.window.startsWith("baseline") && !w.window.startsWith("after"));
  if (during.length) {
    out.push({ id: "push.app_wait", group: "push", label: "Longest app statement during the push and the setup steps", unit: "ms", touches: 0, touchesWhat: "one row per statement", rowsOf: "petri + gasifier",
      point: point(Math.max(...during.map((w) => w.max))) });
  }
  return out;
}

function curveSamples(r: ScaleReport): Sample[] {
  return r.costs.flatMap((c) => c.points.map((point) => {
    const { points: _p, steps: _s, overall: _o, faster: _f, cause: _c, ...rest } = c;
    return { ...rest, point };
  }));
}

type Loaded = { kind: "bench" | "push" | "curve"; samples: Sample[]; input: ScaleReport["inputs"] };

/** One input file: its kind told by its shape. */
export function loadInput(file: string): Loaded {
  const j = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  // a file outside the repository by its folder and name (results/…/bench-1000000/result.json)
  const source = relative(REPO_ROOT, file).startsWith("..") ? join(basename(dirname(file)), basename(file)) : relative(REPO_ROOT, file);
  if (j.version === 2 && j.build) {
    const r = j as unknown as BenchResult;
    const what = [r.queries.length ? "queries" : "", r.inserts ? "inserts" : "", r.maintenance ? (r.maintenance.dayWrites ? "maintenance" : "maintenance (without a day of writes: not used)") : "",
      r.migration.status === "measured" ? "migration" : ""].filter(Boolean).join(", ");
    const t = r.build.tree;
    const tree = `${t.shape}: ${fmtInt(t.leaves)} petri leaves (${fmtInt(t.defaults)} DEFAULT), ${fmtInt(t.allTablesLeaves)} in all; target ${fmtInt(t.targetRowsPerLeaf)} rows per leaf`;
    const load = `${r.machine.loadAverage.join(" / ")}${r.machine.loadAverageEnd ? ` → ${r.machine.loadAverageEnd.join(" / ")}` : ""}`;
    return { kind: "bench", samples: benchSamples(r, source), input: [{ source, kind: "bench", measuredAt: r.finishedAt, scale: r.build.rows.legacy, mode: r.mode, what, tree, load }] };
  }
  if (typeof j.measured_at === "string" && j.push && j.setup) {
    const r = j as unknown as AdoptionResult;
    return { kind: "push", samples: pushSamples(r, source), input: [{ source, kind: "push", measuredAt: r.measured_at, scale: r.rows.petri, mode: "full", what: "push and setup steps" }] };
  }
  if (j.version === 1 && Array.isArray(j.costs)) {
    const r = j as unknown as ScaleReport;
    return { kind: "curve", samples: curveSamples(r), input: r.inputs };
  }
  throw new Error(`${file}: neither a bench result (version 2), a push bench result nor a scale curve (version 1)`);
}

function loadCauses(): Record<string, string> {
  const file = join(REPO_ROOT, "docs", "benchmarks", "scale-causes.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : {};
}

export const exponent = (a: CostPoint, b: CostPoint): number => Math.log(b.value / a.value) / Math.log(b.rows / a.rows);

/** The curves of every cost: per cost and row count the newest measurement, exponents between them. */
export function buildCurve(loaded: Loaded[], causes: Record<string, string> = loadCauses(), writtenAt = new Date()): ScaleReport {
  const byId = new Map<string, { meta: Sample; points: Map<number, CostPoint> }>();
  for (const s of loaded.flatMap((l) => l.samples)) {
    if (!(s.point.value > 0) || !(s.point.rows > 0)) continue;
    const e = byId.get(s.id) ?? { meta: s, points: new Map<number, CostPoint>() };
    const old = e.points.get(s.point.rows);
    if (!old || old.measuredAt < s.point.measuredAt) e.points.set(s.point.rows, s.point);
    if (s.point.measuredAt >= (e.meta.point.measuredAt ?? "")) e.meta = s;
    byId.set(s.id, e);
  }
  const costs: CostCurve[] = [...byId.values()].map(({ meta, points }) => {
    const { point: _p, ...m } = meta;
    const pts = [...points.values()].sort((a, b) => a.rows - b.rows);
    const steps = pts.slice(1).map((p, i) => ({ fromRows: pts[i]!.rows, toRows: p.rows, exponent: exponent(pts[i]!, p) }));
    const overall = pts.length > 1 ? exponent(pts[0]!, pts[pts.length - 1]!) : null;
    const last = steps[steps.length - 1];
    const faster = overall !== null && (overall > m.touches + MARGIN || (last !== undefined && last.exponent > m.touches + MARGIN));
    return { ...m, points: pts, steps, overall, faster, ...(causes[m.id] ? { cause: causes[m.id] } : {}) };
  });
  const order: CostGroup[] = ["maintenance", "queries", "prepared", "inserts", "migration", "push"];
  costs.sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group) || a.id.localeCompare(b.id));
  const pointsOf = (id: string) => costs.find((c) => c.id === id)?.points ?? [];
  const near = (a: number, b: number) => Math.abs(a - b) / b < 0.01;
  // slowest ÷ fastest at the goal's scales (every scale measured if fewer than two of them were),
  // and whether it is within the goal's spread
  const ratio = (points: CostPoint[]) => {
    const values = points.map((p) => p.value);
    return values.length > 1 ? Math.max(...values) / Math.min(...values) : null;
  };
  const spreadOf = (points: CostPoint[]): Spread => {
    const atGoal = points.filter((p) => TARGET_SCALES.some((t) => near(p.scale, t)));
    const judged = atGoal.length > 1 ? atGoal : points;
    const spread = ratio(judged);
    return { points, spread, withinSpread: spread === null ? null : spread <= MAINTENANCE_SPREAD,
      judgedScales: judged.map((p) => p.scale), spreadAll: ratio(points) };
  };
  const mt = pointsOf("maintenance.run");
  const at5m = mt.find((p) => Math.abs(p.scale - 5_000_000) / 5_000_000 < 0.01)?.value ?? null;
  const notMeasured: string[] = [];
  for (const g of order) {
    const scales = new Set(costs.filter((c) => c.group === g).flatMap((c) => c.points.map((p) => p.scale)));
    const missing = TARGET_SCALES.filter((t) => ![...scales].some((s) => near(s, t)));
    if (missing.length) notMeasured.push(`${GROUP_TITLES[g]}: not measured at ${missing.map(scaleName).join(", ")}`);
  }
  return {
    version: 1, writtenAt: writtenAt.toISOString(), margin: MARGIN,
    inputs: dedupeInputs(loaded.flatMap((l) => l.input)),
    costs,
    maintenance: { ...spreadOf(mt), at5m, at5mMet: at5m === null ? null : at5m <= MAINTENANCE_5M_SECONDS, settled: spreadOf(pointsOf("maintenance.steady")) },
    notMeasured,
  };
}

function dedupeInputs(xs: ScaleReport["inputs"]): ScaleReport["inputs"] {
  const seen = new Map<string, ScaleReport["inputs"][number]>();
  for (const x of xs) seen.set(`${x.kind}|${x.source}|${x.measuredAt}`, x);
  return [...seen.values()].sort((a, b) => a.scale - b.scale || a.measuredAt.localeCompare(b.measuredAt));
}

/** 4,999,200 -> "5M", 249,600 -> "250k", 4,800 -> "4.8k": the scale a run was asked for, roughly */
export const scaleName = (n: number): string =>
  n >= 1_000_000 ? `${Number((n / 1_000_000).toFixed(1))}M` : n >= 10_000 ? `${Math.round(n / 1_000)}k` : n >= 1_000 ? `${Number((n / 1_000).toFixed(1))}k` : fmtInt(n);
const day = (iso: string) => iso.slice(0, 10);
const fmtValue = (v: number, unit: string) => `${v >= 100 ? fmtInt(v) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3)} ${unit}`;
const fmtExp = (e: number | null | undefined) => (e === null || e === undefined || !Number.isFinite(e) ? "–" : e.toFixed(2));

/** Bars of each cost's overall exponent (smallest to largest scale), a tick at the rows' own exponent. */
export function exponentChartSvg(r: ScaleReport): string {
  const rows = r.costs.filter((c) => c.overall !== null);
  const labelW = 430;
  const plotW = 440;
  const rowH = 18;
  const top = 70;
  const lo = Math.min(-0.5, ...rows.map((c) => Math.floor(c.overall! * 2) / 2));
  const hi = Math.max(1.5, ...rows.map((c) => Math.ceil(c.overall! * 2) / 2));
  const x = (v: number) => Math.round((labelW + ((v - lo) / (hi - lo)) * plotW) * 10) / 10;
  const height = top + rows.length * rowH + 50;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 60}" height="${height}" viewBox="0 0 ${labelW + plotW + 60} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">How each cost grows with the rows: exponent, smallest to largest scale measured</text>`,
    `<text x="12" y="40" fill="#555">${esc(`0: does not grow; 1: grows as the rows; red: faster than the rows it touches (black tick) by more than ${r.margin}. Written ${day(r.writtenAt)}.`)}</text>`];
  for (let v = lo; v <= hi + 1e-9; v += 0.5) {
    out.push(`<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${top + rows.length * rowH}" stroke="${v === 0 || v === 1 ? "#888" : "#e2e2e2"}"/>`);
    out.push(`<text x="${x(v)}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#333">${v.toFixed(1)}</text>`);
  }
  rows.forEach((c, i) => {
    const y = top + i * rowH;
    if (i % 2 === 1) out.push(`<rect x="0" y="${y}" width="${labelW}" height="${rowH}" fill="#f3f3f3"/>`);
    const span = `${scaleName(c.points[0]!.scale)}–${scaleName(c.points[c.points.length - 1]!.scale)}`;
    out.push(`<text x="${labelW - 8}" y="${y + 13}" text-anchor="end">${esc(`${c.label} (${span})`)}</text>`);
    const e = c.overall!;
    out.push(`<rect x="${Math.min(x(0), x(e))}" y="${y + 4}" width="${Math.max(1, Math.abs(x(e) - x(0)))}" height="10" fill="${c.faster ? "#d43d3d" : "#3d8f4f"}"><title>${esc(`${c.label}: ${e.toFixed(2)}`)}</title></rect>`);
    out.push(`<line x1="${x(c.touches)}" y1="${y + 2}" x2="${x(c.touches)}" y2="${y + 16}" stroke="#000" stroke-width="2"/>`);
    out.push(`<text x="${e >= 0 ? x(e) + 4 : x(e) - 4}" y="${y + 13}" text-anchor="${e >= 0 ? "start" : "end"}" font-size="10">${e.toFixed(2)}</text>`);
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}

/** "at the goal's scales (1M, 5M, 20M): slowest ÷ fastest = 1.20× — ✅ met", and the spread across every scale when more were measured. */
function spreadText(sp: Spread, mark: (ok: boolean | null) => string): string {
  const judged = sp.judgedScales ?? sp.points.map((p) => p.scale);
  const atGoal = judged.length > 1 && judged.every((s) => TARGET_SCALES.some((t) => Math.abs(s - t) / t < 0.01));
  const missing = TARGET_SCALES.filter((t) => !sp.points.some((p) => Math.abs(p.scale - t) / t < 0.01));
  let text = `${atGoal ? "at the goal's scales" : "across the scales measured"} (${judged.map(scaleName).join(", ")}): ` +
    `${sp.spread === null ? "one scale only" : `slowest ÷ fastest = ${sp.spread.toFixed(2)}×`} — ${mark(sp.withinSpread)}`;
  if (missing.length) text += ` (the goal names ${TARGET_SCALES.map(scaleName).join(", ")}; ${missing.map(scaleName).join(", ")} not measured)`;
  if (sp.spreadAll != null && sp.points.length > judged.length) {
    text += `; across every scale measured (${sp.points.map((p) => scaleName(p.scale)).join(", ")}): ${sp.spreadAll.toFixed(2)}×, not judged`;
  }
  return text;
}

export function scaleMarkdown(r: ScaleReport, chartFile: string): string {
  const out: string[] = [];
  out.push("# Scale curve: how each cost grows with the table");
  out.push("");
  out.push(`Written ${r.writtenAt.replace("T", " ").replace(/\.\d+Z$/, " UTC")} by \`npm run bench:scale\` (scripts/bench-scale.ts) from the runs listed under "Runs": every figure is one measured in the run named on its row, on its date; nothing is extrapolated. A scale without a measurement is listed under "Not measured yet".`);
  out.push("");
  out.push(`Growth exponent between two scales: log(cost ratio) ÷ log(rows ratio). 0: the cost does not grow with the table; 1: it grows as the table does. Each cost says how the rows it must touch grow (0: a row, a page, a submission or a day of writes; 1: a share of the table); a cost whose exponent, from the smallest to the largest scale or over the last step, passes that by more than ${r.margin} grows faster than the rows it touches and is named under "Costs that grow faster than the rows they touch" with its cause. The margin allows for this shared machine's noise (a cost 1.4× slower at 5× the rows is an exponent of 0.21). Two scales measured in different runs also differ by those runs' code and machine load (the Runs table gives each run's date and load average): such an exponent is a lead to follow, not a verdict, until one run's day measures both scales.`);
  out.push("");
  out.push(`![Growth exponents](${chartFile})`);
  out.push("");

  out.push("## Maintenance with the same day of writes");
  out.push("");
  const mt = r.maintenance;
  if (!mt.points.length) out.push("Not measured: no run with a day of writes before its maintenance.");
  else {
    out.push("Before each maintenance run the bench writes the same day of new rows at every scale (day-writes.ts: the rows spread over a UTC day of their own in the current month, which the bench's history, ending with the previous month, leaves empty, on every site of a running program, a submission's 10 rows per INSERT), then times the statement `partition_mgmt.maintenance_runner()` returns, as the nightly job runs it.");
    out.push("");
    out.push("| Scale (petri rows) | Run date | Maintenance run | What it processed |");
    out.push("| ---: | --- | ---: | --- |");
    for (const p of mt.points) out.push(`| ${fmtInt(p.scale)} | ${day(p.measuredAt)} | **${p.value.toFixed(2)} s** | ${p.detail ?? ""} |`);
    out.push("");
    const mark = (ok: boolean | null) => (ok === null ? "➖ not measured" : ok ? "✅ met" : "❌ missed");
    out.push(`- Within ${MAINTENANCE_SPREAD}× of each other ${spreadText(mt, mark)}.`);
    out.push(`- At most ${MAINTENANCE_5M_SECONDS} s at 5M rows: ${mt.at5m === null ? "" : `${mt.at5m.toFixed(2)} s — `}${mark(mt.at5mMet)}.`);
    // the nightly cost once the day's promotions are done or held: a run that restructured the tree
    // measures that restructuring, once, not the nightly work
    const settled = mt.settled;
    if (settled && settled.spread !== null) {
      out.push(`- Once the tree has settled (maintenance.steady, below): ${settled.points.map((p) => `${scaleName(p.scale)} ${p.value.toFixed(2)} s`).join(", ")}; ` +
        `${spreadText(settled, mark)}.`);
    }
  }
  out.push("");

  out.push("## Costs that grow faster than the rows they touch");
  out.push("");
  const fast = r.costs.filter((c) => c.faster);
  if (!fast.length) out.push("None among the costs measured at two scales or more.");
  for (const c of fast) {
    out.push(`- **${c.label}** (${c.id}): exponent ${fmtExp(c.overall)} over ${c.points.map((p) => scaleName(p.scale)).join(" → ")} (steps ${c.steps.map((s) => fmtExp(s.exponent)).join(", ")}); it must touch ${c.touchesWhat} (exponent ${c.touches}). ` +
      `Measured: ${c.points.map((p) => `${scaleName(p.scale)} ${fmtValue(p.value, c.unit)} (${day(p.measuredAt)}${p.detail ? `; ${p.detail}` : ""})`).join(" → ")}. ` +
      `**Cause**: ${c.cause ?? "not established yet"}.`);
  }
  out.push("");

  out.push("## Every cost, per scale");
  out.push("");
  for (const g of Object.keys(GROUP_TITLES) as CostGroup[]) {
    const cs = r.costs.filter((c) => c.group === g);
    if (!cs.length) continue;
    out.push(`### ${GROUP_TITLES[g]}`);
    out.push("");
    out.push(`| Cost | Must touch | Scale (petri rows) | Rows of its table | Measured | Run date | Exponent from the previous scale | Detail |`);
    out.push("| --- | --- | ---: | ---: | ---: | --- | ---: | --- |");
    for (const c of cs) {
      c.points.forEach((p, i) => {
        const step = i > 0 ? c.steps[i - 1]?.exponent : null;
        out.push(`| ${i === 0 ? `${c.faster ? "⚠️ " : ""}${c.label}` : ""} | ${i === 0 ? `${c.touchesWhat} (${c.touches})` : ""} | ${fmtInt(p.scale)} | ${fmtInt(p.rows)} | ${fmtValue(p.value, c.unit)} | ${day(p.measuredAt)} | ${i > 0 ? `${fmtExp(step)}${step !== null && step !== undefined && step > c.touches + r.margin ? " ⚠️" : ""}` : ""} | ${p.detail ?? ""} |`);
      });
    }
    out.push("");
  }

  out.push("## Not measured yet");
  out.push("");
  if (!r.notMeasured.length) out.push(`Every group at ${TARGET_SCALES.map(scaleName).join(", ")}.`);
  for (const n of r.notMeasured) out.push(`- ${n}.`);
  out.push("");
  out.push("To add a scale, run it and give this curve as an earlier result (each cost keeps its newest measurement per scale):");
  out.push("");
  out.push("```bash");
  out.push("npm run bench:scale -- --scales 20m --push --with docs/benchmarks/scale.json --publish");
  out.push("```");
  out.push("");

  out.push("## Runs");
  out.push("");
  out.push("The partitioned table's tree is the one `prepare_migration` sizes by the data, so it changes shape with the scale: a cost of the partitioned table between two scales compares two trees.");
  out.push("");
  out.push("| Source | Kind | Mode | Scale (petri rows) | Tree | What it measured | Load average 1 / 5 / 15 min, start → end | Finished |");
  out.push("| --- | --- | --- | ---: | --- | --- | --- | --- |");
  for (const i of r.inputs) out.push(`| ${i.source} | ${i.kind} | ${i.mode} | ${fmtInt(i.scale)} | ${i.tree ?? "–"} | ${i.what} | ${i.load ?? "not recorded"} | ${i.measuredAt.replace("T", " ").replace(/\.\d+Z$/, " UTC")} |`);
  out.push("");
  return out.join("\n");
}

export interface ScaleFiles { json: string; markdown: string; svg: string; published?: string[] }

/** The curve of the given results into <outDir>/scale.{md,json,svg}; with publish also docs/benchmarks/. */
export function writeScaleReport(inputs: string[], outDir: string, publish: boolean): ScaleFiles {
  if (!inputs.length) throw new Error("no results to draw a curve from");
  const r = buildCurve(inputs.map(loadInput));
  mkdirSync(outDir, { recursive: true });
  const files: ScaleFiles = { json: join(outDir, "scale.json"), markdown: join(outDir, "scale.md"), svg: join(outDir, "scale.svg") };
  const svg = exponentChartSvg(r);
  writeFileSync(files.json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(files.svg, svg);
  writeFileSync(files.markdown, scaleMarkdown(r, "scale.svg"));
  if (publish) {
    const docs = join(REPO_ROOT, "docs", "benchmarks");
    const pub = [join(docs, "scale.json"), join(docs, "scale.svg"), join(docs, "scale.md")];
    writeFileSync(pub[0]!, `${JSON.stringify(r, null, 2)}\n`);
    writeFileSync(pub[1]!, svg);
    writeFileSync(pub[2]!, scaleMarkdown(r, "scale.svg"));
    files.published = pub.map((p) => relative(REPO_ROOT, p));
  }
  return files;
}
