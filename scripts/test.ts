// `npm test`: a throwaway cluster of our own, migrations pushed with the real CLI, the pgTAP files
// in supabase/tests run by pg_prove (what `supabase test db` runs inside Docker), the edge
// functions served locally, then the vitest suites; the cluster is destroyed at the end.
// Then the PostgreSQL 17 leg (new Supabase projects run 17): a second throwaway cluster on Debian
// trixie's PostgreSQL 17 with pg_cron 1.6 (scripts/ensure-pg17.sh installs it), the same
// migrations, every pgTAP file and the database suites in PG17_SUITES.
// KEEP_TEST_STACK=1 leaves the clusters running for debugging; TEST_PG15_ONLY=1 (while working on a
// few suites: `TEST_PG15_ONLY=1 npm test -- test/edge/edge-cors.test.ts`) skips the PostgreSQL 17 leg.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { destroyCluster, ensureCluster, PG17_BIN, REPO_ROOT, type Cluster } from "./lib/cluster.ts";
import { deployOntoDemoApp } from "./lib/deploy.ts";
import { pgTapFailures, vitestFailures, type VitestReport } from "./lib/test-failures.ts";
import { poolerSettings, startPooler, stopPooler, type Pooler } from "./lib/pooler.ts";
import { destroyReplica, ensureReplica, type Replica } from "./lib/replica.ts";
import {
  ephemeralPortRange, stackEnv, startFunctionsDaemon, stopFunctionsDaemon, TEST_PORT_BASE, TEST_REPLICA_STACK, TEST_STACK, testPort,
  testPortBaseProblem, writeEnvFile,
} from "./lib/stack.ts";

export const TEMPLATE_DB = "app_template";
/**
 * The vitest suites the PostgreSQL 17 leg runs: everything that reads the server's own behaviour
 * (pg_cron, wal2json, the lock manager, the online migration's DDL, locks and retries) and needs
 * no edge function. The others run on 15 only, to keep the leg short.
 */
export const PG17_SUITES = [
  "test/partitions/lock-budget.test.ts",
  "test/migration/realtime.test.ts",
  "test/migration/publications-rollback.test.ts",
  "test/migration/migration-torture.test.ts",
  "test/migration/migration-cycle.test.ts",
  "test/migration/migration-guards.test.ts",
  "test/migration/migration-references.test.ts",
  "test/migration/partitioned-writes.test.ts",
  "test/migration/writes-without-program.test.ts",
  "test/partitions/maintenance.test.ts",
  // statement triggers with transition tables on a partitioned root, across the swap
  "test/partitions/metrics.test.ts",
  "test/migration/migration-backup.test.ts",
  "test/partitions/pg-cron.test.ts",
  // adopting the bundle: the push onto a populated project, access before and after, the runbook
  "test/adoption/adoption-push.test.ts",
  "test/adoption/adoption-access.test.ts",
  "test/adoption/runbook.test.ts",
];
const t0 = performance.now();
const log = (msg: string) => console.log(`[test ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

interface Tally { passed: number; failed: number }
const total: Tally = { passed: 0, failed: 0 };
/** Every failed test by name, printed again after the total: a CI log is often read from its tail only. */
const failures: string[] = [];
let exitCode = 1;

/** Both migrated databases: `postgres` (pgTAP, pg_cron) and the template every vitest file clones. */
// Each is the demo app (the customer's project) with the bundle pushed onto it and its setup steps run.
async function migrate(cluster: Cluster, label: string): Promise<void> {
  const admin = postgres(cluster.adminUrl(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${TEMPLATE_DB} owner postgres`);
  await admin.end();
  for (const db of ["postgres", TEMPLATE_DB]) {
    const d = await deployOntoDemoApp(cluster.url(db));
    log(`${label}: ${db}: demo app (${d.app.length} files), migrations pushed (${d.applied.length} applied), setup (${d.setup.tasks.length} steps, ${d.setup.seconds.toFixed(1)} s)`);
  }
}

