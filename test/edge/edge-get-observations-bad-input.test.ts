// get-observations-optimized refuses bad requests with the right 4xx and a JSON error naming the
// problem, never a 500. One table, each case sent over real HTTP to the Deno-served function
// (through the local gateway, which enforces verify_jwt as the platform does).
// Covers: missing, malformed and mistyped ids; SQL in strings; impossible and offset-less dates;
// an inverted range; out-of-range, fractional and textual limits; forged cursors; unknown modes,
// groupings and extra fields; mode-specific parameters in the wrong mode; non-object, non-JSON
// and non-UTF-8 bodies; a wrong content type; oversized bodies with and without Content-Length;
// GET specifics (mistyped and repeated parameters); missing, malformed, expired, forged,
// unsigned, anon, sub-less and wrong-role tokens; wrong methods. The tokens the gateway's
// verify_jwt refuses are answered in the hosted platform's shape (`{ code: 401, message }` and the
// sb-error-code header), every other case in the function's `{ error: { code, message, details } }`.
import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { testEnv } from "../helpers/env.ts";
import { createObservationsFixture, type ObservationsFixture } from "../helpers/observations-fixture.ts";

const URL_FN = () => `${testEnv.functionsUrl}/get-observations-optimized`;
const OTHER_SECRET = "another-secret-that-is-at-least-32-characters-long";

let fx: ObservationsFixture;

interface BadRequest {
  method?: string;
  /** Query string for GET. */
  query?: string;
  /** JSON-encoded unless `raw` is given. */
  json?: unknown;
  raw?: BodyInit;
  contentType?: string | null;
  /** Authorization header value; default: a valid token of company A's user. */
  authorization?: string | null;
}

interface BadCase {
  name: string;
  status: number;
  /** What the error message must mention. */
  mentions: RegExp;
  /** Field the error's details must name (validation errors). */
  field?: string;
  /** Refused by the gateway's verify_jwt, in the platform's shape: its sb-error-code. */
  platformCode?: string;
  request: () => Promise<BadRequest> | BadRequest;
}

const good = () => ({ company_id: fx.a.companyId, program_id: fx.a.programId });
const userToken = () => `Bearer ${fx.a.token}`;
const hmacKey = (secret: string) => new TextEncoder().encode(secret);
const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

