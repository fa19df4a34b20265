// The operator CLI (scripts/admin.ts over client/admin-client.ts) as an on-call operator meets it:
// on a terminal (a pseudo-terminal from util-linux's `script -q -e -c …`, no native build) and
// without one (a pipe, as in scripts and CI). Its own functions server (the edge functions as
// deployed) over a database of its own with the small demo data, so the swap here touches no
// other suite's tables.
// Covers: the project (host, function URL, where SUPABASE_URL came from) and the table named
// before anything is sent; swap, rollback, finalize, sync-off, finish-rollback and step --swap
// refused without a terminal and without --yes (one line, exit 2, nothing sent: no audit row);
// on a terminal they ask, "no" sends nothing (exit 1), "yes" runs it; --yes runs them anywhere.
// Failures name the URL, the cause and what to do: connection refused, a host name that does not
// resolve, TLS (a self-signed certificate), a gateway's 404 with the platform's own message, a
// proxy's HTML 502, the function's 401 for a key that is not the project's, the function's 409
// with the database's message and hint; --json carries the same.
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { CONFIRMED_ACTIONS } from "../../supabase/functions/_shared/admin-contract.ts";
import { freshDatabase, type FreshDb } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { loadSmallDemo, phaseOf } from "../helpers/migration.ts";
import { capture, type Captured, STACK_LINE, tempDir, TSX } from "../helpers/processes.ts";

/** The CLI without a terminal: stdin, stdout and stderr are pipes. */
async function cli(url: string, args: string[], key = testEnv.serviceRoleKey): Promise<Captured> {
  return capture(process.execPath, [TSX, "scripts/admin.ts", ...args], {
    cwd: REPO_ROOT, env: { ...process.env, SUPABASE_URL: url, SUPABASE_SERVICE_ROLE_KEY: key }, timeout: 120_000,
  });
}

const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * The CLI on a pseudo-terminal (`script` gives it one for stdin, stdout and stderr); `answer`
 * is typed once the question shows. Returns the exit code and everything the terminal showed.
 */
function onTerminal(url: string, args: string[], answer: string | null): Promise<{ code: number; screen: string; asked: boolean }> {
  const command = [process.execPath, TSX, "scripts/admin.ts", ...args].map(shellQuote).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], {
      cwd: REPO_ROOT, env: { ...process.env, SUPABASE_URL: url, SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey, TERM: "dumb" },
    });
    let screen = "";
    let asked = false;
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.stdout.on("data", (d: Buffer) => {
      screen += d.toString();
      if (!asked && /Type yes to run [^\n]*:/.test(screen)) {
        asked = true;
        if (answer !== null) child.stdin.write(`${answer}\r`);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, screen: screen.replaceAll("\r\n", "\n"), asked });
    });
  });
}

