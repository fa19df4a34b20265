// The transaction pooler of the local stack (scripts/lib/pooler.ts): up, in transaction mode, 200
// clients on at most its pool size of server connections (on a pooler of the test's own with the
// same settings), nothing left running once stopped.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterFor, freeLocalPort } from "../../scripts/lib/cluster.ts";
import { poolerPid, poolerSettings, startPooler, stopPooler } from "../../scripts/lib/pooler.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { TEST_STACK, testPort } from "../../scripts/lib/stack.ts";
import { asSuperuser, connect, emptyDatabase, withDatabase } from "../helpers/db.ts";
import { requireEnv } from "../helpers/env.ts";
import { poolerAdminConsole } from "../helpers/pooler.ts";

const poolerUrl = () => requireEnv("TEST_DB_POOLER_URL");
const poolSize = () => Number(requireEnv("TEST_POOLER_POOL_SIZE"));

describe("the local transaction pooler", () => {
  let db: Awaited<ReturnType<typeof emptyDatabase>>;
  beforeAll(async () => {
    db = await emptyDatabase(`pooler_${process.pid}`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("is up with config.toml's [db.pooler] settings, in transaction mode", async () => {
    const config = Object.fromEntries((await poolerAdminConsole("show config")).map((r) => [r.key, r.value]));
    const declared = poolerSettings();
    expect(config.pool_mode).toBe("transaction");
    expect(declared.poolMode).toBe("transaction");
    expect(Number(config.default_pool_size)).toBe(declared.defaultPoolSize);
    expect(Number(config.max_client_conn)).toBe(declared.maxClientConn);
  });

  it("hands a server connection one client used to the next while the first stays connected", async () => {
    const url = withDatabase(poolerUrl(), db.name);
    const a = connect(url, 1);
    const b = connect(url, 1);
    try {
      const first = (await a<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      // in transaction mode a's server went back to the pool when its statement ended: b gets it;
      // in session mode a keeps it until a disconnects, and b gets another
      const inB = await b.begin(async (tx) => (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid);
      expect(inB).toBe(first);
      // session state outside a transaction stays on the server, not with the client
      await a`set pooler_test.flag = 'set by client a'`;
      const flag = (await b<{ flag: string | null }[]>`select current_setting('pooler_test.flag', true) as flag`)[0]!.flag;
      expect(flag).toBe("set by client a");
    } finally {
      await a.end();
      await b.end();
    }
  });

  it("serves 200 clients at once on at most its pool size of server connections", { timeout: 60_000 }, async () => {
    // a pooler of its own with the stack's settings: the shared one also holds the functions
    // workers' pooled connections, which would count against max_client_conn (200) here
    // and a database of its own, so that only this pooler's server connections are counted
    const settings = poolerSettings();
    const cluster = clusterFor({ name: TEST_STACK.name, port: Number(requireEnv("TEST_DB_PORT")) });
    const own = await emptyDatabase(`pooler_clients_${process.pid}`);
    const pooler = await startPooler({ ...cluster, name: `${cluster.name}-clients` }, await freeLocalPort(testPort("poolerClients"), 10), settings);
    const clients = Array.from({ length: settings.maxClientConn }, () => connect(pooler.url(own.name), 1, { fetch_types: false }));
    const serverConnections: number[] = [];
    let sampling = true;
    const sampler = asSuperuser(async (admin) => {
      while (sampling) {
        const rows = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = ${own.name} and usename = 'postgres'`;
        serverConnections.push(rows[0]!.n);
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    try {
      expect(settings.maxClientConn).toBe(200);
      const results = await Promise.allSettled(clients.map((c) => c`select pg_sleep(0.05), 1 as ok`));
      const failed = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed).toEqual([]);
    } finally {
      sampling = false;
      await sampler;
      await Promise.all(clients.map((c) => c.end()));
      await stopPooler(pooler);
      await own.drop();
    }
    const peak = Math.max(...serverConnections);
    expect(peak).toBeLessThanOrEqual(settings.defaultPoolSize);
    // the clients really queued on the pool: it filled up
    expect(peak).toBe(settings.defaultPoolSize);
    expect(settings.defaultPoolSize).toBe(poolSize());
  });

  it("leaves no pgbouncer process once stopped", async () => {
    const cluster = clusterFor({ name: TEST_STACK.name, port: Number(requireEnv("TEST_DB_PORT")) });
    const port = await freeLocalPort(testPort("poolerExtra"), 10);
    const pooler = await startPooler({ ...cluster, name: `${cluster.name}-extra` }, port);
    const pid = poolerPid(pooler);
    expect(pid).not.toBeNull();
    const through = connect(pooler.url(db.name), 1);
    expect((await through<{ one: number }[]>`select 1 as one`)[0]!.one).toBe(1);
    await through.end();
    expect(await stopPooler(pooler)).toBe(true);
    // gone, or exited and waiting to be reaped by whoever adopted the daemon
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8") : "";
    expect(stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")))).toBe(true);
    const ini = join(pooler.dir, "pgbouncer.ini");
    const left = await runProgram("pgrep", ["-f", ini]);
    expect(left.stdout.trim()).toBe("");
    expect(readFileSync(ini, "utf8")).toContain(`listen_port = ${port}`);
  });
});
