// `npm start`: the main job on the local stack.
// Starts PostgreSQL (a Supabase-like cluster), builds the demo app (a customer's project) with its
// data, pushes supabase/migrations onto it with the real CLI and runs the setup steps while the app
// writes, serves the edge functions and prints how to reach everything; then the online migration.
import postgres from "postgres";
import { ensureCluster } from "./lib/cluster.ts";
import { poolerSettings, startPooler } from "./lib/pooler.ts";
import { pushMigrationsAsync } from "./lib/push-migrations.ts";
import { runOnlineMigrationDemo } from "./lib/main-job.ts";
import { runMaintenance } from "./lib/maintenance-runner.ts";
import { DEFAULT_DEMO, generateDemoData } from "./lib/demo-data.ts";
import { applyDemoApp } from "./lib/demo-app.ts";
import { runSetupAt } from "./lib/deploy.ts";
import { startLegacyAppLoad, summarize } from "./lib/app-load.ts";
import { DEV_STACK, functionsLogFile, stackEnv, startFunctionsDaemon, writeEnvFile } from "./lib/stack.ts";
import { commandLine } from "./lib/cli.ts";
import { ensureReplica, waitForReplay } from "./lib/replica.ts";

const { values } = commandLine({
  name: "npm start",
  usage: `usage: npm start
       npm start -- --replica

Installs what is missing (Debian's PostgreSQL 15, pg_cron, pgTAP, PgBouncer as root; npm ci), starts
the local stack (PostgreSQL on ${DEV_STACK.dbPort}, its transaction pooler on ${DEV_STACK.poolerPort}, edge functions
on ${DEV_STACK.functionsPort}), builds the demo app with its data, pushes the bundle onto it with the Supabase
CLI and runs its setup steps while a simulated app writes, then migrates the observation tables
online. Writes the connection details to .env.local.
Runs again safely: what is there is kept. Stop it with npm run stop.

environment:
  SUPABASE_COMPUTE=<size>                 the compute profile (nano, micro (default), small, medium, …)
  SUPABASE_MAX_LOCKS_PER_TRANSACTION=<n>  raise the lock setting, as supabase postgres-config does

options:
  --replica    also a read replica (a streaming standby on ${DEV_STACK.replicaPort}, docs/replicas.md): its URL goes
               to .env.local as DB_REPLICA_URL and the read function serves reads from it
  -h, --help   this help`,
  options: { replica: { type: "boolean" } },
});
const withReplica = values.replica === true;

const step = (msg: string) => console.log(`\n==> ${msg}`);

step(`PostgreSQL 15 on 127.0.0.1:${DEV_STACK.dbPort}`);
const cluster = await ensureCluster({ name: DEV_STACK.name, port: DEV_STACK.dbPort });
console.log(cluster.wasRunning ? "    already running" : cluster.created ? "    created and started" : "    started");
console.log(`    data: ${cluster.dataDir}`);

const poolerConfig = poolerSettings();
step(`transaction pooler (PgBouncer, config.toml [db.pooler]) on 127.0.0.1:${DEV_STACK.poolerPort}`);
const pooler = poolerConfig.enabled ? await startPooler(cluster, DEV_STACK.poolerPort, poolerConfig) : null;
console.log(pooler
  ? `    ${poolerConfig.poolMode} mode, ${poolerConfig.defaultPoolSize} server connections per database and role, ${poolerConfig.maxClientConn} clients`
  : "    disabled in supabase/config.toml: DB_POOLER_URL is the direct URL");

