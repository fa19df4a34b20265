// Benchmark options: the scale presets (full and --quick), the command-line flags, and the
// derived demo-generator shape.
import { dirname, join } from "node:path";
import { REPO_ROOT } from "../cluster.ts";
import { UsageError } from "../cli.ts";
import { DEFAULT_DEMO, type DemoDataOptions } from "../demo-data.ts";

export const SECTIONS = ["queries", "inserts", "maintenance", "planning", "migration"] as const;
export type Section = (typeof SECTIONS)[number];

/** partition_mgmt.managed_tables.tree_shape of the run: one run per variant */
export const TREE_SHAPES = ["sized", "literal"] as const;
export type TreeShape = (typeof TREE_SHAPES)[number];

export interface BenchOptions {
  quick: boolean;
  /** petri observations to generate (the legacy table's size) */
  rows: number;
  programs: number;
  sitesPerProgram: number;
  months: number;
  /** gasifier observations per site-month: the online-migration figures run on this table */
  gasifierPerSiteMonth: number;
  seed: number;
  /** the tree prepare_migration builds (sized: by the data; literal: the plan's, every site and month) */
  tree: TreeShape;
  /** own cluster (ignored with dbUrl) */
  port: number;
  /** an empty, freshly migrated database instead of the bench's own cluster */
  dbUrl?: string;
  outDir: string;
  /** also write docs/benchmarks/<tree>.md, .json and .svg */
  publish: boolean;
  /** leaf counts of the planning-time series */
  planningLeaves: number[];
  /** sites x months of one program in the planning series (leaves per program) */
  planningShape: { sites: number; months: number };
  /** seconds per insert-throughput run */
  insertSeconds: number;
  insertConnections: number[];
  /** seconds of app load before the online migration starts (baseline latency) */
  appBaselineSeconds: number;
  /** petri rows written over the current day before the maintenance run (the same at every scale) */
  dayWrites: number;
  warmup: number;
  reps: { scan: number; query: number; byId: number; planning: number };
  /** how many times the measured sections run on the same data; goals are judged on the median */
  runs: number;
  sections: Set<Section>;
  keepCluster: boolean;
  quiet: boolean;
  /** re-render the report of an existing result.json instead of measuring */
  render?: string;
}

/** The bench's own cluster's port unless --port says otherwise. */
export const DEFAULT_BENCH_PORT = 54460;

const FULL: Omit<BenchOptions, "outDir" | "sections"> = {
  quick: false,
  rows: 5_000_000,
  programs: 20,
  sitesPerProgram: 10,
  months: 12,
  gasifierPerSiteMonth: 400,
  seed: 7,
  tree: "sized",
  port: DEFAULT_BENCH_PORT,
  publish: false,
  planningLeaves: [500, 2_000, 10_000],
  planningShape: { sites: 25, months: 20 },
  insertSeconds: 8,
  insertConnections: [1, 4],
  appBaselineSeconds: 8,
  dayWrites: 50_000,
  warmup: 3,
  reps: { scan: 7, query: 21, byId: 51, planning: 21 },
  runs: 3,
  keepCluster: false,
  quiet: false,
};

const QUICK: Partial<BenchOptions> = {
  quick: true,
  rows: 9_600,
  programs: 4,
  sitesPerProgram: 4,
  months: 4,
  gasifierPerSiteMonth: 20,
  planningLeaves: [50, 200],
  planningShape: { sites: 10, months: 5 },
  insertSeconds: 1.5,
  appBaselineSeconds: 2,
  dayWrites: 500,
  warmup: 1,
  reps: { scan: 3, query: 5, byId: 9, planning: 5 },
  runs: 1,
};

export function defaultOutDir(quick: boolean, at = new Date()): string {
  const stamp = at.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  return join(REPO_ROOT, "results", `bench-${stamp}${quick ? "-quick" : ""}`);
}