/** pgTAP, as `supabase test db` does it, connected as postgres. */
function pgTap(cluster: Cluster, label: string): Tally & { ok: boolean } {
  const prove = spawnSync("pg_prove", ["--ext", ".sql", "-r", "supabase/tests",
    "--host", "127.0.0.1", "--port", String(cluster.port), "--username", "postgres", "--dbname", "postgres"], {
    cwd: REPO_ROOT, encoding: "utf8", env: { ...process.env, PGPASSWORD: "postgres" },
  });
  process.stdout.write(prove.stdout ?? "");
  process.stderr.write(prove.stderr ?? "");
  const testsLine = /Files=\d+, Tests=(\d+)/.exec(prove.stdout ?? "");
  const tests = Number(testsLine?.[1] ?? 0);
  const failedMatch = [...(prove.stdout ?? "").matchAll(/Failed (\d+)\/\d+ subtests/g)];
  const failed = failedMatch.reduce((n, m) => n + Number(m[1]), 0) + (prove.status !== 0 && failedMatch.length === 0 ? 1 : 0);
  const passed = Math.max(0, tests - failed);
  failures.push(...pgTapFailures(prove.stdout ?? "").map((f) => `${label} pgTAP ${f}`));
  if (prove.status !== 0 && failedMatch.length === 0) failures.push(`${label} pgTAP: pg_prove exited ${prove.status}`);
  log(`${label}: pgTAP: ${passed} passed, ${failed} failed`);
  return { passed, failed, ok: prove.status === 0 };
}

function vitest(label: string, reportName: string, env: Record<string, string>, args: string[]): Tally & { ok: boolean } {
  const report = join(REPO_ROOT, ".local", `vitest-report-${reportName}.json`);
  rmSync(report, { force: true });
  const vt = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "vitest"),
    ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...args], {
      cwd: REPO_ROOT,
      stdio: "inherit",
      env: { ...process.env, ...env },
    });
  let passed = 0;
  let failed = 1;
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, "utf8")) as VitestReport;
    failures.push(...vitestFailures(r, REPO_ROOT).map((f) => `${label} vitest ${f}`));
    passed = r.numPassedTests;
    failed = r.numFailedTests + (vt.status !== 0 && r.numFailedTests === 0 ? 1 : 0);
  } else {
    failures.push(`${label} vitest: no report (vitest exited ${vt.status})`);
  }
  log(`${label}: vitest: ${passed} passed, ${failed} failed`);
  return { passed, failed, ok: vt.status === 0 };
}

const add = (t: Tally) => {
  total.passed += t.passed;
  total.failed += t.failed;
};
const dbEnv = (c: Cluster) => ({
  TEST_DB_URL: c.url(),
  TEST_DB_ADMIN_URL: c.adminUrl(),
  TEST_TEMPLATE_DB: TEMPLATE_DB,
  TEST_DB_PORT: String(c.port),
  TEST_PG_BIN: c.pgBin,
});

