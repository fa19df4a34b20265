// `npm run bench`: the plan's performance promises, measured side by side on this machine.
// Legacy table as shipped vs the same with a composite index vs the partitioned tree, in one
// database, one run. See `npm run bench -- --help` and the README's "Benchmarks" section.
import { parseArgs } from "./lib/bench/options.ts";
import { renderSaved, runBench } from "./lib/bench/run.ts";

try {
  const options = parseArgs(process.argv.slice(2));
  if (options.render) renderSaved(options);
  else await runBench(options);
  process.exit(0);
} catch (e) {
  console.error(`\nbench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
}
