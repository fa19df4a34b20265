// Isolate fan-out: the local functions server runs N workers per function, as the platform runs a
// function in several isolates under load. Covers:
//  - concurrent requests reach every worker (distinct Deno pids), and so do sequential ones (ties
//    taken in turn);
//  - each worker has its own module state: a module-level counter counts only the requests its
//    own process served;
//  - a killed worker is booted again on the next request that reaches it, as with one worker;
//  - the database: the real health function with 3 workers on the direct URL opens more
//    connections than one isolate's pool may hold (postgres.js max 3 in _shared/db.ts), and on the
//    pooled URL (DB_POOLER_URL) none on the direct URL, while the server sessions it uses stay
//    within the pooler's pool.
import { randomUUID } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { makeApiKeys } from "../../scripts/lib/jwt-keys.ts";
import { connect } from "../helpers/db.ts";
import { requireEnv, testEnv } from "../helpers/env.ts";
import { poolerAdminConsole } from "../helpers/pooler.ts";
import { processRunning } from "../../scripts/lib/pooler.ts";
import { serveFunctionsProject, type FunctionsProject } from "../helpers/functions-project.ts";

const SECRET = "test-jwt-secret-with-at-least-32-characters!!";
// Several Deno processes boot at once on a shared machine; the first may fill Deno's npm cache.
const BOOT_TIMEOUT_MS = 180_000;
const WORKERS = 3;
/** postgres.js's max in supabase/functions/_shared/db.ts: what one isolate may hold */
const ONE_ISOLATE_MAX = 3;

const WHOAMI = `
let served = 0;
Deno.serve(() => {
  served += 1;
  return Response.json({ pid: Deno.pid, served });
});
`;

interface WhoAmI { pid: number; served: number }

async function whoami(server: FunctionsServer): Promise<WhoAmI> {
  const res = await fetch(`${server.url}/functions/v1/whoami`);
  expect(res.status).toBe(200);
  return (await res.json()) as WhoAmI;
}

describe("N workers per function", () => {
  let project: FunctionsProject;
  let server: FunctionsServer;

  beforeAll(async () => {
    project = await serveFunctionsProject({ whoami: WHOAMI }, { workersPerFunction: WORKERS });
    server = project.server;
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await project?.remove();
  });

  it("spreads concurrent and sequential requests over every worker, each with its own module state", async () => {
    expect(server.workers).toEqual({ whoami: WORKERS });
    const sequential: WhoAmI[] = [];
    for (let i = 0; i < 2 * WORKERS; i++) sequential.push(await whoami(server));
    expect(new Set(sequential.map((a) => a.pid)).size).toBe(WORKERS);

    const concurrent = await Promise.all(Array.from({ length: 30 }, () => whoami(server)));
    const answers = [...sequential, ...concurrent];
    const byPid = new Map<number, number[]>();
    for (const a of answers) byPid.set(a.pid, [...(byPid.get(a.pid) ?? []), a.served]);
    expect(byPid.size).toBe(WORKERS);
    // one module state per process: each counter went 1, 2, … over its own requests only
    for (const counts of byPid.values()) {
      expect([...counts].sort((x, y) => x - y)).toEqual(counts.map((_, i) => i + 1));
    }
  });

  it("boots a killed worker again on the next request that reaches it", async () => {
    const before = new Set((await Promise.all(Array.from({ length: 2 * WORKERS }, () => whoami(server)))).map((a) => a.pid));
    const [victim] = [...before];
    process.kill(victim!, "SIGKILL");
    for (let i = 0; i < 100 && processRunning(victim!); i++) await new Promise((r) => setTimeout(r, 50));
    // as with one worker: the request that finds the crash first may get the gateway's 502
    const after = new Set<number>();
    const refusals: string[] = [];
    for (let i = 0; i < 3 * WORKERS + 1; i++) {
      const res = await fetch(`${server.url}/functions/v1/whoami`);
      if (res.status === 200) after.add(((await res.json()) as WhoAmI).pid);
      else refusals.push(`${res.status} ${((await res.json()) as { error: { code: string } }).error.code}`);
    }
    expect(refusals.length).toBeLessThanOrEqual(1);
    for (const r of refusals) expect(r).toBe("502 worker_unavailable");
    expect(after.has(victim!)).toBe(false);
    expect(after.size).toBe(WORKERS);
  }, BOOT_TIMEOUT_MS);
});

