// `npm run bench:adoption -- [--rows N] [--sessions N] [--publish]`
// The plan's Phase 1 at full scale, the way a user adopts the bundle: the demo app (a customer's
// project) with N petri observations (default 4,999,200, the full bench's shape) and a fifth as
// many gasifier ones, the app writing the whole time (inserts, updates and reads by
// observation_id, plain SQL as the app had it before the bundle), then `supabase db push` with the
// real CLI, then the setup steps the push leaves (scripts/lib/setup-driver.ts). On a cluster of
// its own under the Micro compute profile (SUPABASE_COMPUTE picks another). Prints, and with
// --publish writes docs/benchmarks/adoption.{md,json}: each migration's time in the push, the
// app's statements during a baseline, the push and each setup step (p50, p99, max, errors), the
// observation tables' scans and written rows across the push (pg_stat_user_tables), the setup
// steps' times and the company_id batches' rate. Measured figures only.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { commandLine, integerOption, usageExit } from "./lib/cli.ts";
import postgres, { type Sql } from "postgres";
import { startLegacyAppLoad, percentile, type AppLoadStats } from "./lib/app-load.ts";
import { destroyCluster, ensureCluster, REPO_ROOT } from "./lib/cluster.ts";
import { serverLimits } from "./lib/compute-profiles.ts";
import { applyDemoApp } from "./lib/demo-app.ts";
import { DEFAULT_DEMO, generateDemoData } from "./lib/demo-data.ts";
import { SUPABASE_BIN } from "./lib/push-migrations.ts";
import { setupStep, setupTasks, type SetupStepRow } from "./lib/setup-driver.ts";
import { inSession } from "./lib/bench/session.ts";
import { evaluate, type Goal } from "./lib/bench/goal-table.ts";
import { mark } from "./lib/bench/report.ts";
import { spawn } from "node:child_process";

const NAME = "npm run bench:adoption";
const USAGE = `usage: npm run bench:adoption -- [options]

The push and the setup steps on the demo app with N rows while the app writes, on a cluster of its
own (Micro unless SUPABASE_COMPUTE names another size); prints what the app saw.

options:
  --rows <n>       petri rows, at least 2400 (default 4999200; gasifier gets a fifth as many)
  --sessions <n>   app sessions writing meanwhile, at least 1 (default 4)
  --port <n>       the cluster's port (default 54470)
  --publish        also write docs/benchmarks/adoption.{md,json}
  --out <file>     also write the result JSON to this file (npm run bench:scale reads it)
  --keep           leave the cluster running afterwards
  -h, --help       this help`;
const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: {
    rows: { type: "string", default: "4999200" }, sessions: { type: "string", default: "4" }, port: { type: "string", default: "54470" },
    publish: { type: "boolean", default: false }, out: { type: "string" }, keep: { type: "boolean", default: false },
  },
});
let rows: number;
let sessions: number;
let port: number;
try {
  rows = integerOption("--rows", values.rows, 2400)!;
  sessions = integerOption("--sessions", values.sessions, 1)!;
  port = integerOption("--port", values.port, 1024, 65535)!;
} catch (e) {
  usageExit(NAME, USAGE, (e as Error).message);
}

interface Window { name: string; startMs: number; endMs: number }
interface WindowStats { window: string; seconds: number; statements: number; p50: number; p99: number; max: number; errors: number }
const log = (s: string) => console.log(`[bench:adoption ${new Date().toISOString().slice(11, 19)}] ${s}`);

/** The app's statements that started inside a window (latency measured end to end). */
function windowStats(stats: AppLoadStats, w: Window): WindowStats {
  const lat = stats.timeline.filter(([start]) => start >= w.startMs && start < w.endMs).map(([, ms]) => ms);
  const errors = stats.errors.filter((e) => e.at >= w.startMs && e.at < w.endMs).length;
  return { window: w.name, seconds: (w.endMs - w.startMs) / 1000, statements: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat.reduce((m, x) => Math.max(m, x), 0), errors };
}

