// `npm run bench:load -- [--clients N] [--seconds N] [--workers N] [--quick] [--publish]`
// The read function at Micro's limits (issue 22): N concurrent clients for S seconds on
// get-observations-optimized (pages and aggregates, real JWTs of several companies' users), the
// app's own PostgREST-shaped reads beside it (test/helpers/postgrest.ts: the transaction and SQL
// PostgREST sends, each session a connection of PostgREST's pool), pg_cron's maintenance job
// scheduled to run inside the window, on a cluster of its own under the Micro compute profile
// (max_connections 60) with its transaction pooler. The functions run W Deno workers each (the
// platform's isolates, each its own postgres.js pool of up to 3). Two runs on the same data: the
// functions on the pooler (DB_POOLER_URL) and on the direct URL (no DB_POOLER_URL). Prints, and
// with --publish writes docs/benchmarks/load.{md,json}: requests and errors per kind (connection
// refusals counted apart), p50/p95/p99, the app's statements, connections in use sampled from
// pg_stat_activity by who opened them, and their peak. Measured figures only.
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import postgres, { type Sql } from "postgres";
import { readStatement, send, userCaller } from "../test/helpers/postgrest.ts";
import { percentile } from "./lib/app-load.ts";
import { commandLine, integerOption, usageExit } from "./lib/cli.ts";
import { destroyCluster, ensureCluster, REPO_ROOT } from "./lib/cluster.ts";
import { serverLimits } from "./lib/compute-profiles.ts";
import { deployOntoDemoApp } from "./lib/deploy.ts";
import { DEFAULT_DEMO, generateDemoData } from "./lib/demo-data.ts";
import { makeApiKeys, signUserToken } from "./lib/jwt-keys.ts";
import { poolerSettings, startPooler, stopPooler } from "./lib/pooler.ts";
import { LOCAL_JWT_SECRET } from "./lib/stack.ts";

const NAME = "npm run bench:load";
const FN = "get-observations-optimized";
/** PostgREST's default db-pool: the app's sessions */
const POSTGREST_POOL = 10;
const USAGE = `usage: npm run bench:load -- [options]

The read function (${FN}) under N concurrent clients for S seconds, beside the app's
PostgREST-shaped reads and pg_cron's maintenance job, on a cluster of its own (Micro: 60
connections) with its transaction pooler; once with the functions on the pooler (DB_POOLER_URL),
once on the direct URL. Prints latency, errors and connections in use.

options:
  --clients <n>       concurrent clients of the function (default 200)
  --seconds <n>       length of each run (default 60)
  --workers <n>       Deno workers (isolates) of the function (default 20)
  --app-sessions <n>  the app's PostgREST-shaped sessions (default ${POSTGREST_POOL}, PostgREST's db-pool)
  --companies <n>     companies, two users each, whose tokens the clients use (default 4)
  --port <n>          the cluster's port (default 54480; the pooler takes port + 3)
  --quick             a few clients for a few seconds on little data (the test's run)
  --out <dir>         also write load.md and load.json there
  --publish           also write docs/benchmarks/load.{md,json}
  --keep              leave the cluster running afterwards
  -h, --help          this help`;
const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: {
    clients: { type: "string" }, seconds: { type: "string" }, workers: { type: "string" }, "app-sessions": { type: "string" },
    companies: { type: "string" }, port: { type: "string", default: "54480" }, quick: { type: "boolean", default: false },
    out: { type: "string" }, publish: { type: "boolean", default: false }, keep: { type: "boolean", default: false },
  },
});
const quick = values.quick;
let clients: number, seconds: number, workers: number, appSessions: number, companies: number, port: number;
try {
  clients = integerOption("--clients", values.clients, 1, 2000) ?? (quick ? 6 : 200);
  seconds = integerOption("--seconds", values.seconds, 1, 3600) ?? (quick ? 3 : 60);
  workers = integerOption("--workers", values.workers, 1, 64) ?? (quick ? 2 : 20);
  appSessions = integerOption("--app-sessions", values["app-sessions"], 0, 100) ?? (quick ? 2 : POSTGREST_POOL);
  companies = integerOption("--companies", values.companies, 1, 50) ?? (quick ? 2 : 4);
  port = integerOption("--port", values.port, 1024, 65532)!;
} catch (e) {
  usageExit(NAME, USAGE, (e as Error).message);
}

