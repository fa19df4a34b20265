// The edge functions' own token checks (_shared/jwt.ts), with the gateway's check out of the way.
//
// The platform's verify_jwt rejects a bad token before a function runs, so through the normal
// gateway the functions' own checks are never reached. Here the real functions are served with
// verify_jwt = false (a copy of supabase/config.toml), in the two set-ups a function meets on
// hosted Supabase: with key material (it verifies the signature itself) and without (it only
// decodes the token). In both, expiry, a missing exp, the role and the sub are checked by the
// function itself.
import { readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { connect } from "../helpers/db.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFunctionsServer, type FunctionsServer, type FunctionsServerEnv } from "../../scripts/lib/functions-server.ts";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { testEnv } from "../helpers/env.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { sleep } from "../helpers/time.ts";
import { tempDir } from "../helpers/processes.ts";

const FUNCTIONS = ["get-observations-optimized", "partition-admin"] as const;
const OTHER_SECRET = "another-secret-that-is-at-least-32-characters-long";
const BOOT_TIMEOUT_MS = 120_000;

let configDir: string;

beforeAll(async () => {
  configDir = tempDir("own-token-checks-");
  const toml = (await readFile(path.join(REPO_ROOT, "supabase", "config.toml"), "utf8"))
    .replaceAll("verify_jwt = true", "verify_jwt = false")
    // paths in config.toml are relative to its folder: point them back at supabase/
    .replaceAll('"./functions/', `"${path.join(REPO_ROOT, "supabase", "functions")}/`);
  expect(toml).not.toMatch(/verify_jwt = true/);
  await writeFile(path.join(configDir, "config.toml"), toml);
});

afterAll(async () => {
  await rm(configDir, { recursive: true, force: true });
});

async function serve(secretForFunctions: boolean, log: (line: string) => void = () => undefined,
  env: Partial<FunctionsServerEnv> = {}): Promise<FunctionsServer> {
  return startFunctionsServer({
    port: 0,
    functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
    configTomlPath: path.join(configDir, "config.toml"),
    env: {
      SUPABASE_URL: testEnv.supabaseUrl,
      SUPABASE_DB_URL: testEnv.dbUrl,
      SUPABASE_ANON_KEY: testEnv.anonKey,
      SUPABASE_SERVICE_ROLE_KEY: testEnv.serviceRoleKey,
      ...env,
    },
    jwtSecret: testEnv.jwtSecret,
    secretForFunctions,
    log,
  });
}

async function rawToken(claims: Record<string, unknown>, secret = testEnv.jwtSecret): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(new TextEncoder().encode(secret));
}

async function post(server: FunctionsServer, fn: string, token: string, payload: Record<string, unknown> = {}): Promise<{ status: number; message: string }> {
  const res = await fetch(`${server.url}/functions/v1/${fn}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(payload),
  });
  const body = (await res.json()) as { error?: { message?: string } };
  return { status: res.status, message: body.error?.message ?? "" };
}

const now = () => Math.floor(Date.now() / 1000);

for (const secretForFunctions of [true, false]) {
  describe(`functions ${secretForFunctions ? "with" : "without"} key material, gateway check off`, () => {
    let server: FunctionsServer;
    beforeAll(async () => {
      server = await serve(secretForFunctions);
    }, BOOT_TIMEOUT_MS);
    afterAll(async () => {
      await server?.stop();
    });

    for (const fn of FUNCTIONS) {
      it(`${fn}: refuses an expired token itself`, async () => {
        const expired = await signUserToken(testEnv.jwtSecret, { sub: randomUUID(), expiresInSeconds: -60 });
        expect(await post(server, fn, expired)).toEqual({ status: 401, message: "JWT expired" });
        // a day late, and years late: no clock tolerance lets either through
        for (const age of [86_400, 10 * 365 * 86_400]) {
          const old = await rawToken({ sub: randomUUID(), role: "authenticated", aud: "authenticated", iat: now() - age - 3600, exp: now() - age });
          expect(await post(server, fn, old)).toEqual({ status: 401, message: "JWT expired" });
        }
      });

      it(`${fn}: refuses a token without exp, without role, or with a role it does not serve`, async () => {
        expect(await post(server, fn, await rawToken({ sub: randomUUID(), role: "authenticated" }))).toEqual({ status: 401, message: "JWT has no exp claim" });
        expect(await post(server, fn, await rawToken({ sub: randomUUID(), exp: now() + 600 }))).toEqual({ status: 401, message: "JWT has no role claim" });
        expect((await post(server, fn, await rawToken({ role: "postgres", exp: now() + 600 }))).status).toBe(403);
      });

      it(`${fn}: the token's signature is checked ${secretForFunctions ? "by the function" : "only by the platform (verify_jwt)"}`, async () => {
        const forged = await rawToken({ role: "service_role", exp: now() + 600 }, OTHER_SECRET);
        const answer = await post(server, fn, forged);
        if (secretForFunctions) {
          expect(answer).toEqual({ status: 401, message: "Invalid JWT signature" });
        } else {
          // without key material the function only decodes: this is why verify_jwt must stay on
          expect(answer.status).not.toBe(401);
        }
      });
    }

    it("partition-admin stores nothing for an unauthenticated call (the anon key's holders cannot fill the audit table)", async () => {
      const audit = connect(testEnv.dbUrl);
      try {
        // (other suites audit calls meanwhile: look for these calls' own marker)
        const marker = randomUUID();
        const expired = await signUserToken(testEnv.jwtSecret, { sub: randomUUID(), expiresInSeconds: -60 });
        for (const token of [expired, "not.a.jwt", await rawToken({ role: "service_role" })]) {
          expect((await post(server, "partition-admin", token, { action: "status", marker })).status).toBe(401);
        }
        // the same call authenticated is stored (invalid: marker is no parameter), so the search can find one
        expect((await post(server, "partition-admin", testEnv.serviceRoleKey, { action: "status", marker })).status).toBe(400);
        const [stored] = await audit<{ n: number }[]>`
          select count(*)::int as n from partition_mgmt.admin_audit where arguments ->> 'marker' = ${marker}`;
        expect(stored!.n).toBe(1);
      } finally {
        await audit.end();
      }
    });

    it("a valid user token gets past the token checks (and is then judged by the request)", async () => {
      const user = await signUserToken(testEnv.jwtSecret, { sub: randomUUID() });
      const reads = await post(server, "get-observations-optimized", user);
      expect(reads.status).toBe(400);   // the empty body lacks company_id and program_id
      expect(reads.message).toMatch(/company_id/);
      const admin = await post(server, "partition-admin", user);
      expect(admin.status).toBe(403);   // a signed-in user is not the service role
    });
  });
}