const clusters: Cluster[] = [];
const poolers: Pooler[] = [];
const replicas: Replica[] = [];
/** The replica function server's lag bound and check interval: short, so the suites see a fallback quickly. */
const TEST_REPLICA_MAX_LAG_MS = "1000";
const TEST_REPLICA_CHECK_MS = "100";
const portProblem = testPortBaseProblem(TEST_PORT_BASE, ephemeralPortRange());
if (portProblem) {
  console.error(portProblem);
  process.exit(2);
}
try {
  let ok = true;
  // PostgreSQL 15 (Debian bookworm): every suite
  const cluster = await ensureCluster({ name: TEST_STACK.name, port: TEST_STACK.dbPort, throwaway: true, fresh: true });
  clusters.push(cluster);
  log(`PostgreSQL 15: cluster ${cluster.dataDir} on ${cluster.port}`);
  // the read replica (test/helpers/replica.ts), made while the cluster is small: the migrations stream to it
  const replica = await ensureReplica(cluster, { port: TEST_STACK.replicaPort, fresh: true });
  replicas.push(replica);
  log(`PostgreSQL 15: read replica ${replica.dataDir} on ${replica.port}`);
  await migrate(cluster, "PostgreSQL 15");
  const tap15 = pgTap(cluster, "PostgreSQL 15");
  add(tap15);

  // the transaction pooler (Supavisor's stand-in) with config.toml's [db.pooler] settings
  const pooler = await startPooler(cluster, TEST_STACK.poolerPort);
  poolers.push(pooler);
  log(`transaction pooler on ${pooler.port}`);
  const env = await stackEnv(TEST_STACK, cluster.url(), pooler.url(), cluster.adminUrl());
  writeEnvFile(TEST_STACK.envFile, env);
  stopFunctionsDaemon(TEST_STACK);
  await startFunctionsDaemon(TEST_STACK);
  // the same functions with the replica as the read function's DB_REPLICA_URL
  writeEnvFile(TEST_REPLICA_STACK.envFile, await stackEnv(TEST_REPLICA_STACK, cluster.url(), pooler.url(), cluster.adminUrl(), {
    DB_REPLICA_URL: replica.url(), DB_REPLICA_MAX_LAG_MS: TEST_REPLICA_MAX_LAG_MS, DB_REPLICA_CHECK_MS: TEST_REPLICA_CHECK_MS,
  }));
  stopFunctionsDaemon(TEST_REPLICA_STACK);
  await startFunctionsDaemon(TEST_REPLICA_STACK);
  log("functions served");
  const vt15 = vitest("PostgreSQL 15", TEST_STACK.name, {
    ...env, ...dbEnv(cluster),
    TEST_DB_POOLER_URL: pooler.url(),
    TEST_POOLER_ADMIN_URL: pooler.adminConsoleUrl,
    TEST_POOLER_POOL_SIZE: String(poolerSettings().defaultPoolSize),
    TEST_CLUSTER_NAME: cluster.name,
    TEST_REPLICA_PORT: String(replica.port),
    TEST_REPLICA_FUNCTIONS_URL: `http://127.0.0.1:${TEST_REPLICA_STACK.functionsPort}/functions/v1`,
    TEST_REPLICA_MAX_LAG_MS,
    TEST_REPLICA_CHECK_MS,
  }, process.argv.slice(2));
  add(vt15);
  stopFunctionsDaemon(TEST_STACK);
  stopFunctionsDaemon(TEST_REPLICA_STACK);
  if (process.env.KEEP_TEST_STACK !== "1") await destroyReplica(replica);
  if (process.env.KEEP_TEST_STACK !== "1") await stopPooler(pooler);
  if (process.env.KEEP_TEST_STACK !== "1") await destroyCluster(cluster);
  ok &&= tap15.ok && vt15.ok;

  // PostgreSQL 17 (Debian trixie, pg_cron 1.6): every pgTAP file, the database suites
  if (process.env.TEST_PG15_ONLY === "1") {
    log("PostgreSQL 17 leg skipped (TEST_PG15_ONLY=1): not a full run");
  } else {
    const leg17 = performance.now();
    const c17 = await ensureCluster({ name: `${TEST_STACK.name}-pg17`, port: testPort("db17"), throwaway: true, fresh: true, pgBin: PG17_BIN });
    clusters.push(c17);
    log(`PostgreSQL 17: cluster ${c17.dataDir} on ${c17.port}`);
    await migrate(c17, "PostgreSQL 17");
    const tap17 = pgTap(c17, "PostgreSQL 17");
    add(tap17);
    const vt17 = vitest("PostgreSQL 17", `${TEST_STACK.name}-pg17`, dbEnv(c17), PG17_SUITES);
    add(vt17);
    ok &&= tap17.ok && vt17.ok;
    log(`PostgreSQL 17 leg: ${((performance.now() - leg17) / 1000).toFixed(1)} s`);
  }

  exitCode = ok && total.failed === 0 && total.passed > 0 ? 0 : 1;
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  stopFunctionsDaemon(TEST_STACK);
  stopFunctionsDaemon(TEST_REPLICA_STACK);
  if (process.env.KEEP_TEST_STACK !== "1") {
    for (const r of replicas) await destroyReplica(r);
    for (const p of poolers) await stopPooler(p);
    for (const c of clusters) await destroyCluster(c);
  }
}
if (failures.length > 0) console.log(`\nFailed:\n${failures.map((f) => `  ${f}`).join("\n")}`);
console.log(`\n${total.passed} passed, ${total.failed + (exitCode !== 0 && total.failed === 0 ? 1 : 0)} failed`);
process.exit(exitCode);
