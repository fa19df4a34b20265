// `npx tsx scripts/bench-migration.ts [--rows-per-site-month N] [--sessions N] [--batch N]`
// Measures, on a throwaway cluster of its own: app write latency p50/p99 without a migration
// (baseline) and during the online migration of petri_observations; backfill rows/s against an
// offline INSERT … SELECT of the same rows into the same partition tree; the ACCESS EXCLUSIVE hold
// time of the swap. Prints measured figures only.
import postgres from "postgres";
import { parseArgs } from "node:util";
import { destroyCluster, ensureCluster } from "./lib/cluster.ts";
import { deployOntoDemoApp } from "./lib/deploy.ts";
import { DEFAULT_DEMO, generateDemoData } from "./lib/demo-data.ts";
import { percentile, startAppLoad, summarize } from "./lib/app-load.ts";
import { migrateOnline } from "./lib/migration-driver.ts";

const { values } = parseArgs({ options: {
  "rows-per-site-month": { type: "string", default: "500" }, sessions: { type: "string", default: "4" },
  batch: { type: "string", default: "2000" }, seconds: { type: "string", default: "5" }, port: { type: "string", default: "54460" },
} });
const port = Number(values.port);
const cluster = await ensureCluster({ name: `bench-${port}`, port, throwaway: true, fresh: true });
try {
  await deployOntoDemoApp(cluster.url());
  const sql = postgres(cluster.url(), { max: 2, onnotice: () => {} });
  const demo = await generateDemoData(sql, { ...DEFAULT_DEMO, petriPerSiteMonth: Number(values["rows-per-site-month"]), gasifierPerSiteMonth: 10 });
  console.log(`data: ${demo.petri} petri rows over ${demo.sites} sites`);
  const sessions = Number(values.sessions);

  const base = startAppLoad({ url: cluster.url(), table: "petri_observations", sessions, thinkMs: 2 });
  await new Promise((r) => setTimeout(r, Number(values.seconds) * 1000));
  const b = await base.stop();
  console.log(`baseline app load:        ${summarize(b)}`);

  // offline copy of the same rows into the same tree, rolled back
  let offlineRps = 0;
  await sql.begin(async (tx) => {
    await tx`select partition_mgmt.prepare_migration('petri')`;
    const [q] = await tx<{ q: string }[]>`
      select format('insert into %s (%s) select %s from public.petri_observations l', m.parent, partition_mgmt.column_list(m.parent),
                    partition_mgmt.legacy_select_list('petri', 'l')) as q
      from partition_mgmt.managed_tables m where table_key = 'petri'`;
    const t = performance.now();
    const r = await tx.unsafe(q!.q);
    offlineRps = r.count / ((performance.now() - t) / 1000);
    await tx`select 1/0`; // roll back
  }).catch((e: Error) => { if (!/division by zero/.test(e.message)) throw e; });

  const load = startAppLoad({ url: cluster.url(), table: "petri_observations", sessions, thinkMs: 2, seed: 11 });
  const res = await migrateOnline(sql, "petri", { batchSize: Number(values.batch), swap: true });
  const during = await load.stop();
  const onlineRps = res.rowsScanned / res.backfillSeconds;
  console.log(`app load during migration: ${summarize(during)}`);
  console.log("");
  console.log(`backfill online:  ${Math.round(onlineRps)} rows/s (${res.rowsScanned} rows, batches of ${values.batch}, ${res.batches} batches, ${res.backfillSeconds.toFixed(2)} s, under load)`);
  console.log(`offline INSERT … SELECT: ${Math.round(offlineRps)} rows/s (same rows, same tree, no load)`);
  console.log(`swap: ACCESS EXCLUSIVE held ${res.swap?.lockHeldMs} ms (acquired after ${res.swap?.attempts} attempt(s); measured inside swap_tables from lock to end of function)`);
  console.log(`write latency p50/p99: baseline ${percentile(b.latenciesMs, 50).toFixed(1)}/${percentile(b.latenciesMs, 99).toFixed(1)} ms, ` +
    `during migration ${percentile(during.latenciesMs, 50).toFixed(1)}/${percentile(during.latenciesMs, 99).toFixed(1)} ms; errors ${b.errors.length}/${during.errors.length}`);
  await sql.end();
} finally {
  await destroyCluster(cluster);
}
