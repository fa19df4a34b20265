/**
 * The local functions gateway: routing, verify_jwt, CORS preflights, the two
 * entrypoint styles, crash recovery, and the real `health` function.
 *
 * Only the health-against-Postgres cases need a database; they read its URL
 * from TEST_DB_URL (set by scripts/test.ts) and fail loudly without it.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.js";
import { makeApiKeys, signUserToken } from "../../scripts/lib/jwt-keys.js";
import { SignJWT } from "jose";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { tempDir } from "../helpers/processes.ts";

const SECRET = "test-jwt-secret-with-at-least-32-characters!!";
const OTHER_SECRET = "a-different-secret-with-at-least-32-characters";
// The first worker boot may download npm packages into Deno's cache.
const BOOT_TIMEOUT_MS = 120_000;
const UNUSED_DB_URL = "postgres://nobody@127.0.0.1:1/unused";

interface ErrorBody {
  error: { code: string; message: string };
}

async function errorOf(res: Response): Promise<ErrorBody["error"]> {
  expect(res.headers.get("content-type")).toMatch(/application\/json/);
  const body = (await res.json()) as ErrorBody;
  return body.error;
}

/**
 * A verify_jwt refusal as the hosted platform sends it (Supabase docs, "Edge Function 401 error
 * response" and "Error codes"): `{ "code": 401, "message": … }`, the reason in sb-error-code.
 */
async function platformRejection(res: Response): Promise<{ status: number; platformCode: string | null; body: unknown }> {
  expect(res.headers.get("content-type")).toMatch(/application\/json/);
  expect(res.headers.get("access-control-allow-origin")).toBe("*");
  return { status: res.status, platformCode: res.headers.get("sb-error-code"), body: await res.json() };
}

function serverEnv(dbUrl: string, anonKey: string, serviceRoleKey: string) {
  return {
    SUPABASE_URL: "http://127.0.0.1:54321",
    SUPABASE_DB_URL: dbUrl,
    SUPABASE_ANON_KEY: anonKey,
    SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
  };
}

