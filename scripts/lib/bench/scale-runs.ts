// The scale curve's measuring half: the bench (run.ts) once per scale, one after the other, each
// into a folder of its own (<out>/bench-<rows>/result.json), and optionally the push bench
// (scripts/bench-adoption.ts) at the same petri row count (<out>/adoption-<rows>.json). The other
// managed table grows with the petri table (the gasifier rows per site-month scaled from the
// preset's), so that the migration phases, measured on it, have a row count per scale too.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../cluster.ts";
import { benchOptions, type BenchOptions } from "./options.ts";
import { runBench } from "./run.ts";

export interface ScaleRunOptions {
  /** petri rows per scale, in the order they run */
  scales: number[];
  /** the bench options every scale shares (rows and gasifierPerSiteMonth are set per scale) */
  bench: Partial<BenchOptions>;
  /** also run the push bench (bench-adoption.ts) at each scale */
  push: boolean;
  /** port of the push bench's own cluster */
  pushPort: number;
  outDir: string;
  quiet: boolean;
}

export interface ScaleRunFiles {
  bench: string[];
  push: string[];
}

/** The preset's gasifier rows per site-month, scaled with the petri rows (at least 1). */
export function gasifierFor(rows: number, quick: boolean): number {
  const preset = benchOptions({ quick });
  return Math.max(1, Math.round((preset.gasifierPerSiteMonth * rows) / preset.rows));
}

/**
 * Runs every scale; `databaseFor` gives a fresh, migrated database per scale (--db-url mode, as
 * the tests run it); without it each scale uses the bench's own cluster (its `bench` database is
 * dropped and made again per run).
 */
export async function runScales(o: ScaleRunOptions, databaseFor?: (rows: number) => Promise<string>): Promise<ScaleRunFiles> {
  mkdirSync(o.outDir, { recursive: true });
  const files: ScaleRunFiles = { bench: [], push: [] };
  for (const rows of o.scales) {
    if (!o.quiet) console.log(`\n=== scale ${rows.toLocaleString("en-US")} petri rows ===`);
    const dbUrl = databaseFor ? await databaseFor(rows) : undefined;
    const { files: f } = await runBench(benchOptions({
      ...o.bench, rows, gasifierPerSiteMonth: gasifierFor(rows, Boolean(o.bench.quick)),
      outDir: join(o.outDir, `bench-${rows}`), publish: false, quiet: o.quiet, ...(dbUrl ? { dbUrl } : {}),
    }));
    files.bench.push(f.json);
    if (o.push) files.push.push(await runPush(rows, o));
  }
  return files;
}

/** `npm run bench:adoption -- --rows N --out FILE` in a process of its own (its own cluster). */
function runPush(rows: number, o: ScaleRunOptions): Promise<string> {
  const out = join(o.outDir, `adoption-${rows}.json`);
  const args = ["tsx", join(REPO_ROOT, "scripts", "bench-adoption.ts"), "--rows", String(rows), "--port", String(o.pushPort), "--out", out];
  return new Promise((resolve, reject) => {
    const child = spawn("npx", args, { cwd: REPO_ROOT, stdio: o.quiet ? "ignore" : "inherit" });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`npm run bench:adoption -- --rows ${rows} exited with ${code}`))));
  });
}
