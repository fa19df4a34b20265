// `npm run bench:scale`: the bench at several table sizes, and how each cost grows with the rows.
// Runs the bench (and with --push the push bench) once per scale, then writes the curve report
// from those results and any earlier ones given with --with. See `npm run bench:scale -- --help`
// and docs/benchmarks/scale.md.
import { join } from "node:path";
import { commandLine, integerOption, usageExit, UsageError } from "./lib/cli.ts";
import { parseCount, SECTIONS, type Section } from "./lib/bench/options.ts";
import { runScales } from "./lib/bench/scale-runs.ts";
import { writeScaleReport } from "./lib/bench/scale-report.ts";
import { REPO_ROOT } from "./lib/cluster.ts";

const NAME = "npm run bench:scale";
const USAGE = `usage: npm run bench:scale -- [options]

The bench at each scale, one after the other (each on the bench's own cluster), then the curve:
every cost at every scale, and its growth exponent between scales (log cost ratio / log rows ratio).

  --scales LIST      petri rows per scale, e.g. 1m,5m,20m (the gasifier table, where the migration
                     is measured, grows with it); without it only the report is written from --with
  --quick            the quick preset at two tiny scales (4800,9600) unless --scales is given
  --only LIST        bench sections per scale: ${SECTIONS.join(",")} (default all)
  --runs N           measured runs per scale (odd, default 1)
  --day-writes N     petri rows written over the current day before maintenance (default 50k)
  --push             also run npm run bench:adoption (the push) at each scale
  --with FILE        an earlier result to add to the curve: a bench result.json or an adoption JSON
                     (repeatable); per cost and scale the newest run that measured it is shown
  --port N           port of the bench's own cluster (default 54460; the push bench uses N+10)
  --out DIR          results folder (default results/scale-<timestamp>)
  --publish          also write docs/benchmarks/scale.md, scale.json and scale.svg
  --quiet            no progress output
  -h, --help         this help`;

const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: {
    scales: { type: "string" }, quick: { type: "boolean" }, only: { type: "string" }, runs: { type: "string" },
    "day-writes": { type: "string" }, push: { type: "boolean" }, with: { type: "string", multiple: true },
    port: { type: "string" }, out: { type: "string" }, publish: { type: "boolean" }, quiet: { type: "boolean" },
  },
});

const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
let scales: number[];
let sections: Set<Section>;
let runs: number;
let port: number;
let dayWrites: number | undefined;
try {
  const count = (flag: string, v: string) => {
    try {
      return parseCount(v);
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`);
    }
  };
  scales = values.scales !== undefined ? values.scales.split(",").map((x) => count("--scales", x))
    : values.quick ? [4_800, 9_600] : [];
  if (scales.some((n) => n < 2_400)) throw new UsageError("--scales: every scale needs at least 2400 rows");
  sections = new Set(SECTIONS);
  if (values.only !== undefined) {
    sections = new Set(values.only.split(",").map((x) => {
      if (!(SECTIONS as readonly string[]).includes(x.trim())) throw new UsageError(`--only: unknown section "${x}"; known: ${SECTIONS.join(", ")}`);
      return x.trim() as Section;
    }));
  }
  runs = integerOption("--runs", values.runs, 1, 9) ?? 1;
  if (runs % 2 === 0) throw new UsageError(`--runs needs an odd number, got "${values.runs}"`);
  port = integerOption("--port", values.port, 1024, 65525) ?? 54460;
  dayWrites = values["day-writes"] !== undefined ? count("--day-writes", values["day-writes"]) : undefined;
  if (scales.length === 0 && !(values.with?.length)) throw new UsageError("nothing to do: give --scales (or --quick) to measure, or --with to report on earlier results");
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  usageExit(NAME, USAGE, e.message);
}

const outDir = values.out ?? join(REPO_ROOT, "results", `scale-${stamp}${values.quick ? "-quick" : ""}`);
try {
  const measured = scales.length
    ? await runScales({
      scales, push: Boolean(values.push), pushPort: port + 10, outDir, quiet: Boolean(values.quiet),
      bench: { quick: Boolean(values.quick), sections, runs, port, ...(dayWrites !== undefined ? { dayWrites } : {}) },
    })
    : { bench: [], push: [] };
  const files = writeScaleReport([...(values.with ?? []), ...measured.bench, ...measured.push], outDir, Boolean(values.publish));
  console.log(`\nreport:  ${files.markdown}\nresult:  ${files.json}\nchart:   ${files.svg}${files.published ? `\npublished: ${files.published.join(", ")}` : ""}`);
  process.exit(0);
} catch (e) {
  console.error(`\nbench:scale failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
}
