// get-observations-optimized when the database cannot take the request: connections exhausted
// (SQLSTATE 53300, what the direct URL meets under load on Micro: npm run bench:load) or no database
// listening. The function answers 503 database_unavailable with Retry-After, in its error shape,
// so that a frontend retries; not a bare 500 internal_error. Covers: a role at its connection limit
// (53300), a refused connection (ECONNREFUSED), the typed client's code for it, and partition-admin.
import { randomUUID } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createObservationsClient } from "../../client/observations-client.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { startFunctionsServer, type FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { makeApiKeys, signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { asSuperuser } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { supabaseAs } from "../helpers/supabase.ts";

const SECRET = "test-jwt-secret-with-at-least-32-characters!!";
const BOOT_TIMEOUT_MS = 120_000;
const ROLE = `edge_no_slots_${randomUUID().slice(0, 8)}`;

/** The read function alone, its database at dbUrl (no pooler, no replica). */
async function serveReadFunction(dbUrl: string): Promise<FunctionsServer> {
  const { anonKey, serviceRoleKey } = await makeApiKeys(SECRET);
  return startFunctionsServer({
    port: 0,
    functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
    configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
    env: { SUPABASE_URL: "http://127.0.0.1:1", SUPABASE_DB_URL: dbUrl, SUPABASE_ANON_KEY: anonKey, SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey },
    jwtSecret: SECRET,
    log: () => undefined,
  });
}

async function read(server: FunctionsServer): Promise<{ status: number; retryAfter: string | null; body: { error?: { code: string; message: string; details?: { code?: string } } } }> {
  const token = await signUserToken(SECRET, { sub: randomUUID(), email: "someone@example.com" });
  const res = await fetch(`${server.url}/functions/v1/get-observations-optimized`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ company_id: randomUUID(), program_id: randomUUID() }),
  });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: (await res.json()) as never };
}

describe("the read function when the database cannot take the request", () => {
  const servers: FunctionsServer[] = [];
  let limited: FunctionsServer;
  let refused: FunctionsServer;

  beforeAll(async () => {
    // a login role at its connection limit: every connection it opens is refused with 53300
    await asSuperuser((admin) => admin.unsafe(`create role ${ROLE} login password 'x' connection limit 0`));
    const url = new URL(testEnv.dbUrl);
    url.username = ROLE;
    url.password = "x";
    limited = await serveReadFunction(url.toString());
    servers.push(limited);
    refused = await serveReadFunction("postgres://postgres:postgres@127.0.0.1:1/postgres");
    servers.push(refused);
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await asSuperuser((admin) => admin.unsafe(`drop role if exists ${ROLE}`));
  });

  it("answers 503 database_unavailable with Retry-After when connections are exhausted (53300)", async () => {
    const res = await read(limited);
    expect({ status: res.status, code: res.body.error?.code, detail: res.body.error?.details?.code, retryAfter: res.retryAfter })
      .toEqual({ status: 503, code: "database_unavailable", detail: "53300", retryAfter: "1" });
    expect(res.body.error?.message).toMatch(/retry/i);
  });

  it("the typed client reports it as database_unavailable, status 503", async () => {
    const token = await signUserToken(SECRET, { sub: randomUUID(), email: "someone@example.com" });
    const { anonKey } = await makeApiKeys(SECRET);
    const { data, error } = await createObservationsClient(supabaseAs(token, { url: limited.url, anonKey })).aggregate({ company_id: randomUUID(), program_id: randomUUID() });
    expect(data).toBeNull();
    expect({ status: error?.status, code: error?.code }).toEqual({ status: 503, code: "database_unavailable" });
  });

  it("partition-admin answers the same (a service-role health call)", async () => {
    const { serviceRoleKey } = await makeApiKeys(SECRET);
    for (const server of [limited, refused]) {
      const res = await fetch(`${server.url}/functions/v1/partition-admin`, {
        method: "POST",
        headers: { authorization: `Bearer ${serviceRoleKey}`, "content-type": "application/json" },
        body: JSON.stringify({ action: "health" }),
      });
      const body = (await res.json()) as { error?: { code: string } };
      expect({ status: res.status, code: body.error?.code, retryAfter: res.headers.get("retry-after") })
        .toEqual({ status: 503, code: "database_unavailable", retryAfter: "1" });
    }
  });

  it("answers 503 database_unavailable when no database listens", async () => {
    const res = await read(refused);
    expect({ status: res.status, code: res.body.error?.code, detail: res.body.error?.details?.code, retryAfter: res.retryAfter })
      .toEqual({ status: 503, code: "database_unavailable", detail: "ECONNREFUSED", retryAfter: "1" });
  });
});