export function benchOptions(over: Partial<BenchOptions> = {}): BenchOptions {
  const base = { ...FULL, ...(over.quick ? QUICK : {}), ...over };
  return {
    ...base,
    outDir: over.outDir ?? defaultOutDir(Boolean(base.quick)),
    sections: over.sections ?? new Set(SECTIONS),
  } as BenchOptions;
}

export function treeShape(s: string): TreeShape {
  if (!(TREE_SHAPES as readonly string[]).includes(s)) throw new Error(`--tree must be one of ${TREE_SHAPES.join(", ")}, got "${s}"`);
  return s as TreeShape;
}

/** "5m", "500k", "2000000", "2.5M" -> number */
export function parseCount(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmM]?)$/.exec(s.trim().replace(/[_,]/g, ""));
  if (!m) throw new Error(`not a row count: "${s}" (examples: 5m, 500k, 2000000)`);
  const mult = m[2]?.toLowerCase() === "m" ? 1_000_000 : m[2]?.toLowerCase() === "k" ? 1_000 : 1;
  return Math.round(Number(m[1]) * mult);
}

export const USAGE = `usage: npm run bench -- [options]

  --quick                 small scale for CI and development (~10k rows; about a minute)
  --scale N               petri observations in the legacy table (default 5m; e.g. 500k, 20m)
  --programs N            programs (default 20)        --sites N   sites per program (default 10)
  --months N              months of history (default 12)
  --tree sized|literal    the tree prepare_migration builds (default sized: partitions by the data;
                          literal: every program, site and month). The own cluster runs with the
                          max_locks_per_transaction the tree needs (the pre-check's 'lock budget')
  --port N                port of the bench's own cluster (default 54460; another port gets a
                          cluster of its own, .local/db/bench-<port>)
  --db-url URL            use this empty, freshly migrated database instead of the own cluster
  --out DIR               results folder (default results/bench-<timestamp>)
  --publish               also write docs/benchmarks/<tree>.md, <tree>.json and <tree>.svg
  --planning-leaves LIST  leaf counts of the planning series (default 500,2000,10000)
  --insert-seconds N      seconds per insert-throughput run (default 8)
  --day-writes N          petri rows written over the current day before the maintenance run, the
                          same at every scale (default 50k: 1% of the 5M table; --quick: 500)
  --runs N                measure the sections N times (odd, 1-9) on the same data and judge every
                          goal on the median, with the spread (default 3; --quick: 1)
  --only LIST             run only these sections after the build: ${SECTIONS.join(",")}
  --skip LIST             skip these sections
  --keep                  leave the own cluster running afterwards
  --quiet                 no progress output
  --render FILE           write report.md and ratios.svg again from a result.json (no measuring);
                          with --publish also docs/benchmarks/<tree>.*
  -h, --help              this help`;

/** The command line's flags (node:util parseArgs); benchOptionsFrom reads what they parsed to. */
export const BENCH_FLAGS = {
  quick: { type: "boolean" },
  scale: { type: "string" },
  programs: { type: "string" },
  sites: { type: "string" },
  months: { type: "string" },
  tree: { type: "string" },
  port: { type: "string" },
  "db-url": { type: "string" },
  out: { type: "string" },
  publish: { type: "boolean" },
  "planning-leaves": { type: "string" },
  "insert-seconds": { type: "string" },
  "day-writes": { type: "string" },
  runs: { type: "string" },
  only: { type: "string" },
  skip: { type: "string", multiple: true },
  keep: { type: "boolean" },
  quiet: { type: "boolean" },
  render: { type: "string" },
} as const;

export type BenchFlags = {
  [K in keyof typeof BENCH_FLAGS]?: (typeof BENCH_FLAGS)[K] extends { type: "boolean" } ? boolean
    : (typeof BENCH_FLAGS)[K] extends { multiple: true } ? string[] : string;
};

