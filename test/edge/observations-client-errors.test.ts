// Every failure reaches the typed client (client/observations-client.ts) with its real code, and the
// routed RPCs by id answer typed rows.
// Covers:
//  - through the local stack (supabase-js → the gateway → the Deno-served function): the gateway's
//    verify_jwt refusals in the hosted platform's shape (expired, forged and malformed tokens:
//    unauthorized, the sb-error-code kept), the function's own 401 (the anon key) and 403 (another
//    company), each with its status and message; the admin client's view of a gateway refusal;
//  - the platform's other answers, in the shapes Supabase documents and its CLI serves, sent by a
//    stand-in HTTP server to the real supabase-js: hosted 401/404/429/500/503/504/546 with
//    sb-error-code, the CLI's `{ msg }` and text bodies, a relay error, a proxy's HTML page, a
//    `{ error }` body with a code the function never answers, an unreachable host;
//  - the routed RPCs through supabase-js' rpc and PostgREST's SQL (test/helpers/postgrest-http.ts):
//    getById (the row, or null for another company's), updateById (the changed row; an unknown
//    column is bad_request with its SQLSTATE), deleteById (false for another author's row under the
//    app's policy, true for the user's own, then false), an expired token (unauthorized).
import http from "node:http";
import { randomUUID } from "node:crypto";
import { createClient, type SupabaseClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminError, adminSupabase, invokeAdmin } from "../../client/admin-client.ts";
import { createObservationsClient, type ObservationsError } from "../../client/observations-client.ts";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { testEnv } from "../helpers/env.ts";
import { createObservationsFixture, epochMicros, type ObservationsFixture } from "../helpers/observations-fixture.ts";
import { type PostgrestRpcServer, servePostgrestRpc } from "../helpers/postgrest-http.ts";
import { supabaseAs } from "../helpers/supabase.ts";

let fx: ObservationsFixture;

beforeAll(async () => {
  fx = await createObservationsFixture({ a: 12, b: 4 });
});

afterAll(async () => {
  await fx?.remove();
});

const base = (c: { companyId: string; programId: string }) => ({ company_id: c.companyId, program_id: c.programId });

async function pageError(supabase: SupabaseClient, params = base(fx.a)): Promise<ObservationsError> {
  const { data, error } = await createObservationsClient(supabase).page(params);
  expect(data).toBeNull();
  return error!;
}

class NoRealtime {
  constructor() {
    throw new Error("realtime is not used");
  }
}

function clientAt(url: string, token = "any-token"): SupabaseClient {
  return createClient(url, testEnv.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { headers: { Authorization: `Bearer ${token}` } },
    realtime: { transport: NoRealtime as unknown as WebSocketLikeConstructor },
  });
}