/** Backends of the cluster whose application_name is `name`. */
async function backendsNamed(name: string): Promise<number> {
  const sql = connect(testEnv.dbUrl);
  try {
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = ${name}`;
    return row?.n ?? 0;
  } finally {
    await sql.end();
  }
}

const withAppName = (url: string, name: string): string => {
  const u = new URL(url);
  u.searchParams.set("application_name", name);
  return u.toString();
};

/** The real functions (supabase/functions), WORKERS workers of health. */
async function startHealth(env: { direct: string; pooled?: string }): Promise<FunctionsServer> {
  const { anonKey, serviceRoleKey } = await makeApiKeys(SECRET);
  return startFunctionsServer({
    port: 0,
    functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
    configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
    env: {
      SUPABASE_URL: "http://127.0.0.1:1",
      SUPABASE_DB_URL: env.direct,
      ...(env.pooled ? { DB_POOLER_URL: env.pooled } : {}),
      SUPABASE_ANON_KEY: anonKey,
      SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
    },
    jwtSecret: SECRET,
    workersByFunction: { health: WORKERS },
    log: () => undefined,
  });
}

/** 40 concurrent calls of health, twice; every one answers 200. */
async function loadHealth(server: FunctionsServer): Promise<void> {
  const { anonKey } = await makeApiKeys(SECRET);
  for (let round = 0; round < 2; round++) {
    const statuses = await Promise.all(Array.from({ length: 40 }, async () => {
      const res = await fetch(`${server.url}/functions/v1/health`, { headers: { Authorization: `Bearer ${anonKey}` } });
      await res.arrayBuffer();
      return res.status;
    }));
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  }
}

describe("fan-out and database connections", () => {
  it("on the direct URL, connections grow with the workers: more than one isolate's pool holds", async () => {
    const direct = `fanout-direct-${randomUUID().slice(0, 8)}`;
    const server = await startHealth({ direct: withAppName(testEnv.dbUrl, direct) });
    try {
      await loadHealth(server);
      // counted while the workers (and so their pools) live
      const n = await backendsNamed(direct);
      expect(n).toBeGreaterThan(ONE_ISOLATE_MAX);
      expect(n).toBeLessThanOrEqual(WORKERS * ONE_ISOLATE_MAX);
    } finally {
      await server.stop();
    }
  }, BOOT_TIMEOUT_MS);

  it("on the pooled URL, the workers' connections go to the pooler, whose server sessions stay within its pool", async () => {
    const tag = randomUUID().slice(0, 8);
    const direct = `fanout-pooled-direct-${tag}`;
    const pooled = `fanout-pooled-${tag}`;
    const dbName = new URL(testEnv.dbUrl).pathname.slice(1);
    const poolerUrl = new URL(requireEnv("TEST_DB_POOLER_URL"));
    poolerUrl.pathname = `/${dbName}`;
    const server = await startHealth({ direct: withAppName(testEnv.dbUrl, direct), pooled: withAppName(poolerUrl.toString(), pooled) });
    try {
      await loadHealth(server);
      const clients = (await poolerAdminConsole("show clients")).filter((c) => c.application_name === pooled).length;
      expect(clients).toBeGreaterThan(ONE_ISOLATE_MAX);
      expect(await backendsNamed(direct)).toBe(0);
      expect(await backendsNamed(pooled)).toBeLessThanOrEqual(Number(requireEnv("TEST_POOLER_POOL_SIZE")));
    } finally {
      await server.stop();
    }
  }, BOOT_TIMEOUT_MS);
});