describe("functions server with supabase/functions", () => {
  let server: FunctionsServer;
  let anonKey: string;
  let serviceRoleKey: string;
  const dbUrl = process.env.TEST_DB_URL;

  beforeAll(async () => {
    ({ anonKey, serviceRoleKey } = await makeApiKeys(SECRET));
    server = await startFunctionsServer({
      port: 0,
      functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
      configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
      env: serverEnv(dbUrl ?? UNUSED_DB_URL, anonKey, serviceRoleKey),
      jwtSecret: SECRET,
      log: () => undefined,
    });
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  const health = (init?: RequestInit) => fetch(`${server.url}/functions/v1/health`, init);
  const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });

  it("discovers health and skips _shared", () => {
    expect(server.functions).toContain("health");
    expect(server.functions).not.toContain("_shared");
  });

  it("rejects a request without a JWT, as the hosted platform does", async () => {
    const res = await health();
    expect(await platformRejection(res)).toEqual({
      status: 401, platformCode: "UNAUTHORIZED_NO_AUTH_HEADER", body: { code: 401, message: "Missing authorization header" },
    });
  });

  it("rejects a JWT signed with another secret", async () => {
    const forged = (await makeApiKeys(OTHER_SECRET)).serviceRoleKey;
    expect(await platformRejection(await health(bearer(forged)))).toEqual({
      status: 401, platformCode: "UNAUTHORIZED_LEGACY_JWT", body: { code: 401, message: "Invalid JWT" },
    });
  });

  it("rejects an expired JWT", async () => {
    const expired = await signUserToken(SECRET, { sub: "u1", expiresInSeconds: -60 });
    expect(await platformRejection(await health(bearer(expired)))).toEqual({
      status: 401, platformCode: "UNAUTHORIZED_LEGACY_JWT", body: { code: 401, message: "Invalid JWT" },
    });
  });

  it("rejects a non-Bearer authorization header, and a bearer token that is no JWT", async () => {
    for (const authorization of [`Basic ${anonKey}`, "Bearer not-a-jwt"]) {
      expect(await platformRejection(await health({ headers: { Authorization: authorization } }))).toEqual({
        status: 401, platformCode: "UNAUTHORIZED_INVALID_JWT_FORMAT", body: { code: 401, message: "Invalid JWT" },
      });
    }
  });

  it("rejects tokens of an asymmetric or unsupported algorithm (it holds only the legacy HS256 secret)", async () => {
    const es256 = `${Buffer.from(JSON.stringify({ alg: "ES256", typ: "JWT" })).toString("base64url")}.e30.c2ln`;
    expect((await platformRejection(await health(bearer(es256)))).platformCode).toBe("UNAUTHORIZED_ASYMMETRIC_JWT");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.e30.`;
    expect((await platformRejection(await health(bearer(none)))).platformCode).toBe("UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM");
  });

  it("lets a CORS preflight through without a JWT", async () => {
    const res = await health({
      method: "OPTIONS",
      headers: {
        Origin: "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
      },
    });
    expect([200, 204]).toContain(res.status);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")).toMatch(/authorization/);
    expect(res.headers.get("access-control-allow-methods")).toMatch(/POST/);
  });

  it("answers 404 for an unknown function", async () => {
    const res = await fetch(`${server.url}/functions/v1/no-such-function`, bearer(anonKey));
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toEqual({ code: "not_found", message: "Function no-such-function not found" });
  });

  it("answers 404 outside /functions/v1", async () => {
    const res = await fetch(`${server.url}/rest/v1/anything`);
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("not_found");
  });

  it("refuses JWT roles that must never reach SET ROLE", async () => {
    const token = await new SignJWT({ role: "postgres" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    const res = await health(bearer(token));
    expect(res.status).toBe(403);
    expect((await errorOf(res)).code).toBe("forbidden");
  });

  it("answers 405 with the error shape for an unsupported method", async () => {
    const res = await health({ method: "PUT", ...bearer(anonKey) });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, POST, OPTIONS");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect((await errorOf(res)).code).toBe("method_not_allowed");
  });

  describe("against Postgres (TEST_DB_URL)", () => {
    function requireDb(): void {
      if (!dbUrl) {
        throw new Error(
          "TEST_DB_URL is not set: these cases query Postgres through the health function. " +
            "Run them via `npm test`, which starts the local database and sets it.",
        );
      }
    }

    it("health returns ok with the anon key", async () => {
      requireDb();
      const res = await health(bearer(anonKey));
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ ok: true, role: "anon" });
      expect(Number.isNaN(Date.parse(String(body.db_time)))).toBe(false);
      expect(String(body.version)).toMatch(/^\d+/);
    });

    it("health runs as the caller's role for user and service tokens", async () => {
      requireDb();
      const user = await signUserToken(SECRET, { sub: "00000000-0000-0000-0000-000000000001", email: "a@b.c" });
      const asUser = await health({ method: "POST", ...bearer(user) });
      expect(asUser.status).toBe(200);
      expect(await asUser.json()).toMatchObject({ ok: true, role: "authenticated" });
      const asService = await health(bearer(serviceRoleKey));
      expect(asService.status).toBe(200);
      expect(await asService.json()).toMatchObject({ ok: true, role: "service_role" });
    });
  });
});

// ---------------------------------------------------------------------------
// Gateway mechanics, with throwaway functions that need no database.
// ---------------------------------------------------------------------------

const ECHO = `
console.log("echo booted");
Deno.serve({ port: 9, hostname: "0.0.0.0" }, async (req) => {
  const url = new URL(req.url);
  const body = await req.text();
  return new Response(JSON.stringify({
    method: req.method,
    path: url.pathname,
    search: url.search,
    bodyLength: body.length,
    bodyHead: body.slice(0, 16),
    header: req.headers.get("x-test"),
    supabaseUrl: Deno.env.get("SUPABASE_URL"),
    hasLocalSecret: Boolean(Deno.env.get("SB_LOCAL_JWT_SECRET")),
  }), { status: 201, headers: { "content-type": "application/json", "x-echo": "yes" } });
});
`;
const DEFAULT_EXPORT = `export default { fetch(_req: Request) { return new Response("default-export"); } };`;
const OPTIONS_HANDLER = `Deno.serve({ port: 8000, handler: () => new Response("options-handler") });`;
const CRASHY = `
Deno.serve((req) => {
  if (new URL(req.url).pathname.endsWith("/die")) Deno.exit(1);
  return new Response("alive");
});
`;
const STREAMING = `
Deno.serve(() => {
  const chunks = ["one ", "two ", "three"];
  const body = new ReadableStream({
    async pull(controller) {
      const next = chunks.shift();
      if (next === undefined) return controller.close();
      await new Promise((r) => setTimeout(r, 20));
      controller.enqueue(new TextEncoder().encode(next));
    },
  });
  return new Response(body);
});
`;
// Answers before reading the request body, as a size limit does.
const EARLY_ANSWER = `
Deno.serve((req) => {
  if (req.method === "GET") return new Response("fine");
  return new Response("too large", { status: 413 });
});
`;
const BROKEN = `throw new Error("boom at import");`;

/** files: paths relative to supabase/functions → source text. */
async function writeProject(files: Record<string, string>, configToml: string): Promise<string> {
  const root = tempDir("functions-server-test-");
  for (const [relative, source] of Object.entries(files)) {
    const file = path.join(root, "supabase", "functions", relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, source);
  }
  await writeFile(path.join(root, "supabase", "config.toml"), configToml);
  return root;
}

function startProject(root: string, log: (line: string) => void): Promise<FunctionsServer> {
  return startFunctionsServer({
    port: 0,
    functionsDir: path.join(root, "supabase", "functions"),
    configTomlPath: path.join(root, "supabase", "config.toml"),
    env: serverEnv(UNUSED_DB_URL, "anon", "service"),
    jwtSecret: SECRET,
    log,
  });
}

describe("functions server mechanics", () => {
  let root: string;
  let server: FunctionsServer;
  const lines: string[] = [];

  beforeAll(async () => {
    const names = ["echo", "default-export", "options-handler", "crashy", "streaming", "early-answer"];
    const config = names.map((n) => `[functions.${n}]\nverify_jwt = false\n`).join("\n");
    root = await writeProject(
      {
        "echo/index.ts": ECHO,
        "default-export/index.ts": DEFAULT_EXPORT,
        "options-handler/index.ts": OPTIONS_HANDLER,
        "crashy/index.ts": CRASHY,
        "streaming/index.ts": STREAMING,
        "early-answer/index.ts": EARLY_ANSWER,
        "_shared/index.ts": "export const notAFunction = true;",
        "no-entry-folder/helper.ts": "export const x = 1;",
      },
      config,
    );
    server = await startProject(root, (line) => lines.push(line));
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const call = (fn: string, init?: RequestInit) => fetch(`${server.url}/functions/v1/${fn}`, init);

  it("discovers only folders with an entrypoint, skipping _-prefixed ones", () => {
    expect(server.functions).toEqual(["crashy", "default-export", "early-answer", "echo", "options-handler", "streaming"]);
  });

  it("forwards method, sub-path, query, headers and body; returns status and headers", async () => {
    const payload = "x".repeat(1_000_000);
    const res = await call("echo/sub/path?x=1&y=two", {
      method: "POST",
      headers: { "x-test": "abc", "content-type": "text/plain" },
      body: payload,
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("x-echo")).toBe("yes");
    expect(await res.json()).toEqual({
      method: "POST",
      path: "/echo/sub/path",
      search: "?x=1&y=two",
      bodyLength: payload.length,
      bodyHead: "xxxxxxxxxxxxxxxx",
      header: "abc",
      supabaseUrl: "http://127.0.0.1:54321",
      hasLocalSecret: true,
    });
  });

  it("does not require a JWT when verify_jwt = false", async () => {
    const res = await call("echo");
    expect(res.status).toBe(201);
  });

  it("prefixes worker output with the function name", () => {
    expect(lines).toContain("[echo] echo booted");
  });

  it("serves `export default { fetch }` and Deno.serve({ handler })", async () => {
    expect(await (await call("default-export")).text()).toBe("default-export");
    expect(await (await call("options-handler")).text()).toBe("options-handler");
  });

  it("streams response bodies", async () => {
    expect(await (await call("streaming")).text()).toBe("one two three");
  });

  it("keeps the caller's connection usable after answering before the request body was read", async () => {
    // The caller's pooled keep-alive socket carries the next request; cutting
    // it after an early answer made that request fail with ECONNRESET.
    const chunk = new TextEncoder().encode("x".repeat(8_000));
    const chunked = (): ReadableStream<Uint8Array> => {
      let sent = 0;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ < 8) controller.enqueue(chunk);
          else controller.close();
        },
      });
    };
    const failures: string[] = [];
    for (let i = 0; i < 60; i++) {
      const bodies: BodyInit[] = [chunked(), "y".repeat(1_000_000)];
      for (const body of bodies) {
        try {
          const init: RequestInit & { duplex?: "half" } = { method: "POST", body };
          if (body instanceof ReadableStream) init.duplex = "half";
          const big = await call("early-answer", init);
          if (big.status !== 413 || (await big.text()) !== "too large") failures.push(`upload ${i}: ${big.status}`);
          const next = await call("early-answer");
          if (next.status !== 200 || (await next.text()) !== "fine") failures.push(`GET ${i}: ${next.status}`);
        } catch (err) {
          const cause = (err as { cause?: { code?: string } }).cause?.code;
          failures.push(`round ${i}: ${(err as Error).message}${cause ? ` (${cause})` : ""}`);
        }
      }
    }
    expect(failures).toEqual([]);
  }, 60_000);

  it("answers 502 when a worker crashes, then restarts it on the next request", async () => {
    const died = await call("crashy/die");
    expect(died.status).toBe(502);
    expect((await errorOf(died)).code).toBe("worker_unavailable");
    const revived = await call("crashy");
    expect(revived.status).toBe(200);
    expect(await revived.text()).toBe("alive");
  }, BOOT_TIMEOUT_MS);
});

describe("functions server boot failures", () => {
  it("rejects with the worker's stderr when a function throws at import", async () => {
    const root = await writeProject({ "broken/index.ts": BROKEN }, "[functions.broken]\nverify_jwt = false\n");
    try {
      await expect(startProject(root, () => undefined)).rejects.toThrow(/boom at import/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, BOOT_TIMEOUT_MS);
});
