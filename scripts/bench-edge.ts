// `npm run bench:edge -- [--iterations N] [--publish]`
// What get-observations-optimized costs over the same read sent as direct SQL (issue 22: at most
// +3 ms). On a cluster of its own (Micro unless SUPABASE_COMPUTE names another size) with the demo
// app, the bundle and the demo data, its transaction pooler, and two local functions servers (each
// a process of its own, as npm start runs it): one whose functions reach the database through the
// pooler (DB_POOLER_URL), one directly. Request by
// request, in alternating order, it sends (a) the function through the gateway with a signed-in
// user's JWT and (b) the function's own statements (./supabase/functions/get-observations-optimized/
// reads.ts, after the same context statement, _shared/caller-context.ts) from a postgres.js client
// over the same URL, in one transaction: for a 100-row page and a per-day
// aggregate, through the pooler and direct. Prints p50/p95 of each and their difference, and where
// the function's time went from the Server-Timing header the function and the gateway send.
// --publish writes docs/benchmarks/edge.{md,json}. Measured figures only.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { commandLine, integerOption, usageExit } from "./lib/cli.ts";
import { destroyCluster, ensureCluster, REPO_ROOT } from "./lib/cluster.ts";
import { serverLimits } from "./lib/compute-profiles.ts";
import { deployOntoDemoApp } from "./lib/deploy.ts";
import { DEFAULT_DEMO, generateDemoData } from "./lib/demo-data.ts";
import { signUserToken } from "./lib/jwt-keys.ts";
import { startPooler, stopPooler } from "./lib/pooler.ts";
import { LOCAL_JWT_SECRET, stackEnv, startFunctionsDaemon, stopFunctionsDaemon, writeEnvFile, type StackProfile } from "./lib/stack.ts";
import { evaluate, type Goal } from "./lib/bench/goal-table.ts";
import { mark } from "./lib/bench/report.ts";
import { percentile } from "./lib/bench/stats.ts";
import { callerContextStatement } from "../supabase/functions/_shared/caller-context.ts";
import { readAggregate, readPage, READ_SETTINGS, type AggregateRequest, type PageRequest } from "../supabase/functions/get-observations-optimized/reads.ts";

const NAME = "npm run bench:edge";
const USAGE = `usage: npm run bench:edge -- [options]

The read function's overhead over the same read as direct SQL, interleaved request by request:
a 100-row page and a per-day aggregate, through the transaction pooler and direct, on a cluster of
its own (Micro unless SUPABASE_COMPUTE names another size).

options:
  --iterations <n>  measured rounds, each one request of every kind, at least 10 (default 300)
  --warmup <n>      rounds before them, not counted (default 30)
  --port <n>        the cluster's port (default 54480; its pooler listens on port + 3)
  --publish         also write docs/benchmarks/edge.{md,json}
  --keep            leave the cluster running afterwards
  -h, --help        this help`;
const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: {
    iterations: { type: "string", default: "300" }, warmup: { type: "string", default: "30" }, port: { type: "string", default: "54480" },
    publish: { type: "boolean", default: false }, keep: { type: "boolean", default: false },
  },
});
let iterations: number;
let warmup: number;
let port: number;
try {
  iterations = integerOption("--iterations", values.iterations, 10)!;
  warmup = integerOption("--warmup", values.warmup, 0)!;
  port = integerOption("--port", values.port, 1024, 65532)!;
} catch (e) {
  usageExit(NAME, USAGE, (e as Error).message);
}
const log = (s: string) => console.log(`[bench:edge ${new Date().toISOString().slice(11, 19)}] ${s}`);

type Read = { name: "page"; params: PageRequest } | { name: "aggregate"; params: AggregateRequest };
type Path = "pooler" | "direct";
interface Series { read: Read["name"]; path: Path; edge: number[]; sql: number[]; phases: Map<string, number[]>; parts: Map<Part, number[]> }

/** The overhead's parts, each computed within one request (so its median means something). */
type Part = "gateway_verify_jwt" | "client_to_gateway" | "gateway_to_function" | "function_jwt_validate_json" | "function_between_phases" | "function_database";

function overheadParts(clientMs: number, timings: [string, number][]): Record<Part, number> {
  const t = (name: string) => timings.find(([n]) => n === name)?.[1] ?? 0;
  return {
    gateway_verify_jwt: t("gw-verify"),
    client_to_gateway: clientMs - t("gw-verify") - t("gw-forward"),
    gateway_to_function: t("gw-forward") - t("total"),
    function_jwt_validate_json: t("jwt") + t("validate") + t("json"),
    function_between_phases: t("total") - ["jwt", "validate", "json", "begin", "context", "query", "commit"].reduce((sum, name) => sum + t(name), 0),
    function_database: t("begin") + t("context") + t("query") + t("commit"),
  };
}