/** supabase db push, recording when each migration started (the CLI prints it as it goes). */
function push(url: string, now: () => number): Promise<{ status: number; output: string; starts: [string, number][]; endMs: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(SUPABASE_BIN, ["db", "push", `--remote=${url}`, "--yes", "--workdir", REPO_ROOT],
      { env: { ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" } });
    let output = "";
    const starts: [string, number][] = [];
    const take = (d: Buffer) => {
      const text = d.toString();
      output += text;
      for (const m of text.matchAll(/Applying migration (\S+)\.\.\./g)) starts.push([m[1] ?? "", now()]);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code) => resolve({ status: code ?? 1, output, starts, endMs: now() }));
  });
}

interface ServerActivity { checkpoints_timed: number; checkpoints_req: number; buffers_checkpoint: number; autovacuum_petri: number; autoanalyze_petri: number }
/** What the server did besides our statements: checkpoints (and the buffers they wrote), autovacuum of petri. */
async function serverActivity(sql: Sql): Promise<ServerActivity> {
  await sql`select pg_stat_clear_snapshot()`;
  const [r] = await sql<ServerActivity[]>`
    select b.checkpoints_timed::float8 as checkpoints_timed, b.checkpoints_req::float8 as checkpoints_req, b.buffers_checkpoint::float8 as buffers_checkpoint,
           t.autovacuum_count::float8 as autovacuum_petri, t.autoanalyze_count::float8 as autoanalyze_petri
    from pg_stat_bgwriter b, pg_stat_user_tables t where t.relid = 'public.petri_observations'::regclass`;
  return r!;
}

async function observationStats(sql: Sql) {
  await sql`select pg_stat_clear_snapshot()`;
  return sql<{ relname: string; seq_scan: number; n_tup_ins: number; n_tup_upd: number; n_tup_del: number; n_live_tup: number }[]>`
    select relname::text, seq_scan::float8 as seq_scan, n_tup_ins::float8 as n_tup_ins, n_tup_upd::float8 as n_tup_upd,
           n_tup_del::float8 as n_tup_del, n_live_tup::float8 as n_live_tup
    from pg_stat_user_tables where schemaname = 'public' and relname in ('petri_observations', 'gasifier_observations') order by relname`;
}

/** The push's goals, judged by the bench's one evaluator on the app's longest statement and its errors. */
const ADOPTION_GOALS: Goal<{ worstMs: number; errors: number }>[] = [
  {
    id: "app_wait", goal: "No app statement waits more than 1 s during the push and the setup steps",
    targets: [{ figure: "worstMs", atMost: 1000 }],
    figures: (m) => m, measured: (_m, f) => `${f.worstMs!.toFixed(0)} ms`, missed: (_m, f) => `the longest app statement took ${f.worstMs!.toFixed(0)} ms`,
  },
  {
    id: "app_errors", goal: "No app statement fails during the push and the setup steps",
    targets: [{ figure: "errors", atMost: 0 }],
    figures: (m) => m, measured: (_m, f) => `${f.errors} errors`, missed: (_m, f) => `${f.errors} app statements failed`,
  },
];