describe("a client that goes away before its body is read", () => {
  let server: FunctionsServer;
  const lines: string[] = [];
  beforeAll(async () => {
    server = await serve(true, (line) => lines.push(line));
  }, BOOT_TIMEOUT_MS);
  afterAll(async () => {
    await server?.stop();
  });

  it("is not logged as an unhandled error by either function", async () => {
    const token = await signUserToken(testEnv.jwtSecret, { sub: randomUUID() });
    const { port } = new URL(server.url);
    for (const fn of FUNCTIONS) {
      // headers announce 2,000 bytes, 10 arrive, then the socket closes
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(Number(port), "127.0.0.1", () => {
          socket.write(`POST /functions/v1/${fn} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
            "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{\"action\":");
          setTimeout(() => { socket.destroy(); resolve(); }, 300);
        });
        socket.on("error", reject);
      });
    }
    await sleep(1000);
    expect(lines.filter((l) => /unhandled error|Uncaught|internal_error/i.test(l))).toEqual([]);
    // and the functions still answer
    expect((await post(server, "get-observations-optimized", token)).status).toBe(400);
  });
});

describe("Supabase's newer keys: secret API keys and asymmetric signing keys", () => {
  const SECRET_KEY = `sb_secret_${randomUUID().replaceAll("-", "")}`;
  let server: FunctionsServer;
  let jwksServer: http.Server;
  let signingKey: CryptoKey;
  let otherKey: CryptoKey;
  const KID = "test-signing-key";

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    signingKey = pair.privateKey as CryptoKey;
    otherKey = (await generateKeyPair("ES256")).privateKey as CryptoKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: "ES256", use: "sig" };
    // the project's JWKS endpoint, as Supabase Auth serves it
    jwksServer = http.createServer((req, res) => {
      if (req.url === "/auth/v1/.well-known/jwks.json") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", () => r()));
    const address = jwksServer.address();
    const port = typeof address === "object" && address ? address.port : 0;
    server = await serve(false, () => undefined, {
      SUPABASE_URL: `http://127.0.0.1:${port}`,
      SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
    });
  }, BOOT_TIMEOUT_MS);
  afterAll(async () => {
    await server?.stop();
    await new Promise((r) => jwksServer?.close(r));
  });

  const es256 = (key: CryptoKey, claims: Record<string, unknown>, kid = KID) =>
    new SignJWT({ role: "authenticated", aud: "authenticated", ...claims }).setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
      .setIssuedAt().setExpirationTime("5m").sign(key);

  async function admin(headers: Record<string, string>, body: Record<string, unknown> = { action: "status" }) {
    const res = await fetch(`${server.url}/functions/v1/partition-admin`, {
      method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { status?: string; error?: { message?: string } } };
  }

  it("partition-admin takes the secret API key as the service role, in apikey or Authorization", async () => {
    expect(await admin({ apikey: SECRET_KEY })).toMatchObject({ status: 200, body: { status: "ok" } });
    expect(await admin({ authorization: `Bearer ${SECRET_KEY}` })).toMatchObject({ status: 200, body: { status: "ok" } });
    expect(await admin({ apikey: `${SECRET_KEY}x` })).toMatchObject({ status: 401, body: { error: { message: "Invalid API key" } } });
    expect(await admin({ apikey: "sb_publishable_abc" })).toMatchObject({ status: 401, body: { error: { message: expect.stringMatching(/publishable key identifies no one/) } } });
  });

  it("verifies a user's ES256 token against the project's JWKS endpoint", async () => {
    const good = await es256(signingKey, { sub: randomUUID() });
    const reads = await post(server, "get-observations-optimized", good);
    expect(reads.status).toBe(400);          // past the token checks: the empty body lacks company_id
    expect(reads.message).toMatch(/company_id/);
    expect(await post(server, "get-observations-optimized", await es256(otherKey, { sub: randomUUID() })))
      .toEqual({ status: 401, message: "Invalid JWT signature" });
    expect(await post(server, "get-observations-optimized", await es256(otherKey, { sub: randomUUID() }, "unknown-kid")))
      .toEqual({ status: 401, message: "Invalid JWT: no signing key of the project matches it" });
  });

  it("refuses a user token whose audience is not 'authenticated'", async () => {
    for (const aud of [undefined, "anon", ["other"]]) {
      const token = await es256(signingKey, { sub: randomUUID(), aud });
      const out = await post(server, "get-observations-optimized", token);
      expect(out.status).toBe(401);
      expect(out.message).toMatch(/JWT audience must be 'authenticated'/);
    }
    const both = await es256(signingKey, { sub: randomUUID(), aud: ["authenticated", "other"] });
    expect((await post(server, "get-observations-optimized", both)).status).toBe(400);
  });
});