const CASES: BadCase[] = [
  // ids
  { name: "company_id missing", status: 400, field: "company_id", mentions: /company_id: is required/, request: () => ({ json: { program_id: fx.a.programId } }) },
  { name: "program_id missing", status: 400, field: "program_id", mentions: /program_id: is required/, request: () => ({ json: { company_id: fx.a.companyId } }) },
  { name: "empty object", status: 400, field: "company_id", mentions: /company_id.*program_id/, request: () => ({ json: {} }) },
  { name: "malformed company_id", status: 400, field: "company_id", mentions: /company_id: must be a UUID/, request: () => ({ json: { ...good(), company_id: "not-a-uuid" } }) },
  { name: "uuid with a trailing character", status: 400, field: "program_id", mentions: /program_id/, request: () => ({ json: { ...good(), program_id: `${fx.a.programId}0` } }) },
  { name: "uuid without hyphens", status: 400, field: "site_id", mentions: /site_id/, request: () => ({ json: { ...good(), site_id: fx.a.siteIds[0].replaceAll("-", "") } }) },
  { name: "site_id as a number", status: 400, field: "site_id", mentions: /site_id: must be a UUID/, request: () => ({ json: { ...good(), site_id: 123 } }) },
  { name: "company_id null", status: 400, field: "company_id", mentions: /company_id/, request: () => ({ json: { ...good(), company_id: null } }) },
  { name: "submission_id as an operator object", status: 400, field: "submission_id", mentions: /submission_id/, request: () => ({ json: { ...good(), submission_id: { $ne: null } } }) },
  { name: "SQL in submission_id", status: 400, field: "submission_id", mentions: /submission_id/, request: () => ({ json: { ...good(), submission_id: "' or 1=1; --" } }) },
  { name: "SQL appended to a valid company_id", status: 400, field: "company_id", mentions: /company_id/, request: () => ({ json: { ...good(), company_id: `${fx.a.companyId}'; drop table public.companies; --` } }) },
  // dates
  { name: "start_date not a date", status: 400, field: "start_date", mentions: /start_date: must be an ISO 8601 date/, request: () => ({ json: { ...good(), start_date: "yesterday" } }) },
  { name: "start_date February 30th", status: 400, field: "start_date", mentions: /start_date/, request: () => ({ json: { ...good(), start_date: "2025-02-30" } }) },
  { name: "end_date month 13", status: 400, field: "end_date", mentions: /end_date/, request: () => ({ json: { ...good(), end_date: "2025-13-01" } }) },
  { name: "start_date in year 0", status: 400, field: "start_date", mentions: /start_date: must be in the years/, request: () => ({ json: { ...good(), start_date: "0000-01-01" } }) },
  { name: "date-time without an offset", status: 400, field: "start_date", mentions: /start_date.*offset/, request: () => ({ json: { ...good(), start_date: "2025-01-01T00:00:00" } }) },
  { name: "start_date as a number", status: 400, field: "start_date", mentions: /start_date/, request: () => ({ json: { ...good(), start_date: 1735689600000 } }) },
  { name: "SQL in end_date", status: 400, field: "end_date", mentions: /end_date/, request: () => ({ json: { ...good(), end_date: "2025-01-01'); delete from public.petri_observations; --" } }) },
  { name: "inverted date range", status: 400, field: "end_date", mentions: /end_date: must not be before start_date/, request: () => ({ json: { ...good(), start_date: "2025-03-01", end_date: "2025-02-01" } }) },
  // limit
  { name: "limit 0", status: 400, field: "limit", mentions: /limit: must be an integer from 1 to 1000/, request: () => ({ json: { ...good(), limit: 0 } }) },
  { name: "limit negative", status: 400, field: "limit", mentions: /limit/, request: () => ({ json: { ...good(), limit: -5 } }) },
  { name: "limit 1001", status: 400, field: "limit", mentions: /limit/, request: () => ({ json: { ...good(), limit: 1001 } }) },
  { name: "limit huge", status: 400, field: "limit", mentions: /limit/, request: () => ({ json: { ...good(), limit: 1e12 } }) },
  { name: "limit fractional", status: 400, field: "limit", mentions: /limit/, request: () => ({ json: { ...good(), limit: 10.5 } }) },
  { name: "limit as a string", status: 400, field: "limit", mentions: /limit/, request: () => ({ json: { ...good(), limit: "50" } }) },
  // cursor
  { name: "cursor garbage", status: 400, field: "cursor", mentions: /cursor: must be the next_cursor/, request: () => ({ json: { ...good(), cursor: "garbage" } }) },
  { name: "cursor with SQL for the id", status: 400, field: "cursor", mentions: /cursor/, request: () => ({ json: { ...good(), cursor: "2025-01-01T00:00:00Z|x' or '1'='1" } }) },
  { name: "cursor with a bad timestamp", status: 400, field: "cursor", mentions: /cursor/, request: () => ({ json: { ...good(), cursor: `not-a-date|${randomUUID()}` } }) },
  { name: "cursor too long", status: 400, field: "cursor", mentions: /cursor/, request: () => ({ json: { ...good(), cursor: `2025-01-01T00:00:00Z|${randomUUID()}${"a".repeat(200)}` } }) },
  // modes and fields
  { name: "unknown mode", status: 400, field: "mode", mentions: /mode: must be "rows"/, request: () => ({ json: { ...good(), mode: "everything" } }) },
  { name: "unknown group_by", status: 400, field: "group_by", mentions: /group_by/, request: () => ({ json: { ...good(), mode: "aggregate", group_by: "hour" } }) },
  { name: "cursor in aggregate mode", status: 400, field: "cursor", mentions: /cursor: is not a parameter/, request: () => ({ json: { ...good(), mode: "aggregate", cursor: `2025-01-01T00:00:00Z|${randomUUID()}` } }) },
  { name: "group_by in rows mode", status: 400, field: "group_by", mentions: /group_by/, request: () => ({ json: { ...good(), group_by: "day" } }) },
  { name: "extra field", status: 400, field: "is_admin", mentions: /is_admin: is not a parameter/, request: () => ({ json: { ...good(), is_admin: true } }) },
  { name: "p_-prefixed RPC parameter names", status: 400, field: "p_company_id", mentions: /p_company_id/, request: () => ({ json: { p_company_id: fx.a.companyId, p_program_id: fx.a.programId } }) },
  // bodies
  { name: "body is a JSON array", status: 400, field: "body", mentions: /body: must be a JSON object/, request: () => ({ json: [good()] }) },
  { name: "body is a JSON string", status: 400, field: "body", mentions: /body/, request: () => ({ json: "company_id" }) },
  { name: "body is JSON null", status: 400, field: "body", mentions: /body/, request: () => ({ json: null }) },
  { name: "body is not JSON", status: 400, field: "body", mentions: /body: is not valid JSON/, request: () => ({ raw: "{ company_id: ", contentType: "application/json" }) },
  { name: "body is not UTF-8", status: 400, field: "body", mentions: /UTF-8/, request: () => ({ raw: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), contentType: "application/json" }) },
  { name: "form-encoded body", status: 415, mentions: /application\/json/, request: () => ({ raw: "company_id=x", contentType: "application/x-www-form-urlencoded" }) },
  { name: "oversized body (1 MB, Content-Length)", status: 413, mentions: /exceeds 16384 bytes/, request: () => ({ json: { ...good(), notes: "x".repeat(1_000_000) } }) },
  {
    name: "oversized chunked body (no Content-Length)",
    status: 413,
    mentions: /exceeds/,
    request: () => {
      const chunk = new TextEncoder().encode(`{"pad":"${"x".repeat(8_000)}`);
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ < 8) controller.enqueue(chunk);
          else controller.close();
        },
      });
      return { raw: stream, contentType: "application/json" };
    },
  },
  // GET
  { name: "GET limit not a number", status: 400, field: "limit", mentions: /limit/, request: () => ({ method: "GET", query: new URLSearchParams({ ...good(), limit: "abc" }).toString() }) },
  { name: "GET repeated parameter", status: 400, field: "company_id", mentions: /company_id: is given more than once/, request: () => ({ method: "GET", query: `${new URLSearchParams(good())}&company_id=${fx.b.companyId}` }) },
  { name: "GET unknown parameter", status: 400, field: "select", mentions: /select/, request: () => ({ method: "GET", query: `${new URLSearchParams(good())}&select=*` }) },
  { name: "GET without parameters", status: 400, field: "company_id", mentions: /company_id/, request: () => ({ method: "GET" }) },
  // tokens
  { name: "no Authorization header", status: 401, platformCode: "UNAUTHORIZED_NO_AUTH_HEADER", mentions: /^Missing authorization header$/, request: () => ({ json: good(), authorization: null }) },
  { name: "Basic instead of Bearer", status: 401, platformCode: "UNAUTHORIZED_INVALID_JWT_FORMAT", mentions: /^Invalid JWT$/, request: () => ({ json: good(), authorization: `Basic ${Buffer.from("a:b").toString("base64")}` }) },
  { name: "malformed token", status: 401, platformCode: "UNAUTHORIZED_INVALID_JWT_FORMAT", mentions: /^Invalid JWT$/, request: () => ({ json: good(), authorization: "Bearer not.a.jwt" }) },
  {
    // answered by the gateway's verify_jwt, as on hosted; the function's own expiry check is
    // exercised without the gateway in edge-own-token-checks.test.ts
    name: "expired token (gateway)",
    status: 401,
    platformCode: "UNAUTHORIZED_LEGACY_JWT",
    mentions: /^Invalid JWT$/,
    request: async () => ({ json: good(), authorization: `Bearer ${await signUserToken(testEnv.jwtSecret, { sub: fx.a.userId, expiresInSeconds: -60 })}` }),
  },
  {
    name: "token signed with another secret",
    status: 401,
    platformCode: "UNAUTHORIZED_LEGACY_JWT",
    mentions: /^Invalid JWT$/,
    request: async () => ({ json: good(), authorization: `Bearer ${await signUserToken(OTHER_SECRET, { sub: fx.a.userId })}` }),
  },
  {
    name: "unsigned token (alg none)",
    status: 401,
    platformCode: "UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM",
    mentions: /^Invalid JWT$/,
    request: () => {
      const now = Math.floor(Date.now() / 1000);
      const token = `${base64url({ alg: "none", typ: "JWT" })}.${base64url({ sub: fx.a.userId, role: "authenticated", exp: now + 600 })}.`;
      return { json: good(), authorization: `Bearer ${token}` };
    },
  },
  {
    name: "tampered payload (role service_role, original signature)",
    status: 401,
    platformCode: "UNAUTHORIZED_LEGACY_JWT",
    mentions: /^Invalid JWT$/,
    request: () => {
      const [header, , signature] = fx.a.token.split(".");
      const now = Math.floor(Date.now() / 1000);
      const payload = base64url({ sub: fx.a.userId, role: "service_role", exp: now + 600 });
      return { json: good(), authorization: `Bearer ${header}.${payload}.${signature}` };
    },
  },
  { name: "anon key instead of a user token", status: 401, mentions: /signed-in user/, request: () => ({ json: good(), authorization: `Bearer ${testEnv.anonKey}` }) },
  {
    name: "user token without sub",
    status: 401,
    mentions: /sub/,
    request: async () => {
      const token = await new SignJWT({ role: "authenticated" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("5m").sign(hmacKey(testEnv.jwtSecret));
      return { json: good(), authorization: `Bearer ${token}` };
    },
  },
  {
    name: "user token whose sub is not a uuid",
    status: 401,
    mentions: /sub/,
    request: async () => ({ json: good(), authorization: `Bearer ${await signUserToken(testEnv.jwtSecret, { sub: "admin' --" })}` }),
  },
  {
    name: "token with a database role claim",
    status: 403,
    mentions: /role 'postgres'/i,
    request: async () => {
      const token = await new SignJWT({ role: "postgres", sub: fx.a.userId }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("5m").sign(hmacKey(testEnv.jwtSecret));
      return { json: good(), authorization: `Bearer ${token}` };
    },
  },
  // methods
  { name: "PUT", status: 405, mentions: /method not allowed/i, request: () => ({ method: "PUT", json: good() }) },
  { name: "DELETE", status: 405, mentions: /method not allowed/i, request: () => ({ method: "DELETE" }) },
  { name: "PATCH", status: 405, mentions: /method not allowed/i, request: () => ({ method: "PATCH", json: good() }) },
];

async function send(c: BadCase): Promise<Response> {
  const r = await c.request();
  const headers: Record<string, string> = {};
  const authorization = r.authorization === undefined ? userToken() : r.authorization;
  if (authorization !== null) headers.Authorization = authorization;
  let body: BodyInit | undefined;
  if (r.raw !== undefined) body = r.raw;
  else if (r.json !== undefined) body = JSON.stringify(r.json);
  const contentType = r.contentType === undefined && body !== undefined ? "application/json" : r.contentType;
  if (contentType) headers["Content-Type"] = contentType;
  const url = r.query ? `${URL_FN()}?${r.query}` : URL_FN();
  const init: RequestInit & { duplex?: "half" } = { method: r.method ?? "POST", headers, body };
  if (body instanceof ReadableStream) init.duplex = "half";
  return fetch(url, init);
}

beforeAll(async () => {
  fx = await createObservationsFixture({ a: 5, b: 5 });
});

afterAll(async () => {
  await fx?.remove();
});

describe("get-observations-optimized: bad input", () => {
  it("has a table of at least 30 bad requests with unique names", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const res = await send(c);
    const text = await res.text();
    expect(res.status, text).toBe(c.status);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    if (c.platformCode !== undefined) {
      expect(res.headers.get("sb-error-code")).toBe(c.platformCode);
      const platform = JSON.parse(text) as { code: number; message: string };
      expect(platform).toEqual({ code: 401, message: expect.stringMatching(c.mentions) });
      return;
    }
    expect(res.headers.get("sb-error-code")).toBeNull();
    const body = JSON.parse(text) as { error: { code: string; message: string; details?: { issues?: { field: string }[] } } };
    expect(typeof body.error.code).toBe("string");
    expect(body.error.message).toMatch(c.mentions);
    if (c.field !== undefined) {
      expect(body.error.code).toBe("validation_failed");
      expect((body.error.details?.issues ?? []).map((i) => i.field)).toContain(c.field);
    }
    // nothing internal leaks: no stack frames, no SQL text
    expect(text).not.toMatch(/\bat .+\.ts:\d+|stack|select .* from/i);
  });

  it("none of them touched the data: company A still has its rows", async () => {
    const [row] = await fx.sql<{ n: number }[]>`
      select count(*)::int as n from public.petri_observations where program_id = ${fx.a.programId}`;
    expect(row?.n).toBe(5);
    const [companies] = await fx.sql<{ n: number }[]>`select count(*)::int as n from public.companies where company_id = ${fx.a.companyId}`;
    expect(companies?.n).toBe(1);
  });
});
