// Repeated runs of the measured sections on the same data: this machine is shared and noisy, and
// one run per configuration flipped goals between runs of the same code. The goals are judged on
// the median of each figure across the runs (goal-table.ts: evaluateRuns); the report's tables show
// a body composed the same way: each query variant, and each other section, from the run whose
// figure is the median.
import { median } from "./goal-table.ts";
import type { ResultSoFar } from "./goals.ts";
import { speedup } from "./stats.ts";
import type { QueryClassResult } from "./types.ts";

/** The item whose key is the median's (the lower middle for an even count); items without a finite key last. */
export function medianBy<T>(items: readonly T[], key: (t: T) => number | undefined): T {
  if (!items.length) throw new Error("medianBy: no items");
  const keyed = items.map((t) => ({ t, k: key(t) ?? Number.NaN }));
  const finite = keyed.filter((x) => Number.isFinite(x.k)).sort((a, b) => a.k - b.k);
  if (!finite.length) return items[0]!;
  return finite[Math.floor((finite.length - 1) / 2)]!.t;
}

/** The query classes with each variant from the run of its median p50, the ratios recomputed from those. */
function composeQueries(runs: readonly ResultSoFar[]): QueryClassResult[] {
  const first = runs[0]!;
  return first.queries.map((c) => {
    const variants = c.variants.map((v) => {
      const all = runs.map((r) => r.queries.find((q) => q.id === c.id)?.variants.find((x) => x.id === v.id)).filter((x) => x !== undefined);
      return medianBy(all, (x) => x.timings.median);
    });
    const get = (id: string) => variants.find((v) => v.id === id)?.timings;
    return { ...c, variants, speedupVsLegacy: speedup(get("legacy"), get("partitioned")), speedupVsIndexed: speedup(get("indexed"), get("partitioned")) };
  });
}

const share = (r: ResultSoFar, commit: string, connections: number) =>
  r.inserts?.shares.find((s) => s.commit === commit && s.connections === connections)?.share;

/** One result to show: the median of the runs, section by section (the goals come from evaluateRuns). */
export function composeRuns(runs: readonly ResultSoFar[]): ResultSoFar {
  if (runs.length === 1) return runs[0]!;
  const online = (r: ResultSoFar) => (r.migration.online && !("error" in r.migration.online) ? r.migration.online.backfillRowsPerSecond : undefined);
  return {
    ...runs[0]!,
    queries: composeQueries(runs),
    roundTrip: medianBy(runs, (r) => r.roundTrip?.selectOne.median).roundTrip,
    prepared: medianBy(runs, (r) => median(r.prepared?.runs.map((x) => x.timings.median) ?? [])).prepared,
    inserts: medianBy(runs, (r) => share(r, "durable", 1)).inserts,
    maintenance: medianBy(runs, (r) => r.maintenance?.seconds).maintenance,
    migration: medianBy(runs, online).migration,
  };
}