/** The options the parsed flags ask for; a UsageError (one line) names a bad value. */
export function benchOptionsFrom(flags: BenchFlags): BenchOptions {
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw e instanceof UsageError ? e : new UsageError((e as Error).message);
    }
  };
  const list = (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const sectionList = (v: string): Section[] => list(v).map((x) => {
    if (!(SECTIONS as readonly string[]).includes(x)) throw new UsageError(`unknown section "${x}"; known: ${SECTIONS.join(", ")}`);
    return x as Section;
  });
  const num = (flag: string, v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} needs a positive number, got "${v}"`);
    return n;
  };
  const over: Partial<BenchOptions> = {};
  if (flags.quick) over.quick = true;
  if (flags.scale !== undefined) over.rows = wrap(() => parseCount(flags.scale!));
  if (flags.programs !== undefined) over.programs = num("programs", flags.programs);
  if (flags.sites !== undefined) over.sitesPerProgram = num("sites", flags.sites);
  if (flags.months !== undefined) over.months = num("months", flags.months);
  if (flags.tree !== undefined) over.tree = wrap(() => treeShape(flags.tree!));
  if (flags.port !== undefined) over.port = num("port", flags.port);
  if (flags["db-url"] !== undefined) over.dbUrl = flags["db-url"];
  if (flags.out !== undefined) over.outDir = flags.out;
  if (flags.publish) over.publish = true;
  if (flags["planning-leaves"] !== undefined) over.planningLeaves = wrap(() => list(flags["planning-leaves"]!).map((x) => parseCount(x)));
  if (flags["insert-seconds"] !== undefined) over.insertSeconds = num("insert-seconds", flags["insert-seconds"]);
  if (flags["day-writes"] !== undefined) over.dayWrites = wrap(() => parseCount(flags["day-writes"]!));
  if (flags.runs !== undefined) {
    const n = num("runs", flags.runs);
    // odd: the median of each figure is one run's, so the report words it with that run's numbers
    if (!Number.isInteger(n) || n > 9 || n % 2 === 0) throw new UsageError(`--runs needs an odd whole number from 1 to 9 (the median is then one run's figure), got "${flags.runs}"`);
    over.runs = n;
  }
  if (flags.keep) over.keepCluster = true;
  if (flags.quiet) over.quiet = true;
  if (flags.render !== undefined) over.render = flags.render;
  const s = flags.only !== undefined ? new Set(sectionList(flags.only)) : new Set(SECTIONS);
  for (const x of (flags.skip ?? []).flatMap(sectionList)) s.delete(x);
  // re-rendering writes next to the result it reads unless told otherwise
  if (over.render && !over.outDir) over.outDir = dirname(over.render);
  return benchOptions({ ...over, sections: s });
}

/**
 * The last instant of the previous UTC month: the bench's history ends there, so every month of it
 * is a whole calendar month at the same rate of rows per day. Ending it at the time of the run (the
 * generator's default) squeezes the current month's rows into the days elapsed: on the 7th, each day
 * of the month held over 4 days' worth (31 days' rows in fewer than 7), and the day of writes
 * before maintenance landed on groups that already held several times a day's rows, more the larger
 * the scale and the earlier in the month.
 * The current month then holds only what the bench itself writes (inserts, the day of writes).
 */
export function historyEnd(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) - 1);
}

/** The demo generator's options for a bench scale: programs split into companies of up to 5. */
export function demoShape(o: BenchOptions, now = new Date()): DemoDataOptions {
  const perCompany = [5, 4, 3, 2, 1].find((k) => o.programs % k === 0) ?? 1;
  const siteMonths = o.programs * o.sitesPerProgram * o.months;
  return {
    ...DEFAULT_DEMO,
    seed: o.seed,
    companies: o.programs / perCompany,
    programsPerCompany: perCompany,
    sitesPerProgram: o.sitesPerProgram,
    months: o.months,
    petriPerSiteMonth: Math.max(1, Math.round(o.rows / siteMonths)),
    gasifierPerSiteMonth: o.gasifierPerSiteMonth,
    observationsPerSubmission: 10,
    gasifierNullProgramShare: 0.05,
    asOf: historyEnd(now),
  };
}