step("the demo app: a customer's project as it is before the bundle (demo-app/supabase/migrations) and its data");
const app = await applyDemoApp(cluster.url());
console.log(app.length ? `    ${app.length} migrations of the app applied: ${app.join(", ")}` : "    already there");
const sql = postgres(cluster.url(), { max: 2, onnotice: () => {} });
try {
  const t0 = performance.now();
  const counts = await generateDemoData(sql, DEFAULT_DEMO, (s) => console.log(`    … ${s}`));
  console.log(counts.skipped ? "    already loaded" : `    loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`    ${counts.companies} companies, ${counts.programs} programs, ${counts.sites} sites, ` +
    `${counts.submissions} submissions, ${counts.petri} petri and ${counts.gasifier} gasifier observations`);
} finally {
  await sql.end();
}

// The plan's Phase 1 (no downtime): the push and the setup steps it leaves, while the app writes.
step("supabase db push (as postgres, the way users deploy) and the setup steps it leaves, while the app writes");
{
  const load = startLegacyAppLoad({ url: cluster.url(), table: "petri_observations", sessions: 4, thinkMs: 2 });
  let stats;
  try {
    const t0 = performance.now();
    const push = await pushMigrationsAsync(cluster.url());
    if (push.status !== 0) throw new Error(`supabase db push failed (exit ${push.status}):\n${push.output}`);
    console.log(push.applied.length ? `    applied ${push.applied.length} migrations in ${((performance.now() - t0) / 1000).toFixed(1)} s` : "    up to date: nothing to apply");
    const setup = await runSetupAt(cluster.url());
    console.log(setup.tasks.length ? `    setup: ${setup.tasks.join(", ")} in ${setup.seconds.toFixed(1)} s (${setup.steps} steps)` : "    setup: nothing pending");
  } finally {
    stats = await load.stop();
  }
  console.log(`    the app meanwhile: ${summarize(stats)}`);
}

let replicaUrl: string | undefined;
if (withReplica) {
  step(`read replica (pg_basebackup -R, a hot standby with the same compute profile) on 127.0.0.1:${DEV_STACK.replicaPort}`);
  const replica = await ensureReplica(cluster, { port: DEV_STACK.replicaPort });
  console.log(replica.wasRunning ? "    already running" : replica.created ? "    created and started" : "    started");
  const caughtUp = await waitForReplay(replica, { timeoutMs: 120_000 });
  console.log(`    data: ${replica.dataDir}; replayed up to ${caughtUp.replayLsn} (waited ${Math.round(caughtUp.waitedMs)} ms)`);
  replicaUrl = replica.url();
}
const env = await stackEnv(DEV_STACK, cluster.url(), pooler ? pooler.url() : cluster.url(), cluster.adminUrl(),
  replicaUrl ? { DB_REPLICA_URL: replicaUrl } : {});
writeEnvFile(DEV_STACK.envFile, env);

step(`edge functions on http://127.0.0.1:${DEV_STACK.functionsPort}/functions/v1/<name>, ${DEV_STACK.workersPerFunction} workers each (FUNCTIONS_WORKERS)`);
const fn = await startFunctionsDaemon(DEV_STACK);
console.log(fn.started ? `    started (pid ${fn.pid}, log ${functionsLogFile(DEV_STACK)})`
  : `    already running (pid ${fn.pid}); it read .env.local when it started: npm run stop, then npm start, to serve a changed DB_REPLICA_URL`);

console.log(`
Local stack is running. Connection details are in ${DEV_STACK.envFile}:
  SUPABASE_URL              ${env.SUPABASE_URL}
  SUPABASE_FUNCTIONS_URL    ${env.SUPABASE_FUNCTIONS_URL}
  SUPABASE_DB_URL           ${env.SUPABASE_DB_URL}  (direct)
  DB_POOLER_URL             ${env.DB_POOLER_URL}  (transaction pooler)
  DB_REPLICA_URL            ${env.DB_REPLICA_URL ?? "(none: npm start -- --replica)"}
  SUPABASE_ANON_KEY         ${env.SUPABASE_ANON_KEY}
  SUPABASE_SERVICE_ROLE_KEY ${env.SUPABASE_SERVICE_ROLE_KEY}

Try:
  curl -s ${env.SUPABASE_FUNCTIONS_URL}/health -H "Authorization: Bearer $SUPABASE_ANON_KEY"
  psql "${env.SUPABASE_DB_URL}"
Stop everything with: npm run stop
`);

// ---------------------------------------------------------------------------------------------
// The main job: the plan's online migration on the demo data, with a simulated app writing.
// ---------------------------------------------------------------------------------------------
step("online migration of the observation tables (the plan, phases 3-4) while a simulated app writes");
{
  const mj = postgres(cluster.url(), { max: 2, onnotice: () => {} });
  try {
    await runOnlineMigrationDemo(mj, cluster.url(), (s) => console.log(s));
  } finally {
    await mj.end();
  }
}
step("maintenance (what pg_cron runs nightly) and health");
{
  const m = postgres(cluster.url(), { max: 1, onnotice: () => {} });
  try {
    const t0 = performance.now();
    await runMaintenance(m);
    console.log(`    maintenance run: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const findings = await m<{ severity: string; finding: string; detail: string }[]>`select severity, finding, detail from partition_mgmt.health()`;
    console.log(findings.length ? findings.map((f) => `    ${f.severity}: ${f.finding}: ${f.detail}`).join("\n") : "    health: no findings");
  } finally {
    await m.end();
  }
}
console.log("\nThe stack keeps running. Operate it with npm run admin -- <action> (see README). Stop it with: npm run stop");
