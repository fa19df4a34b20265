// `npm test`: a throwaway cluster of our own, migrations pushed with the real CLI, the pgTAP files
// in supabase/tests run by pg_prove (what `supabase test db` runs inside Docker), the edge
// functions served locally, then the vitest suites; the cluster is destroyed at the end.
// KEEP_TEST_STACK=1 leaves it running for debugging.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { destroyCluster, ensureCluster, REPO_ROOT } from "./lib/cluster.ts";
import { pushMigrations } from "./lib/push-migrations.ts";
import { stackEnv, startFunctionsDaemon, stopFunctionsDaemon, TEST_STACK, writeEnvFile } from "./lib/stack.ts";

export const TEMPLATE_DB = "app_template";
const t0 = performance.now();
const log = (msg: string) => console.log(`[test ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

let pgPassed = 0;
let pgFailed = 0;
let vtPassed = 0;
let vtFailed = 0;
let exitCode = 1;

const cluster = ensureCluster({ name: TEST_STACK.name, port: TEST_STACK.dbPort, throwaway: true, fresh: true });
try {
  log(`cluster ${cluster.dataDir} on ${cluster.port}`);
  const pushed = pushMigrations(cluster.url());
  log(`migrations pushed to postgres: ${pushed.applied.length} applied`);

  const admin = postgres(cluster.adminUrl(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${TEMPLATE_DB} owner postgres`);
  await admin.end();
  const pushedTemplate = pushMigrations(cluster.url(TEMPLATE_DB));
  log(`migrations pushed to ${TEMPLATE_DB}: ${pushedTemplate.applied.length} applied`);

  // pgTAP, as `supabase test db` does it, connected as postgres
  const prove = spawnSync("pg_prove", ["--ext", ".sql", "-r", "supabase/tests",
    "--host", "127.0.0.1", "--port", String(cluster.port), "--username", "postgres", "--dbname", "postgres"], {
    cwd: REPO_ROOT, encoding: "utf8", env: { ...process.env, PGPASSWORD: "postgres" },
  });
  process.stdout.write(prove.stdout ?? "");
  process.stderr.write(prove.stderr ?? "");
  const testsLine = /Files=\d+, Tests=(\d+)/.exec(prove.stdout ?? "");
  const total = Number(testsLine?.[1] ?? 0);
  const failedMatch = [...(prove.stdout ?? "").matchAll(/Failed (\d+)\/\d+ subtests/g)];
  pgFailed = failedMatch.reduce((n, m) => n + Number(m[1]), 0) + (prove.status !== 0 && failedMatch.length === 0 ? 1 : 0);
  pgPassed = Math.max(0, total - pgFailed);
  log(`pgTAP: ${pgPassed} passed, ${pgFailed} failed`);

  const env = await stackEnv(TEST_STACK, cluster.url(), cluster.adminUrl());
  writeEnvFile(TEST_STACK.envFile, env);
  stopFunctionsDaemon(TEST_STACK);
  await startFunctionsDaemon(TEST_STACK);
  log("functions served");

  const report = join(REPO_ROOT, ".local", `vitest-report-${TEST_STACK.name}.json`);
  rmSync(report, { force: true });
  const vt = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "vitest"),
    ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)], {
      cwd: REPO_ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        ...env,
        TEST_DB_URL: cluster.url(),
        TEST_DB_ADMIN_URL: cluster.adminUrl(),
        TEST_TEMPLATE_DB: TEMPLATE_DB,
        TEST_DB_PORT: String(cluster.port),
      },
    });
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, "utf8")) as { numPassedTests: number; numFailedTests: number; numTotalTestSuites: number; numFailedTestSuites: number };
    vtPassed = r.numPassedTests;
    vtFailed = r.numFailedTests + (vt.status !== 0 && r.numFailedTests === 0 ? 1 : 0);
  } else {
    vtFailed = 1;
  }
  log(`vitest: ${vtPassed} passed, ${vtFailed} failed`);
  exitCode = pgFailed === 0 && vtFailed === 0 && prove.status === 0 && vt.status === 0 && pgPassed + vtPassed > 0 ? 0 : 1;
} catch (e) {
  console.error(e);
  exitCode = 1;
} finally {
  stopFunctionsDaemon(TEST_STACK);
  if (process.env.KEEP_TEST_STACK !== "1") destroyCluster(cluster);
}
console.log(`\n${pgPassed + vtPassed} passed, ${pgFailed + vtFailed + (exitCode !== 0 && pgFailed + vtFailed === 0 ? 1 : 0)} failed`);
process.exit(exitCode);