const log = (s: string) => console.log(`[bench:load ${new Date().toISOString().slice(11, 19)}] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Who opened a backend: the application_name each party connects with. */
const APP_NAMES = { functions: "bench-load-functions", pooler: "bench-load-functions-pooled", app: "bench-load-app", sampler: "bench-load-sampler" };
const CATEGORIES = ["functions", "pooler", "app", "cron", "others"] as const;
type Category = (typeof CATEGORIES)[number];
type RequestKind = "page" | "aggregate_day" | "aggregate_site";
const KINDS: RequestKind[] = ["page", "aggregate_day", "aggregate_site"];

interface ErrorCounts { too_many_connections: number; reserved_slots: number; other: number }
interface KindStats { kind: string; requests: number; errors: ErrorCounts; p50: number; p95: number; p99: number; max: number }
interface Sample { at_s: number; client_backends: number; by: Record<Category, number> }
interface RunResult {
  label: string; functions_url: "pooled" | "direct"; seconds: number; requests_per_second: number;
  kinds: KindStats[]; app: KindStats; error_samples: string[];
  /** the function's failed requests by what the client saw */
  function_errors_by_message: Record<string, number>;
  connections: { samples: Sample[]; peak_client_backends: number; peak_by: Record<Category, number>; max_connections: number };
  cron: { runs: number; statuses: string[] };
  /** the database's refusals of a connection, from the functions' logs (the answer, 503 database_unavailable, says 53300 for both kinds) */
  database_refusals: Refusals;
  /** the functions' pool in the pooler (SHOW POOLS), peaks over the window */
  pooler: { samples: PoolerSample[]; peak_clients: number; peak_waiting: number; peak_servers: number; peak_maxwait_s: number };
}

const emptyErrors = (): ErrorCounts => ({ too_many_connections: 0, reserved_slots: 0, other: 0 });
function classify(message: string, into: ErrorCounts): void {
  if (/too many connections|too many clients/i.test(message)) into.too_many_connections++;
  else if (/remaining connection slots are reserved/i.test(message)) into.reserved_slots++;
  else into.other++;
}
const errorTotal = (e: ErrorCounts) => e.too_many_connections + e.reserved_slots + e.other;
function kindStats(kind: string, latencies: number[], errors: ErrorCounts): KindStats {
  return { kind, requests: latencies.length + errorTotal(errors), errors, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: latencies.reduce((m, x) => Math.max(m, x), 0) };
}

const withAppName = (url: string, name: string) => {
  const u = new URL(url);
  u.searchParams.set("application_name", name);
  return u.toString();
};

interface Scope { userId: string; companyId: string; programId: string; token: string }

/** One connection-count sample: every backend by who opened it; client backends are what max_connections bounds. */
async function sample(sql: Sql, t0: number): Promise<Sample> {
  const rows = await sql<{ category: Category; client: boolean; n: number }[]>`
    select case
             when application_name = ${APP_NAMES.functions} then 'functions'
             when application_name = ${APP_NAMES.pooler} then 'pooler'
             when application_name = ${APP_NAMES.app} then 'app'
             when application_name like 'pg_cron%' or backend_type like 'pg_cron%' then 'cron'
             else 'others' end as category,
           backend_type = 'client backend' as client, count(*)::int as n
    from pg_stat_activity group by 1, 2`;
  const by = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  let clientBackends = 0;
  for (const r of rows) {
    by[r.category] += r.n;
    if (r.client) clientBackends += r.n;
  }
  return { at_s: Math.round((performance.now() - t0) / 100) / 10, client_backends: clientBackends, by };
}

interface PoolerSample { at_s: number; clients: number; waiting: number; servers: number; maxwait_s: number }
const execFileAsync = promisify(execFile);

/** The functions' pool in PgBouncer's SHOW POOLS (database postgres, user postgres); null without a pooler. */
async function poolerSample(psql: string, consoleUrl: string, t0: number): Promise<PoolerSample | null> {
  const { stdout } = await execFileAsync(psql, [consoleUrl, "-X", "-A", "-F", "\t", "-P", "footer=off", "-c", "show pools"], { encoding: "utf8" });
  const [head = "", ...rows] = stdout.trimEnd().split("\n");
  const cols = head.split("\t");
  const pool = rows.map((r) => Object.fromEntries(r.split("\t").map((v, i) => [cols[i], v]))).find((r) => r.database === "postgres" && r.user === "postgres");
  if (!pool) return { at_s: Math.round((performance.now() - t0) / 100) / 10, clients: 0, waiting: 0, servers: 0, maxwait_s: 0 };
  const n = (k: string) => Number(pool[k] ?? 0);
  return {
    at_s: Math.round((performance.now() - t0) / 100) / 10,
    clients: n("cl_active") + n("cl_waiting"),
    waiting: n("cl_waiting"),
    servers: n("sv_active") + n("sv_idle") + n("sv_used") + n("sv_tested") + n("sv_login"),
    maxwait_s: n("maxwait") + n("maxwait_us") / 1e6,
  };
}

/** What the functions' workers logged: the database's connection refusals among their errors. */
interface Refusals { too_many_connections: number; reserved_slots: number; samples: string[]; /** other errors the server logged */ other: string[] }

/**
 * scripts/serve-functions.ts in a process of its own (as the platform's gateway and isolates are
 * not the clients'): the clients' event loop then measures, it does not also forward.
 */
async function serveFunctions(env: Record<string, string>, dir: string, refusals: Refusals): Promise<{ url: string; stop: () => Promise<void> }> {
  const envFile = join(dir, "functions.env");
  // port 0: the server takes a free one and says which
  writeFileSync(envFile, Object.entries({ ...env, FUNCTIONS_PORT: "0", SUPABASE_URL: "http://127.0.0.1:1" }).map(([k, v]) => `${k}=${v}`).join("\n") + "\n", { mode: 0o600 });
  const child = spawn(join(REPO_ROOT, "node_modules", ".bin", "tsx"),
    [join(REPO_ROOT, "scripts", "serve-functions.ts"), "--env-file", envFile, "--workers", "1", "--workers", `${FN}=${workers}`],
    { cwd: REPO_ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const tail: string[] = [];
  let ready: (url: string) => void = () => undefined;
  const listening = new Promise<string>((resolve) => (ready = resolve));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      const serving = /^Serving functions on (http:\/\/[^/]+)\//.exec(line);
      if (serving?.[1]) ready(serving[1]);
      if (/too many clients|too many connections/i.test(line)) refusals.too_many_connections++;
      else if (/remaining connection slots are reserved/i.test(line)) refusals.reserved_slots++;
      else {
        if (/error|exited|crash/i.test(line) && refusals.other.length < 5) refusals.other.push(line.slice(0, 300));
        return;
      }
      if (refusals.samples.length < 3) refusals.samples.push(line.slice(0, 240));
    });
  }
  const stop = async () => {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch {
      // gone already
    }
    await exited;
  };
  // unref'd: a pending timer must not keep the bench alive after its last run
  const timedOut = new Promise<null>((resolve) => setTimeout(() => resolve(null), 300_000).unref());
  const url = await Promise.race([listening, exited.then(() => null), timedOut]);
  if (url === null) {
    await stop();
    throw new Error(`the functions server did not start:\n${tail.join("\n")}`);
  }
  return { url, stop };
}

interface RunContext {
  directUrl: string; pooledUrl: string; poolerConsoleUrl: string; psql: string; adminUrl: string;
  anonKey: string; serviceRoleKey: string; scopes: Scope[]; maxConnections: number; dir: string;
}

async function oneRun(label: string, mode: "pooled" | "direct", o: RunContext): Promise<RunResult> {
  log(`${label}: ${workers} workers of ${FN}, functions on the ${mode} URL`);
  const refusals: Refusals = { too_many_connections: 0, reserved_slots: 0, samples: [], other: [] };
  const server = await serveFunctions({
    SUPABASE_DB_URL: withAppName(o.directUrl, APP_NAMES.functions),
    ...(mode === "pooled" ? { DB_POOLER_URL: withAppName(o.pooledUrl, APP_NAMES.pooler) } : {}),
    SUPABASE_ANON_KEY: o.anonKey,
    SUPABASE_SERVICE_ROLE_KEY: o.serviceRoleKey,
    JWT_SECRET: LOCAL_JWT_SECRET,
  }, o.dir, refusals);
  // opened before the load, as the superuser: its slot is one of superuser_reserved_connections
  const admin = postgres(withAppName(o.adminUrl, APP_NAMES.sampler), { max: 1, onnotice: () => {} });
  const appSqls: Sql[] = [];
  try {
    const [{ jobid } = { jobid: 0 }] = await admin<{ jobid: number }[]>`select jobid::int from cron.job where jobname = 'partition-maintenance-nightly'`;
    const [{ before } = { before: 0 }] = await admin<{ before: number }[]>`select coalesce(max(runid), 0)::int as before from cron.job_run_details`;
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    // pg_cron 1.4 schedules by the minute: every minute during the window runs the job once in any 60 s
    await admin`select * from partition_mgmt.set_maintenance_job('partition-maintenance-nightly', '* * * * *')`;
    const samples: Sample[] = [];
    const poolerSamples: PoolerSample[] = [];
    const sampler = (async () => {
      while (performance.now() < deadline) {
        samples.push(await sample(admin, t0));
        const p = await poolerSample(o.psql, o.poolerConsoleUrl, t0);
        if (p) poolerSamples.push(p);
        await sleep(500);
      }
    })();

    const lat: Record<RequestKind, number[]> = { page: [], aggregate_day: [], aggregate_site: [] };
    const errs: Record<RequestKind, ErrorCounts> = { page: emptyErrors(), aggregate_day: emptyErrors(), aggregate_site: emptyErrors() };
    const errorSamples: string[] = [];
    const errorMessages = new Map<string, number>();
    const noteError = (message: string) => {
      const key = message.replace(/[0-9a-f-]{36}/g, "<uuid>").slice(0, 160);
      errorMessages.set(key, (errorMessages.get(key) ?? 0) + 1);
    };
    const client = async (i: number) => {
      for (let n = 0; performance.now() < deadline; n++) {
        const scope = o.scopes[(i + n) % o.scopes.length]!;
        // 3 pages for one aggregate of each kind (a frontend's list and its charts), each client
        // starting elsewhere in the cycle so that even a short run sends every kind
        const slot = (i + n) % 5;
        const kind: RequestKind = slot === 3 ? "aggregate_day" : slot === 4 ? "aggregate_site" : "page";
        const body = kind === "page"
          ? { company_id: scope.companyId, program_id: scope.programId, limit: 100 }
          : { mode: "aggregate", company_id: scope.companyId, program_id: scope.programId, group_by: kind === "aggregate_day" ? "day" : "site" };
        const started = performance.now();
        try {
          const res = await fetch(`${server.url}/functions/v1/${FN}`, {
            method: "POST",
            headers: { Authorization: `Bearer ${scope.token}`, apikey: o.anonKey, "Content-Type": "application/json" },
            body: JSON.stringify(body),
          });
          const text = await res.text();
          if (res.status === 200) lat[kind].push(performance.now() - started);
          else {
            classify(text, errs[kind]);
            noteError(`${res.status}: ${text}`);
            if (errorSamples.length < 10) errorSamples.push(`${kind} ${res.status}: ${text.slice(0, 200)}`);
          }
        } catch (e) {
          // fetch's own message ("fetch failed") says nothing; its cause says what broke
          const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
          const message = `${(e as Error).message}${cause ? ` (${cause.code ?? ""} ${cause.message ?? ""})` : ""}`;
          classify(message, errs[kind]);
          noteError(message);
          if (errorSamples.length < 10) errorSamples.push(`${kind}: ${message}`);
        }
      }
    };
    // the app: PostgREST's transaction and read, a user's newest 50 rows of a program
    const appLat: number[] = [];
    const appErr = emptyErrors();
    const appSession = async (i: number) => {
      const sql = postgres(withAppName(o.directUrl, APP_NAMES.app), { max: 1, onnotice: () => {} });
      appSqls.push(sql);
      for (let n = 0; performance.now() < deadline; n++) {
        const scope = o.scopes[(i + n) % o.scopes.length]!;
        const caller = userCaller(scope.userId);
        const statement = readStatement({
          table: "petri_observations",
          filters: [{ column: "program_id", op: "eq", value: scope.programId }],
          order: [{ column: "created_at", ascending: false }],
          limit: 50,
        });
        const started = performance.now();
        try {
          const r = await send(sql, caller, statement);
          if (r.error) {
            classify(r.error.message, appErr);
            if (errorSamples.length < 10) errorSamples.push(`app: ${r.error.code} ${r.error.message}`);
          } else appLat.push(performance.now() - started);
        } catch (e) {
          classify((e as Error).message, appErr);
          if (errorSamples.length < 10) errorSamples.push(`app: ${(e as Error).message}`);
        }
        await sleep(5);
      }
    };
    await Promise.all([
      ...Array.from({ length: clients }, (_, i) => client(i)),
      ...Array.from({ length: appSessions }, (_, i) => appSession(i)),
      sampler,
    ]);
    const elapsed = (performance.now() - t0) / 1000;
    await admin`select * from partition_mgmt.set_maintenance_job('partition-maintenance-nightly', '0 2 * * *')`;
    // a run that started in the window may still be going
    for (let i = 0; i < 120; i++) {
      const [r] = await admin<{ n: number }[]>`select count(*)::int as n from cron.job_run_details where jobid = ${jobid} and runid > ${before} and status in ('starting', 'running')`;
      if (!r?.n) break;
      await sleep(1000);
    }
    const runs = await admin<{ status: string; seconds: number }[]>`
      select status, extract(epoch from end_time - start_time)::float8 as seconds from cron.job_run_details where jobid = ${jobid} and runid > ${before} order by runid`;
    const kinds = KINDS.map((k) => kindStats(k, lat[k], errs[k]));
    const peakBy = Object.fromEntries(CATEGORIES.map((c) => [c, Math.max(0, ...samples.map((s) => s.by[c]))])) as Record<Category, number>;
    const result: RunResult = {
      label, functions_url: mode, seconds: elapsed,
      requests_per_second: kinds.reduce((n, k) => n + k.requests, 0) / elapsed,
      kinds, app: kindStats("app (PostgREST read)", appLat, appErr), error_samples: errorSamples,
      function_errors_by_message: Object.fromEntries(errorMessages),
      connections: { samples, peak_client_backends: Math.max(0, ...samples.map((s) => s.client_backends)), peak_by: peakBy, max_connections: o.maxConnections },
      database_refusals: refusals,
      pooler: {
        samples: poolerSamples,
        peak_clients: Math.max(0, ...poolerSamples.map((p) => p.clients)),
        peak_waiting: Math.max(0, ...poolerSamples.map((p) => p.waiting)),
        peak_servers: Math.max(0, ...poolerSamples.map((p) => p.servers)),
        peak_maxwait_s: Math.max(0, ...poolerSamples.map((p) => p.maxwait_s)),
      },
      cron: { runs: runs.length, statuses: runs.map((r) => `${r.status} in ${(r.seconds ?? 0).toFixed(1)} s`) },
    };
    log(`${label}: ${kinds.map((k) => `${k.kind} ${k.requests} (${errorTotal(k.errors)} errors, p50 ${k.p50.toFixed(0)} ms)`).join(", ")}; peak ${result.connections.peak_client_backends} client backends; refusals logged: ${refusals.too_many_connections} too many connections, ${refusals.reserved_slots} reserved slots`);
    return result;
  } finally {
    await Promise.all(appSqls.map((s) => s.end({ timeout: 5 })));
    await server.stop();
    await admin.end({ timeout: 5 });
  }
}

interface Setup { companies: number; programs_per_company: number; sites_per_program: number; months: number; petri_per_site_month: number }
function markdown(r: { measured_at: string; profile: string; max_connections: number; machine: string; pool: ReturnType<typeof poolerSettings>; rows: number; setup: Setup; runs: RunResult[] }): string {
  const L: string[] = [];
  const cmd = `npm run bench:load${values.publish ? " -- --publish" : ""}${quick ? " -- --quick" : ""}`;
  L.push("# Benchmark: the read function at Micro's limits, with and without the transaction pooler", "");
  L.push(`Measured ${r.measured_at.replace("T", " ").slice(0, 19)} UTC with \`${cmd}\` (scripts/bench-load.ts).`, "");
  L.push(`- **Server**: ${r.machine.split(" on ")[0]}, compute profile ${r.profile} (max_connections ${r.max_connections}); 2 cores shared with other work on this machine, so latencies are this machine's, not hosted's.`);
  L.push(`- **Data**: the demo app with the bundle pushed and its setup steps run (the legacy table, not migrated), ${r.rows.toLocaleString("en-US")} petri observations, ${r.setup.companies} companies of ${r.setup.programs_per_company} programs each.`);
  L.push(`- **Function**: ${FN} served by scripts/serve-functions.ts in a process of its own (the clients' loop only measures) with ${workers} Deno workers (the platform's isolates; each its own postgres.js pool of up to 3 connections, so up to ${workers * 3} connections), requests to the least busy (docs/local-stack.md): ${clients} clients make about ${Math.round(clients / workers)} requests in flight per isolate, and on the direct URL the isolates may open ${workers * 3} connections of the server's ${r.max_connections}.`);
  L.push(`- **Clients**: ${clients} concurrent clients for ${seconds} s, each sending one request after the other with a real user JWT (${r.setup.companies * 2} users of ${r.setup.companies} companies): 3 pages (100 rows) for one aggregate per UTC day and one per site, over one program of the user's company.`);
  L.push(`- **Beside it**: ${appSessions} app sessions (PostgREST's default db-pool) sending PostgREST's transaction and read (a user's newest 50 rows of a program; test/helpers/postgrest.ts) on direct connections, and pg_cron's partition-maintenance-nightly scheduled every minute during the window.`);
  L.push(`- **Pooler**: PgBouncer in transaction mode as config.toml's [db.pooler] declares it: default_pool_size ${r.pool.defaultPoolSize}, max_client_conn ${r.pool.maxClientConn}.`, "");
  L.push("## Requests", "", "| Run | Kind | Requests | Errors | the answer says: too many connections | the answer says: reserved slots | cause not in the answer | p50 ms | p95 ms | p99 ms | max ms |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const run of r.runs) {
    for (const k of [...run.kinds, run.app]) {
      L.push(`| ${run.label} | ${k.kind} | ${k.requests} | ${errorTotal(k.errors)} | ${k.errors.too_many_connections} | ${k.errors.reserved_slots} | ${k.errors.other} | ${k.p50.toFixed(1)} | ${k.p95.toFixed(1)} | ${k.p99.toFixed(1)} | ${k.max.toFixed(0)} |`);
    }
  }
  L.push("", "A function whose connection the database refuses answers 503 database_unavailable with details.code 53300 for both kinds; which kind each was is counted from the functions' logs, where each is one line:", "");
  L.push("| Run | Function requests/s | Function errors | of which refused: too many connections | remaining connection slots are reserved | App errors | pg_cron maintenance runs in the window |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const run of r.runs) {
    const fnErrors = run.kinds.reduce((n, k) => n + errorTotal(k.errors), 0);
    L.push(`| ${run.label} | ${run.requests_per_second.toFixed(0)} | ${fnErrors} | ${run.database_refusals.too_many_connections} | ${run.database_refusals.reserved_slots} | ${errorTotal(run.app.errors)} | ${run.cron.runs ? run.cron.statuses.join(", ") : "none"} |`);
  }
  L.push("", "## Connections in use", "", "Sampled every 0.5 s from pg_stat_activity, by who opened each backend (its application_name): the functions' direct pools, the pooler's server connections (the functions' pooled URL), the app, pg_cron (its launcher and job workers), others (the server's own processes and this sampler). Client backends are what max_connections bounds.", "");
  L.push("| Run | Peak client backends | functions | pooler | app | cron | others |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const run of r.runs) {
    const p = run.connections.peak_by;
    L.push(`| ${run.label} | ${run.connections.peak_client_backends} of ${run.connections.max_connections} | ${p.functions} | ${p.pooler} | ${p.app} | ${p.cron} | ${p.others} |`);
  }
  L.push("", "The functions' pool in the pooler (PgBouncer's SHOW POOLS for database postgres, user postgres), peaks over the window:", "", "| Run | Client connections | of them waiting for a server | Server connections | Longest wait s |", "| --- | ---: | ---: | ---: | ---: |");
  for (const run of r.runs) L.push(`| ${run.label} | ${run.pooler.peak_clients} | ${run.pooler.peak_waiting} | ${run.pooler.peak_servers} | ${run.pooler.peak_maxwait_s.toFixed(1)} |`);
  for (const run of r.runs) {
    const step = Math.max(1, Math.round(run.connections.samples.length / 12));
    L.push("", `${run.label}, over time (one sample in ${step}):`, "", "| s | client backends | functions | pooler | app | cron | others |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    run.connections.samples.filter((_, i) => i % step === 0).forEach((s) => L.push(`| ${s.at_s.toFixed(1)} | ${s.client_backends} | ${s.by.functions} | ${s.by.pooler} | ${s.by.app} | ${s.by.cron} | ${s.by.others} |`));
  }
  const samples = r.runs.flatMap((run) => [...run.error_samples.slice(0, 2), ...run.database_refusals.samples.slice(0, 2)].map((e) => `- ${run.label}: \`${e.replace(/`/g, "'")}\``));
  if (samples.length) L.push("", "## Error samples", "", ...samples);
  L.push("");
  return L.join("\n");
}