describe("through the local stack", () => {
  it("the gateway's verify_jwt refusals are unauthorized, with the platform's reason", async () => {
    const expired = await signUserToken(testEnv.jwtSecret, { sub: fx.a.userId, expiresInSeconds: -60 });
    const [header, payload] = fx.a.token.split(".");
    for (const [token, platformCode] of [
      [expired, "UNAUTHORIZED_LEGACY_JWT"],
      [`${header}.${payload}.forged-signature`, "UNAUTHORIZED_LEGACY_JWT"],
      ["not-a-jwt", "UNAUTHORIZED_INVALID_JWT_FORMAT"],
    ] as const) {
      const error = await pageError(supabaseAs(token));
      expect(error).toMatchObject({ name: "ObservationsError", status: 401, code: "unauthorized", message: "Invalid JWT" });
      expect(error.details).toEqual({ platform_code: platformCode });
    }
  });

  it("the admin client (client/admin-client.ts) reports the gateway's refusal as unauthorized too", async () => {
    const [header, payload] = (testEnv.serviceRoleKey).split(".");
    const refused = await invokeAdmin(adminSupabase(testEnv.supabaseUrl, `${header}.${payload}.forged-signature`), { action: "health" })
      .then(() => null, (err: unknown) => err as AdminError);
    expect(refused).toMatchObject({ name: "AdminError", status: 401, code: "unauthorized", message: "Invalid JWT" });
    expect(refused!.details).toMatchObject({ platform_code: "UNAUTHORIZED_LEGACY_JWT" });
  });

  it("the function's own 401 and 403 keep their code and message", async () => {
    const anon = await pageError(supabaseAs(testEnv.anonKey));
    expect(anon).toMatchObject({ status: 401, code: "unauthorized" });
    expect(anon.message).toMatch(/signed-in user's access token/);

    const foreign = await pageError(supabaseAs(fx.a.token), base(fx.b));
    expect(foreign).toMatchObject({ status: 403, code: "forbidden" });
    expect(foreign.message).toMatch(/company/);
  });
});

// ---------------------------------------------------------------------------
// The platform's answers (Supabase docs: Edge Functions "Error codes", "Status codes", "Edge Function
// 401 error response"; the CLI's edge runtime: supabase/cli internal/functions/serve/templates/main.ts)
// ---------------------------------------------------------------------------

interface PlatformAnswer {
  name: string;
  status: number;
  headers?: Record<string, string>;
  body: string;
  expected: { code: string; message: string; platform_code: string | null };
}

const json = (value: unknown) => JSON.stringify(value);
const PLATFORM: PlatformAnswer[] = [
  { name: "hosted verify_jwt, missing header", status: 401, headers: { "sb-error-code": "UNAUTHORIZED_NO_AUTH_HEADER" },
    body: json({ code: 401, message: "Missing authorization header" }),
    expected: { code: "unauthorized", message: "Missing authorization header", platform_code: "UNAUTHORIZED_NO_AUTH_HEADER" } },
  { name: "hosted verify_jwt, invalid token", status: 401, headers: { "sb-error-code": "UNAUTHORIZED_LEGACY_JWT" },
    body: json({ code: 401, message: "Invalid JWT" }),
    expected: { code: "unauthorized", message: "Invalid JWT", platform_code: "UNAUTHORIZED_LEGACY_JWT" } },
  { name: "CLI edge runtime verify_jwt", status: 401, body: json({ msg: "Invalid JWT" }),
    expected: { code: "unauthorized", message: "Invalid JWT", platform_code: null } },
  { name: "CLI edge runtime, no header", status: 401, body: json({ msg: "Error: Missing authorization header" }),
    expected: { code: "unauthorized", message: "Error: Missing authorization header", platform_code: null } },
  { name: "hosted, function not deployed", status: 404, headers: { "sb-error-code": "NOT_FOUND" },
    body: json({ code: "NOT_FOUND", message: "Requested function was not found" }),
    expected: { code: "not_found", message: "Requested function was not found", platform_code: "NOT_FOUND" } },
  { name: "CLI, function not served", status: 404, headers: { "Content-Type": "text/plain" }, body: "Function not found",
    expected: { code: "not_found", message: "Function not found", platform_code: null } },
  { name: "hosted, recursive calls", status: 429, headers: { "sb-error-code": "RATE_LIMIT_EXCEEDED" },
    body: json({ code: "RATE_LIMIT_EXCEEDED", message: "Rate limit exceeded" }),
    expected: { code: "rate_limited", message: "Rate limit exceeded", platform_code: "RATE_LIMIT_EXCEEDED" } },
  { name: "hosted, uncaught exception", status: 500, headers: { "sb-error-code": "WORKER_ERROR" },
    body: json({ code: "WORKER_ERROR", message: "Function exited due to an error (please check logs)" }),
    expected: { code: "internal_error", message: "Function exited due to an error (please check logs)", platform_code: "WORKER_ERROR" } },
  { name: "hosted, boot error", status: 503, headers: { "sb-error-code": "BOOT_ERROR" },
    body: json({ code: "BOOT_ERROR", message: "Function failed to start (please check logs)" }),
    expected: { code: "function_unavailable", message: "Function failed to start (please check logs)", platform_code: "BOOT_ERROR" } },
  { name: "hosted, idle timeout", status: 504, headers: { "sb-error-code": "IDLE_TIMEOUT" }, body: "",
    expected: { code: "function_timeout", message: "HTTP 504 Gateway Timeout", platform_code: "IDLE_TIMEOUT" } },
  { name: "hosted, resource limit", status: 546, headers: { "sb-error-code": "WORKER_LIMIT" },
    body: json({ code: "WORKER_LIMIT", message: "Worker failed to respond due to a resource limit (please check logs)" }),
    expected: { code: "resource_limit", message: "Worker failed to respond due to a resource limit (please check logs)", platform_code: "WORKER_LIMIT" } },
  { name: "relay error", status: 502, headers: { "x-relay-error": "true" }, body: json({ message: "relay could not reach the function" }),
    expected: { code: "function_unavailable", message: "relay could not reach the function", platform_code: null } },
  { name: "a proxy's HTML page", status: 502, headers: { "Content-Type": "text/html" }, body: "<html><body>Bad Gateway</body></html>",
    expected: { code: "function_unavailable", message: "HTTP 502 Bad Gateway", platform_code: null } },
  { name: "a teapot", status: 418, body: "",
    expected: { code: "http_error", message: "HTTP 418 I'm a Teapot", platform_code: null } },
];

describe("the platform's answers, from a stand-in of the platform", () => {
  let server: http.Server;
  let url: string;
  let next: PlatformAnswer | undefined;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      const a = next!;
      res.writeHead(a.status, { "Content-Type": "application/json", ...a.headers });
      res.end(a.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it.each(PLATFORM.map((a) => [a.name, a] as const))("%s", async (_name, a) => {
    next = a;
    const error = await pageError(clientAt(url));
    expect({ status: error.status, code: error.code, message: error.message, details: error.details }).toEqual({
      status: a.status, code: a.expected.code, message: a.expected.message, details: { platform_code: a.expected.platform_code },
    });
  });

  it("an { error } body with a code the function never answers: by status, the original code in details", async () => {
    next = { name: "", status: 502, body: json({ error: { code: "worker_unavailable", message: "Function crashed" } }), expected: { code: "", message: "", platform_code: null } };
    const error = await pageError(clientAt(url));
    expect(error).toMatchObject({ status: 502, code: "function_unavailable", message: "Function crashed" });
    expect(error.details).toEqual({ server_code: "worker_unavailable", server_details: undefined });
  });

  it("no answer at all is a network_error", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const address = closed.address();
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await pageError(clientAt(`http://127.0.0.1:${typeof address === "object" && address ? address.port : 1}`));
    expect(error).toMatchObject({ status: null, code: "network_error" });
  });
});

// ---------------------------------------------------------------------------
// The routed RPCs
// ---------------------------------------------------------------------------

describe("routed RPCs by id, through supabase-js' rpc", () => {
  let rest: PostgrestRpcServer;

  beforeAll(async () => {
    rest = await servePostgrestRpc(fx.sql, testEnv.jwtSecret);
  });

  afterAll(async () => {
    await rest?.close();
  });

  const client = (token: string) => createObservationsClient(clientAt(rest.url, token));

  it("getById: the row with every column, or null for a row of another company", async () => {
    const mine = fx.a.observations[0]!;
    const { data, error } = await client(fx.a.token).getById("petri_observations", mine.observation_id);
    expect(error).toBeNull();
    expect(data).toMatchObject({ observation_id: mine.observation_id, site_id: mine.site_id, growth_index: mine.growth_index });
    expect(epochMicros(data!.created_at)).toBe(epochMicros(mine.created_at));
    const [columns] = await fx.sql<{ n: number }[]>`
      select count(*)::int as n from information_schema.columns where table_schema = 'public' and table_name = 'petri_observations'`;
    expect(Object.keys(data!)).toHaveLength(columns!.n);

    const theirs = await client(fx.a.token).getById("petri_observations", fx.b.observations[0]!.observation_id);
    expect(theirs).toEqual({ data: null, error: null });
  });

  it("updateById: the changed row; an unknown column is bad_request with its SQLSTATE", async () => {
    const id = fx.a.observations[1]!.observation_id;
    const note = `note ${randomUUID()}`;
    const { data, error } = await client(fx.a.token).updateById("petri_observations", id, { notes: note });
    expect(error).toBeNull();
    expect(data).toMatchObject({ observation_id: id, notes: note });

    // the parameter is typed by the table's Update type; a caller in plain JavaScript can still send anything
    const bad = await client(fx.a.token).updateById("petri_observations", id, { no_such_column: 1 } as never);
    expect(bad.data).toBeNull();
    expect(bad.error).toMatchObject({ status: 400, code: "bad_request" });
    expect(bad.error!.message).toMatch(/unknown column/);
    expect(bad.error!.details).toMatchObject({ sqlstate: "P0001" });
  });

  it("deleteById: false for a row the user may not delete, true for their own, then false; an expired token is unauthorized", async () => {
    const id = fx.a.observations[2]!.observation_id;
    // the app's policy: authors delete their own observations
    expect(await client(fx.a.token).deleteById("petri_observations", id)).toEqual({ data: false, error: null });
    await fx.sql`update public.petri_observations set created_by = ${fx.a.userId} where observation_id = ${id}`;
    expect(await client(fx.a.token).deleteById("petri_observations", id)).toEqual({ data: true, error: null });
    expect(await client(fx.a.token).deleteById("petri_observations", id)).toEqual({ data: false, error: null });
    fx.a.observations.splice(2, 1);

    const expired = await signUserToken(testEnv.jwtSecret, { sub: fx.a.userId, expiresInSeconds: -60 });
    const { error } = await client(expired).getById("petri_observations", fx.a.observations[0]!.observation_id);
    expect(error).toMatchObject({ status: 401, code: "unauthorized" });
  });
});