/** name;dur=ms pairs of a Server-Timing header. */
function serverTimings(header: string | null): [string, number][] {
  if (!header) return [];
  return header.split(",").flatMap((entry) => {
    const [name, ...params] = entry.trim().split(";");
    const dur = params.map((p) => /^\s*dur=([\d.]+)\s*$/.exec(p)?.[1]).find((d) => d !== undefined);
    return name && dur !== undefined ? [[name, Number(dur)] as [string, number]] : [];
  });
}

/** The read through the gateway, as a frontend sends it; its time to the parsed body, and the phases. */
async function viaFunction(functionsUrl: string, token: string, read: Read): Promise<{ ms: number; timings: [string, number][] }> {
  const t0 = performance.now();
  const res = await fetch(`${functionsUrl}/functions/v1/get-observations-optimized`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(read.params),
  });
  const body = (await res.json()) as { rows?: unknown[] };
  const ms = performance.now() - t0;
  if (res.status !== 200 || !Array.isArray(body.rows)) throw new Error(`the function answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
  return { ms, timings: serverTimings(res.headers.get("server-timing")) };
}

/**
 * The read as direct SQL, statement for statement what the function sends: BEGIN; the caller's
 * context (claims, the role's settings, the read's settings, the role; ../supabase/functions/
 * _shared/caller-context.ts) pipelined with the read's statement; COMMIT.
 */
async function viaSql(sql: Sql, claims: string, read: Read): Promise<number> {
  const t0 = performance.now();
  const context = callerContextStatement("authenticated", claims, READ_SETTINGS);
  const [, rows] = await sql.begin(async (tx) => {
    const ready = tx.unsafe(context).execute();
    return Promise.all([ready, read.name === "page" ? readPage(tx, read.params) : readAggregate(tx, read.params)]);
  });
  // the rows as a client of direct SQL has them: parsed (the function passes the text through to its caller, who parses it)
  if (!Array.isArray(JSON.parse(rows.rowsJson))) throw new Error("the read returned no array of rows");
  return performance.now() - t0;
}

const p50 = (xs: number[]) => percentile(xs, 50);
const p95 = (xs: number[]) => percentile(xs, 95);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

const EDGE_GOALS: Goal<{ overheadMs: number }>[] = [{
  id: "edge_overhead", goal: "The function adds at most 3 ms (p50) over the same read as direct SQL",
  targets: [{ figure: "overheadMs", atMost: 3 }],
  figures: (m) => m, measured: (_m, f) => `+${f.overheadMs!.toFixed(1)} ms`, missed: (_m, f) => `the function adds ${f.overheadMs!.toFixed(1)} ms`,
}];

const limits = serverLimits();
const cluster = await ensureCluster({ name: `bench-edge-${port}`, port, throwaway: false, fresh: true, limits });
const pooler = await startPooler(cluster, port + 3);
const admin = postgres(cluster.url(), { max: 1, onnotice: () => {} });
/** The two functions servers, each a process of its own as `npm start` runs it (scripts/serve-functions.ts). */
const servers: StackProfile[] = [];
const clients: Sql[] = [];
try {
  log(`cluster on ${port}, pooler on ${port + 3}, compute profile ${limits.profile.name}`);
  await deployOntoDemoApp(cluster.url());
  const counts = await generateDemoData(admin, DEFAULT_DEMO);
  log(`demo data: ${counts.petri} petri observations`);
  // a signed-in user of the company with the most rows, in its largest program
  const [target] = await admin<{ user_id: string; company_id: string; program_id: string; rows: number }[]>`
    select u.id as user_id, p.company_id, p.program_id, count(*)::int as rows
    from public.petri_observations o join public.pilot_programs p using (program_id) join public.users u on u.company_id = p.company_id
    group by 1, 2, 3 order by 4 desc, 1 limit 1`;
  if (!target) throw new Error("no observations to read");
  const token = await signUserToken(LOCAL_JWT_SECRET, { sub: target.user_id, email: "bench@demo.local" });
  // the token's own claims, as the function sets them
  const claims = Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8");
  const reads: Read[] = [
    { name: "page", params: { company_id: target.company_id, program_id: target.program_id, limit: 100 } as PageRequest },
    { name: "aggregate", params: { mode: "aggregate", group_by: "day", company_id: target.company_id, program_id: target.program_id } as AggregateRequest },
  ];
  const urls: Record<Path, string> = { pooler: pooler.url(), direct: cluster.url() };
  const functionsUrl = {} as Record<Path, string>;
  const sqlClients = {} as Record<Path, Sql>;
  for (const path of ["pooler", "direct"] as const) {
    const profile: StackProfile = {
      name: `bench-edge-${port}-${path}`, dbPort: port, poolerPort: port + 3, replicaPort: port + 4,
      functionsPort: port + (path === "pooler" ? 5 : 6),
      envFile: join(REPO_ROOT, ".local", `bench-edge-${port}-${path}.env`), workersPerFunction: 1,
    };
    // without DB_POOLER_URL the function connects to SUPABASE_DB_URL
    writeEnvFile(profile.envFile, await stackEnv(profile, cluster.url(), path === "pooler" ? pooler.url() : "", cluster.adminUrl()));
    stopFunctionsDaemon(profile);
    servers.push(profile);
    await startFunctionsDaemon(profile);
    const server = { url: `http://127.0.0.1:${profile.functionsPort}` };
    functionsUrl[path] = server.url;
    // the function's own client settings (supabase/functions/_shared/db.ts)
    const client = postgres(urls[path], { max: 1, prepare: false, onnotice: () => {} });
    clients.push(client);
    sqlClients[path] = client;
  }
  const series: Series[] = (["pooler", "direct"] as const).flatMap((path) =>
    reads.map((read) => ({ read: read.name, path, edge: [], sql: [], phases: new Map<string, number[]>(), parts: new Map<Part, number[]>() })));
  log(`${warmup} warm-up rounds, then ${iterations} measured, each: ${series.map((s) => `${s.read}/${s.path}`).join(", ")}, by the function and as SQL`);
  const t0 = performance.now();
  for (let i = 0; i < warmup + iterations; i++) {
    for (const s of series) {
      const read = reads.find((r) => r.name === s.read)!;
      const edgeFirst = i % 2 === 0;
      let edge: Awaited<ReturnType<typeof viaFunction>> | undefined;
      let direct = 0;
      if (edgeFirst) edge = await viaFunction(functionsUrl[s.path], token, read);
      direct = await viaSql(sqlClients[s.path], claims, read);
      if (!edgeFirst) edge = await viaFunction(functionsUrl[s.path], token, read);
      if (i < warmup || !edge) continue;
      s.edge.push(edge.ms);
      s.sql.push(direct);
      for (const [name, ms] of edge.timings) s.phases.set(name, [...(s.phases.get(name) ?? []), ms]);
      for (const [part, ms] of Object.entries(overheadParts(edge.ms, edge.timings)) as [Part, number][]) s.parts.set(part, [...(s.parts.get(part) ?? []), ms]);
    }
    if ((i + 1) % 100 === 0) log(`  ${i + 1} rounds`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const [version] = await admin<{ v: string }[]>`select split_part(version(), ' on ', 1) as v`;
  const load = loadavg().map((x) => x.toFixed(2)).join(", ");
  const results = series.map((s) => {
    const phases = Object.fromEntries([...s.phases].map(([name, xs]) => [name, p50(xs)]));
    return {
      read: s.read, path: s.path, n: s.edge.length,
      edge: { p50: p50(s.edge), p95: p95(s.edge) }, sql: { p50: p50(s.sql), p95: p95(s.sql) },
      overhead: { p50: p50(s.edge) - p50(s.sql), p95: p95(s.edge) - p95(s.sql) },
      phases_p50: phases,
      // the overhead, part by part, as means: they add up to the mean overhead exactly (medians
      // of parts do not add up under this machine's long tails). The gateway's check, the hops
      // client ↔ gateway and gateway → worker, the function's own work, and its database phases
      // against the same SQL sent directly.
      overhead_parts_mean: {
        ...Object.fromEntries([...s.parts].filter(([part]) => part !== "function_database").map(([part, xs]) => [part, mean(xs)])),
        function_database_minus_sql: mean(s.parts.get("function_database") ?? []) - mean(s.sql),
      } as Record<Exclude<Part, "function_database"> | "function_database_minus_sql", number>,
      overhead_mean: mean(s.edge) - mean(s.sql),
    };
  });
  const worst = Math.max(...results.map((r) => r.overhead.p50));
  const [verdict] = evaluate(EDGE_GOALS, { overheadMs: worst });
  const result = {
    measured_at: new Date().toISOString(), seconds, server: version?.v ?? "", profile: limits.profile.name, load_average: load,
    iterations, warmup, petri_rows: counts.petri, program_rows: target.rows, results, goal: verdict,
  };
  const lines: string[] = [];
  lines.push(`# Benchmark: the read function's overhead over direct SQL`, "");
  lines.push(`Measured ${result.measured_at.replace("T", " ").slice(0, 19)} UTC with \`npm run bench:edge${values.publish ? " -- --publish" : ""}\` (scripts/bench-edge.ts) in ${seconds.toFixed(0)} s; load average before the report ${load} (2 shared cores).`, "");
  lines.push(`- **Server**: ${result.server}, compute profile ${limits.profile.name}, on a cluster of the bench's own with its PgBouncer in transaction mode (the stand-in for Supavisor); the demo app with the bundle pushed and ${counts.petri.toLocaleString("en-US")} petri observations (the user's program: ${target.rows.toLocaleString("en-US")}).`);
  lines.push(`- **The function**: get-observations-optimized on the local functions server, a process of its own as npm start runs it (gateway with verify_jwt, one Deno worker), called with a signed-in user's HS256 JWT, POST, body read and parsed by the client; once with DB_POOLER_URL set (pooler), once without (direct).`);
  lines.push(`- **Direct SQL**: statement for statement what the function sends (supabase/functions/_shared/caller-context.ts, get-observations-optimized/reads.ts), from postgres.js with the function's settings (prepare: false) over the same URL: BEGIN; the caller's context (claims, the role's settings, TimeZone, the role) pipelined with the read; COMMIT; then the rows parsed from the JSON the database wrote, as a client has them (the function passes that text through unparsed, its caller parses it).`);
  lines.push(`- **Interleaved**: ${iterations} rounds after ${warmup} of warm-up; each round sends every kind once by the function and once as SQL, in alternating order.`, "");
  lines.push(`| Read | Path | Function p50 / p95 ms | Direct SQL p50 / p95 ms | Overhead p50 / p95 ms |`, `| --- | --- | ---: | ---: | ---: |`);
  for (const r of results) lines.push(`| ${r.read} | ${r.path} | ${f1(r.edge.p50)} / ${f1(r.edge.p95)} | ${f1(r.sql.p50)} / ${f1(r.sql.p95)} | **+${f1(r.overhead.p50)}** / +${f1(r.overhead.p95)} |`);
  lines.push("", `Largest p50 overhead: **+${f1(worst)} ms** (goal ≤ +3 ms: ${mark(verdict!.status)}).`, "");
  const names = [...new Set(results.flatMap((r) => Object.keys(r.phases_p50)))];
  lines.push(`## Where the function's time goes (p50 of each Server-Timing phase, ms)`, "");
  lines.push(`| Phase | ${results.map((r) => `${r.read}/${r.path}`).join(" | ")} |`, `| --- | ${results.map(() => "---:").join(" | ")} |`);
  for (const name of names) lines.push(`| ${name} | ${results.map((r) => f2(r.phases_p50[name] ?? Number.NaN)).join(" | ")} |`);
  lines.push("", `Phases: gw-verify the gateway's verify_jwt; gw-forward from the gateway's request to the worker until its answer's headers; in the function jwt (its own token check), validate (body and zod), begin (a pooled connection and BEGIN), context (its answer: claims, role, the role's settings, sent together with the read), query (the rest of the read), commit, json (serialising the body), total (the function's whole time). Medians of phases do not add up to the median of a whole.`);
  lines.push("", `## What the overhead is (means, ms: unlike medians they add up)`, "");
  lines.push(`| Part | ${results.map((r) => `${r.read}/${r.path}`).join(" | ")} |`, `| --- | ${results.map(() => "---:").join(" | ")} |`);
  const parts: [string, keyof (typeof results)[number]["overhead_parts_mean"]][] = [
    ["gateway: verify_jwt (gw-verify)", "gateway_verify_jwt"],
    ["client ↔ gateway: HTTP both ways, the body piped through and parsed (client time − gw-verify − gw-forward)", "client_to_gateway"],
    ["gateway → worker: a kept-alive connection, Deno's HTTP (gw-forward − total)", "gateway_to_function"],
    ["function: its own token check, validation, JSON (jwt + validate + json)", "function_jwt_validate_json"],
    ["function: between its phases (total − the phases: awaits, the Response)", "function_between_phases"],
    ["function: connection and SQL against the same SQL sent directly (begin + context + query + commit − direct SQL)", "function_database_minus_sql"],
  ];
  for (const [label, key] of parts) lines.push(`| ${label} | ${results.map((r) => f2(r.overhead_parts_mean[key])).join(" | ")} |`);
  lines.push(`| **mean overhead** (function − direct SQL) | ${results.map((r) => `**${f2(r.overhead_mean)}**`).join(" | ")} |`, "");
  const md = lines.join("\n");
  console.log(`\n${md}`);
  if (values.publish) {
    const dir = join(REPO_ROOT, "docs", "benchmarks");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "edge.md"), md);
    writeFileSync(join(dir, "edge.json"), `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote docs/benchmarks/edge.md and edge.json`);
  }
} finally {
  for (const profile of servers) stopFunctionsDaemon(profile);
  await Promise.all(clients.map((c) => c.end({ timeout: 5 })));
  await admin.end({ timeout: 5 });
  await stopPooler(pooler);
  if (!values.keep) await destroyCluster(cluster);
}