/** A one-off HTTP(S) server answering every request the same way; its URL. */
async function answering(status: number, headers: Record<string, string>, body: string, tls?: { key: string; cert: string }): Promise<{ url: string; close: () => Promise<void> }> {
  const handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(status, headers);
    res.end(body);
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

describe("npm run admin: the project it acts on, confirmation, failures", () => {
  let db: FreshDb;
  let fn: FunctionsServer;
  let host: string;
  const auditCount = async (action: string) =>
    (await db.sql<{ n: number }[]>`select count(*)::int as n from partition_mgmt.admin_audit where action = ${action}`)[0]!.n;

  beforeAll(async () => {
    db = await freshDatabase("admin_cli", { targetRowsPerLeaf: 100, minKeylessStatements: 10 });
    await loadSmallDemo(db.sql);
    fn = await startFunctionsServer({
      port: 0,
      functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
      configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
      env: { SUPABASE_URL: "http://127.0.0.1", SUPABASE_DB_URL: db.url, SUPABASE_ANON_KEY: testEnv.anonKey, SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey },
      jwtSecret: testEnv.jwtSecret,
      log: () => {},
    });
    host = new URL(fn.url).host;
  }, 180_000);

  afterAll(async () => {
    await fn?.stop();
    await db?.drop();
  });

  it("names the project, the function's URL and the table before it sends anything", async () => {
    const status = await cli(fn.url, ["status"]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stderr.split("\n")[0]).toBe(`project ${host} (${fn.url}/functions/v1/partition-admin; SUPABASE_URL from the environment), every managed table: status (read only)`);
    const step = await cli(fn.url, ["step", "--table", "gasifier", "--batch-size", "500"]);
    expect(step.code, step.stderr).toBe(0);
    expect(step.stderr.split("\n")[0]).toBe(`project ${host} (${fn.url}/functions/v1/partition-admin; SUPABASE_URL from the environment), table gasifier: step`);
    expect(step.stdout).toMatch(/next step of gasifier: done \(validated: the swap is taken with --swap\)/);
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
  });

  it("without a terminal, the actions that swap, drop or empty a table refuse without --yes: one line, exit 2, nothing sent", async () => {
    const asks = [...CONFIRMED_ACTIONS.map((a) => [a, "--table", "gasifier"]), ["step", "--table", "gasifier", "--swap"]];
    expect(asks.map((a) => a[0])).toEqual(["swap", "rollback", "finalize", "sync-off", "finish-rollback", "step"]);
    const before = await Promise.all(["swap", "rollback", "finalize", "sync-off", "finish-rollback", "step"].map(auditCount));
    for (const args of asks) {
      const r = await cli(fn.url, args);
      const what = `${args[0]}${args[0] === "step" ? " --swap" : ""} of gasifier on ${host}`;
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trimEnd().split("\n")).toEqual([
        `project ${host} (${fn.url}/functions/v1/partition-admin; SUPABASE_URL from the environment), table gasifier: ${args[0]}`,
        `npm run admin: ${what} needs confirmation and there is no terminal to ask on: pass --yes to run it from a script or CI`,
      ]);
      expect(r.stdout).toBe("");
    }
    expect(await Promise.all(["swap", "rollback", "finalize", "sync-off", "finish-rollback", "step"].map(auditCount))).toEqual(before);
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");
  });

  it("on a terminal, swap asks: anything but yes sends nothing; yes swaps", async () => {
    const declined = await onTerminal(fn.url, ["swap", "--table", "gasifier"], "no");
    expect(declined.asked, declined.screen).toBe(true);
    expect(declined.code, declined.screen).toBe(1);
    expect(declined.screen).toContain(`project ${host} (${fn.url}/functions/v1/partition-admin; SUPABASE_URL from the environment), table gasifier: swap`);
    expect(declined.screen).toMatch(/swap: the partitioned copy takes the table's name and the app reads and writes it from then on/);
    expect(declined.screen).toContain(`Type yes to run swap of gasifier on ${host}:`);
    expect(declined.screen).toMatch(/not confirmed: nothing was sent/);
    expect(await auditCount("swap")).toBe(0);
    expect(await phaseOf(db.sql, "gasifier")).toBe("validated");

    const confirmed = await onTerminal(fn.url, ["swap", "--table", "gasifier"], "yes");
    expect(confirmed.asked, confirmed.screen).toBe(true);
    expect(confirmed.code, confirmed.screen).toBe(0);
    expect(confirmed.screen).not.toMatch(/not confirmed/);
    expect(await phaseOf(db.sql, "gasifier")).toBe("swapped");
    const [audit] = await db.sql<{ status: string; actor_role: string }[]>`select status, actor_role from partition_mgmt.admin_audit where action = 'swap'`;
    expect(audit).toEqual({ status: "ok", actor_role: "service_role" });
  }, 180_000);

  it("a read-only action on a terminal asks nothing; --yes runs a confirmed one without asking", async () => {
    const status = await onTerminal(fn.url, ["status", "--table", "gasifier"], null);
    expect(status.asked).toBe(false);
    expect(status.code, status.screen).toBe(0);
    expect(status.screen).toMatch(/swapped/);

    const rollback = await cli(fn.url, ["rollback", "--table", "gasifier", "--yes"]);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.stdout).toMatch(/rolled back/);
    expect(await phaseOf(db.sql, "gasifier")).toBe("idle");
  }, 180_000);

  it("the function's refusal: the URL, HTTP 409 with the database's message, and its hint as what to do", async () => {
    const r = await cli(fn.url, ["finalize", "--table", "gasifier", "--yes"]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines[1]).toMatch(new RegExp(`^error: ${fn.url}/functions/v1/partition-admin answered HTTP 409 action_failed: .+`));
    expect(r.stderr).toMatch(/^what to do: .+/m);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  it("a key that is not the project's: HTTP 401 and which key to use", async () => {
    const r = await cli(fn.url, ["status"], "not-a-jwt");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: ${fn.url}/functions/v1/partition-admin answered HTTP 401 \\S+: .+`, "m"));
    expect(r.stderr).toMatch(/^what to do: SUPABASE_SERVICE_ROLE_KEY must be this project's service role key/m);
  });

  it("connection refused, a host name that does not resolve: the URL, the cause, what to do", async () => {
    const closed = await answering(200, {}, "");
    await closed.close();
    const refused = await cli(closed.url, ["status"]);
    expect(refused.code).toBe(1);
    const target = `${closed.url}/functions/v1/partition-admin`;
    expect(refused.stderr.trimEnd().split("\n").slice(1)).toEqual([
      `error: cannot reach ${target}: connection refused (nothing listens on ${new URL(closed.url).host})`,
      "what to do: start the local stack with npm start (it serves the functions), or check SUPABASE_URL (a hosted project's is https://<project-ref>.supabase.co)",
    ]);
    const json = await cli(closed.url, ["status", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { status: null, code: "connection_refused", url: target, next_step: expect.stringMatching(/npm start/) } });

    const dns = await cli("https://no-such-project.invalid", ["status"]);
    expect(dns.code).toBe(1);
    expect(dns.stderr).toMatch(/^error: cannot reach https:\/\/no-such-project\.invalid\/functions\/v1\/partition-admin: the host name no-such-project\.invalid does not resolve \((ENOTFOUND|EAI_AGAIN)\)$/m);
    expect(dns.stderr).toMatch(/^what to do: check SUPABASE_URL .*DNS/m);
    for (const r of [refused, dns]) expect(r.stderr).not.toMatch(STACK_LINE);
  }, 90_000);

  it("TLS: a certificate Node does not trust", async () => {
    const dir = tempDir("admin-cli-tls-");
    try {
      const made = await runProgram("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"),
        "-days", "1", "-subj", "/CN=127.0.0.1"]);
      expect(made.status, made.stderr).toBe(0);
      const server = await answering(200, {}, "{}", { key: readFileSync(path.join(dir, "key.pem"), "utf8"), cert: readFileSync(path.join(dir, "cert.pem"), "utf8") });
      try {
        const r = await cli(server.url, ["status"]);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`^error: cannot reach ${server.url}/functions/v1/partition-admin: TLS failed: self.signed certificate \\(DEPTH_ZERO_SELF_SIGNED_CERT\\)$`, "m"));
        expect(r.stderr).toMatch(/^what to do: .*NODE_EXTRA_CA_CERTS/m);
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a gateway's 404 and a proxy's 502: the platform's own message and what to do", async () => {
    const gateway = await answering(404, { "content-type": "application/json", "sb-error-code": "NOT_FOUND" }, JSON.stringify({ code: "NOT_FOUND", message: "Requested function was not found" }));
    const proxy = await answering(502, { "content-type": "text/html" }, "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>");
    try {
      const notFound = await cli(gateway.url, ["status"]);
      expect(notFound.code).toBe(1);
      expect(notFound.stderr.trimEnd().split("\n").slice(1)).toEqual([
        `error: ${gateway.url}/functions/v1/partition-admin answered HTTP 404 NOT_FOUND: Requested function was not found`,
        "what to do: deploy the function (supabase functions deploy partition-admin), or check SUPABASE_URL",
      ]);
      const bad = await cli(proxy.url, ["status"]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(new RegExp(`^error: ${proxy.url}/functions/v1/partition-admin answered HTTP 502 function_unavailable: 502 Bad Gateway$`, "m"));
      expect(bad.stderr).toMatch(/^what to do: read the function's logs \(Dashboard > Edge Functions > partition-admin > Logs\), then run it again$/m);
    } finally {
      await gateway.close();
      await proxy.close();
    }
  });
});