const limits = serverLimits();
const cluster = await ensureCluster({ name: `bench-adoption-${port}`, port, throwaway: false, fresh: true, limits });
const url = cluster.url();
const t0 = performance.now();
const now = () => performance.now() - t0;
const sql = postgres(url, { max: 2, onnotice: () => {} });
try {
  log(`cluster on ${port}, compute profile ${limits.profile.name} (max_connections ${limits.profile.maxConnections}, max_locks_per_transaction ${limits.maxLocksPerTransaction})`);
  await applyDemoApp(url);
  const shape = { ...DEFAULT_DEMO, companies: 2, programsPerCompany: 10, sitesPerProgram: 10, months: 12 };
  const siteMonths = shape.companies * shape.programsPerCompany * shape.sitesPerProgram * shape.months;
  const demo = { ...shape, petriPerSiteMonth: Math.floor(rows / siteMonths), gasifierPerSiteMonth: Math.max(1, Math.floor(rows / siteMonths / 5)) };
  log(`the demo app's data: ${demo.petriPerSiteMonth * siteMonths} petri and ${demo.gasifierPerSiteMonth * siteMonths} gasifier observations`);
  const g0 = performance.now();
  // the data load is the bench's own (an operator's session, no statement_timeout), not the app's
  const counts = await inSession(url, "bench-adoption-generate", (gen) => generateDemoData(gen, demo, (s) => log(`  … ${s}`)), { long: true });
  const generateSeconds = (performance.now() - g0) / 1000;
  const [size] = await sql<{ petri: string; gasifier: string }[]>`
    select pg_size_pretty(pg_total_relation_size('public.petri_observations')) as petri, pg_size_pretty(pg_total_relation_size('public.gasifier_observations')) as gasifier`;

  // the load's timeline counts from its own start: windows are taken on the same clock
  const loadStart = now();
  const load = startLegacyAppLoad({ url, table: "petri_observations", sessions, thinkMs: 2 });
  const windows: Window[] = [];
  let stats: AppLoadStats;
  let pushed: Awaited<ReturnType<typeof push>>;
  const steps: { task: string; kind: string; calls: number; seconds: number; ran: string | null }[] = [];
  let statsBefore, statsAfter;
  let serverBefore: ServerActivity | undefined;
  let serverAfter: ServerActivity | undefined;
  try {
    const b0 = now();
    await new Promise((r) => setTimeout(r, 15_000));
    windows.push({ name: "baseline (before the push)", startMs: b0, endMs: now() });
    statsBefore = await observationStats(sql);
    log("supabase db push");
    const p0 = now();
    pushed = await push(url, now);
    windows.push({ name: "supabase db push (every migration)", startMs: p0, endMs: pushed.endMs });
    if (pushed.status !== 0) throw new Error(`supabase db push failed:\n${pushed.output}`);
    await new Promise((r) => setTimeout(r, 1500));
    statsAfter = await observationStats(sql);
    log(`pushed in ${((pushed.endMs - p0) / 1000).toFixed(1)} s; setup steps`);
    serverBefore = await serverActivity(sql);
    let current: { task: string; kind: string; start: number; calls: number; ran: string | null } | null = null;
    const close = (end: number) => {
      if (!current) return;
      windows.push({ name: `setup step ${current.task}`, startMs: current.start, endMs: end });
      steps.push({ task: current.task, kind: current.kind, calls: current.calls, seconds: (end - current.start) / 1000, ran: current.ran });
    };
    for (;;) {
      const s0 = now();
      const r: SetupStepRow = await setupStep(sql);
      if (r.state === "idle") break;
      if (!current || current.task !== r.task) {
        close(s0);
        current = { task: r.task ?? "?", kind: r.kind ?? "?", start: s0, calls: 0, ran: null };
      }
      current.calls++;
      if (r.state === "statement") current.ran = r.run_outside_transaction;
      if (r.state === "running" && current.calls % 50 === 0) log(`  ${r.task}: ${r.detail}`);
      if (r.state === "done" || r.state === "statement") log(`  ${r.task}: ${r.state}${r.run_outside_transaction ? ` (ran ${r.run_outside_transaction})` : ""} after ${((now() - current.start) / 1000).toFixed(1)} s`);
    }
    close(now());
    serverAfter = await serverActivity(sql);
    const a0 = now();
    await new Promise((r) => setTimeout(r, 10_000));
    windows.push({ name: "after the setup steps", startMs: a0, endMs: now() });
  } finally {
    stats = await load.stop();
  }
  const perMigration = pushed.starts.map(([file, at], i) => ({ file, seconds: ((pushed.starts[i + 1]?.[1] ?? pushed.endMs) - at) / 1000 }));
  const scans = statsBefore.map((b) => {
    const a = statsAfter.find((x) => x.relname === b.relname)!;
    return { table: b.relname, seq_scan: a.seq_scan - b.seq_scan, inserted: a.n_tup_ins - b.n_tup_ins, updated: a.n_tup_upd - b.n_tup_upd, deleted: a.n_tup_del - b.n_tup_del };
  });
  const progress = await sql<{ task: string; rows_seen: string; rows_updated: string; batches: number; seconds: number }[]>`
    select task, rows_seen::text, rows_updated::text, batches, extract(epoch from finished_at - started_at)::float8 as seconds from partition_mgmt.setup_progress order by task`;
  const pending = (await setupTasks(sql)).filter((t) => !t.done).map((t) => t.task);
  const [machine] = await sql<{ version: string }[]>`select version()`;
  // the slowest statements of the app, and the window each started in
  const inLoadTime = windows.map((w) => ({ ...w, startMs: w.startMs - loadStart, endMs: w.endMs - loadStart }));
  const slowest = [...stats.timeline].sort((a, b) => b[1] - a[1]).slice(0, 5)
    .map(([start, ms]) => ({ ms: Math.round(ms), at_s: Math.round(start / 100) / 10, window: inLoadTime.find((w) => start >= w.startMs && start < w.endMs)?.name ?? "-" }));
  const during = serverBefore && serverAfter ? {
    checkpoints: serverAfter.checkpoints_timed + serverAfter.checkpoints_req - serverBefore.checkpoints_timed - serverBefore.checkpoints_req,
    checkpoints_requested: serverAfter.checkpoints_req - serverBefore.checkpoints_req,
    buffers_written_by_checkpoints: serverAfter.buffers_checkpoint - serverBefore.buffers_checkpoint,
    autovacuum_petri: serverAfter.autovacuum_petri - serverBefore.autovacuum_petri,
    autoanalyze_petri: serverAfter.autoanalyze_petri - serverBefore.autoanalyze_petri,
  } : null;
  const [walSetting] = await sql<{ max_wal_size: string; checkpoint_timeout: string }[]>`select current_setting('max_wal_size') as max_wal_size, current_setting('checkpoint_timeout') as checkpoint_timeout`;
  const result = {
    measured_at: new Date().toISOString(), seconds: now() / 1000, machine: machine?.version ?? "", profile: limits.profile.name,
    rows: { petri: counts.petri, gasifier: counts.gasifier, petri_size: size?.petri, gasifier_size: size?.gasifier, generate_seconds: generateSeconds },
    app: { sessions, statements: stats.ops, errors: stats.errors.slice(0, 20),
           windows: windows.map((w) => windowStats(stats, { ...w, startMs: w.startMs - loadStart, endMs: w.endMs - loadStart })) },
    push: { seconds: (pushed.endMs - (pushed.starts[0]?.[1] ?? pushed.endMs)) / 1000, migrations: perMigration, observation_tables: scans },
    setup: { steps, batches: progress, pending, server_during: during, wal: walSetting },
    slowest_app_statements: slowest,
  };
  const lines: string[] = [];
  lines.push(`# Benchmark: supabase db push and the setup steps on a populated project while the app writes`, "");
  lines.push(`Measured ${result.measured_at.replace("T", " ").slice(0, 19)} UTC with \`npm run bench:adoption${values.publish ? " -- --publish" : ""}\` (scripts/bench-adoption.ts) in ${(result.seconds / 60).toFixed(0)} min.`, "");
  lines.push(`- **Project**: the demo app (demo-app/supabase/migrations: the customer's tables, RLS policies, trigger and view) with ${counts.petri.toLocaleString("en-US")} petri (${size?.petri}) and ${counts.gasifier.toLocaleString("en-US")} gasifier observations (${size?.gasifier}), generated in ${generateSeconds.toFixed(0)} s before anything of the bundle existed.`);
  lines.push(`- **Server**: ${result.machine.split(" on ")[0]}, compute profile ${limits.profile.name} (max_connections ${limits.profile.maxConnections}, shared_buffers ${limits.profile.sharedBuffers}, max_locks_per_transaction ${limits.maxLocksPerTransaction}, statement_timeout 2min); 2 shared cores.`);
  lines.push(`- **The app**: ${sessions} sessions on public.petri_observations, each a connection of its own, with 2 ms between statements: 30% inserts, 35% updates by observation_id, 35% reads by observation_id, plain SQL as postgres (what the app ran before the bundle). Latency is each statement's wall time at the client; a window holds the statements that started in it.`, "");
  lines.push(`## The app's statements`, "", `| Window | Seconds | Statements | p50 ms | p99 ms | max ms | Errors |`, `| --- | ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const w of result.app.windows) lines.push(`| ${w.window} | ${w.seconds.toFixed(1)} | ${w.statements} | ${w.p50.toFixed(1)} | ${w.p99.toFixed(1)} | ${w.max.toFixed(1)} | ${w.errors} |`);
  const worst = Math.max(...result.app.windows.filter((w) => !w.window.startsWith("baseline") && !w.window.startsWith("after")).map((w) => w.max));
  const [waitVerdict, errorsVerdict] = evaluate(ADOPTION_GOALS, { worstMs: worst, errors: stats.errors.length });
  lines.push("", `Longest app statement during the push and the setup steps: **${worst.toFixed(0)} ms** (goal ≤ 1,000 ms: ${mark(waitVerdict!.status)}); app errors: **${stats.errors.length}** (goal 0: ${mark(errorsVerdict!.status)}).`, "");
  lines.push(`## The push`, "", `Every migration applied in ${result.push.seconds.toFixed(1)} s (from the first "Applying migration" to the CLI's exit).`, "", `| Migration | Seconds |`, `| --- | ---: |`);
  for (const m of perMigration) lines.push(`| ${m.file} | ${m.seconds.toFixed(2)} |`);
  lines.push("", `The observation tables across the push (pg_stat_user_tables deltas; inserts and updates are the app's own):`, "", `| Table | Sequential scans | Rows inserted | Rows updated | Rows deleted |`, `| --- | ---: | ---: | ---: | ---: |`);
  for (const s of scans) lines.push(`| ${s.table} | ${s.seq_scan} | ${s.inserted} | ${s.updated} | ${s.deleted} |`);
  lines.push("", `## The setup steps`, "", `| Step | Calls | Seconds | Ran outside a transaction |`, `| --- | ---: | ---: | --- |`);
  for (const s of steps) lines.push(`| ${s.task} | ${s.calls} | ${s.seconds.toFixed(1)} | ${s.ran ? `\`${s.ran}\`` : ""} |`);
  lines.push("", `| company_id batches | Rows seen | Rows updated | Batches | Seconds | Rows/s |`, `| --- | ---: | ---: | ---: | ---: | ---: |`);
  for (const b of progress) lines.push(`| ${b.task} | ${Number(b.rows_seen).toLocaleString("en-US")} | ${Number(b.rows_updated).toLocaleString("en-US")} | ${b.batches} | ${b.seconds.toFixed(1)} | ${Math.round(Number(b.rows_seen) / Math.max(b.seconds, 0.001)).toLocaleString("en-US")} |`);
  lines.push("", pending.length ? `Still pending: ${pending.join(", ")}.` : "Nothing pending after the run.", "");
  lines.push(`The app's five slowest statements: ${slowest.map((x) => `${x.ms} ms at ${x.at_s} s (${x.window})`).join("; ")}.`, "");
  if (during) {
    lines.push(`The server during the setup steps: ${during.checkpoints} checkpoint(s) (${during.checkpoints_requested} requested by WAL volume; max_wal_size ${walSetting?.max_wal_size}, checkpoint_timeout ${walSetting?.checkpoint_timeout}) writing ${during.buffers_written_by_checkpoints.toLocaleString("en-US")} buffers; autovacuum of petri_observations ${during.autovacuum_petri} time(s), autoanalyze ${during.autoanalyze_petri}.`, "");
  }
  const md = lines.join("\n");
  console.log(`\n${md}`);
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote ${values.out}`);
  }
  if (values.publish) {
    const dir = join(REPO_ROOT, "docs", "benchmarks");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "adoption.md"), md);
    writeFileSync(join(dir, "adoption.json"), `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote docs/benchmarks/adoption.md and adoption.json`);
  }
} finally {
  await sql.end({ timeout: 5 });
  if (!values.keep) await destroyCluster(cluster);
}