const limits = serverLimits();
const cluster = await ensureCluster({ name: `bench-load-${port}`, port, throwaway: true, fresh: true, limits });
const pool = poolerSettings();
let pooler: Awaited<ReturnType<typeof startPooler>> | null = null;
const workDir = mkdtempSync(join(tmpdir(), "bench-load-"));
try {
  log(`cluster on ${port}, compute profile ${limits.profile.name} (max_connections ${limits.profile.maxConnections})`);
  await deployOntoDemoApp(cluster.url());
  const setup: Setup = { companies, programs_per_company: quick ? 2 : 3, sites_per_program: quick ? 2 : 5, months: quick ? 2 : 6, petri_per_site_month: quick ? 20 : 300 };
  const sql = postgres(cluster.url(), { max: 1, onnotice: () => {} });
  let scopes: Scope[];
  let rows: number;
  let machine: string;
  try {
    const counts = await generateDemoData(sql, {
      ...DEFAULT_DEMO, companies, programsPerCompany: setup.programs_per_company, sitesPerProgram: setup.sites_per_program,
      months: setup.months, petriPerSiteMonth: setup.petri_per_site_month, gasifierPerSiteMonth: 1,
    }, (s) => log(`  … ${s}`));
    rows = counts.petri;
    await sql`analyze`;
    const users = await sql<{ user_id: string; company_id: string; program_id: string }[]>`
      select u.id::text as user_id, u.company_id::text, p.program_id::text
      from public.users u join lateral (select program_id from public.pilot_programs p where p.company_id = u.company_id order by program_id limit 1) p on true
      order by u.id`;
    scopes = await Promise.all(users.map(async (u) => ({
      userId: u.user_id, companyId: u.company_id, programId: u.program_id,
      token: await signUserToken(LOCAL_JWT_SECRET, { sub: u.user_id, expiresInSeconds: 4 * 3600 }),
    })));
    const [v] = await sql<{ version: string }[]>`select version()`;
    machine = v?.version ?? "";
  } finally {
    await sql.end({ timeout: 5 });
  }
  log(`${rows} petri observations, ${scopes.length} users of ${companies} companies`);
  const { anonKey, serviceRoleKey } = await makeApiKeys(LOCAL_JWT_SECRET);
  const runs: RunResult[] = [];
  for (const [label, mode] of [["pooled (DB_POOLER_URL)", "pooled"], ["direct (no DB_POOLER_URL)", "direct"]] as const) {
    // a pooler of its own per run: no server connection of the previous run stays open in it
    pooler = await startPooler(cluster, port + 3, pool);
    runs.push(await oneRun(label, mode, {
      directUrl: cluster.url(), pooledUrl: pooler.url(), poolerConsoleUrl: pooler.adminConsoleUrl, psql: join(cluster.pgBin, "psql"), adminUrl: cluster.adminUrl(),
      anonKey, serviceRoleKey, scopes, maxConnections: limits.profile.maxConnections, dir: workDir,
    }));
    await stopPooler(pooler);
    pooler = null;
  }
  const result = { measured_at: new Date().toISOString(), profile: limits.profile.name, max_connections: limits.profile.maxConnections, machine, pool,
    options: { clients, seconds, workers, app_sessions: appSessions, companies, quick }, rows, setup, runs };
  const md = markdown(result);
  console.log(`\n${md}`);
  const dirs = [...(values.out ? [values.out] : []), ...(values.publish ? [join(REPO_ROOT, "docs", "benchmarks")] : [])];
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "load.md"), md);
    writeFileSync(join(dir, "load.json"), `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote ${join(dir, "load.md")} and load.json`);
  }
} finally {
  if (pooler) await stopPooler(pooler);
  rmSync(workDir, { recursive: true, force: true });
  if (!values.keep) await destroyCluster(cluster);
}
