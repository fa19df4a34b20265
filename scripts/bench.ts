// `npm run bench`: the plan's performance promises, measured side by side on this machine.
// Legacy table as shipped vs the same with a composite index vs the partitioned tree, in one
// database, one run. See `npm run bench -- --help` and docs/benchmarks.md.
import { commandLine, usageExit, UsageError } from "./lib/cli.ts";
import { BENCH_FLAGS, benchOptionsFrom, type BenchOptions, USAGE } from "./lib/bench/options.ts";
import { renderSaved, runBench } from "./lib/bench/run.ts";

const NAME = "npm run bench";
const { values } = commandLine({ name: NAME, usage: USAGE, options: BENCH_FLAGS });
let options: BenchOptions;
try {
  options = benchOptionsFrom(values);
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  usageExit(NAME, USAGE, e.message);
}

try {
  if (options.render) renderSaved(options);
  else await runBench(options);
  process.exit(0);
} catch (e) {
  console.error(`\nbench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
}
