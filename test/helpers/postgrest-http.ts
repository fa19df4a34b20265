// PostgREST's RPC endpoint over HTTP for the suites, so supabase-js' own `supabase.rpc(…)` can be
// sent to the test cluster: the local stack serves the edge functions but runs no PostgREST.
// POST /rest/v1/rpc/<fn> with the user's Bearer token → the statement PostgREST sends for it, in its
// transaction, as that caller (./postgrest.ts: rpcStatement, send) → PostgREST's answer: the JSON
// body, or its error body `{ code, message, details, hint }` with the HTTP status PostgREST gives
// the SQLSTATE (its "Errors" reference: P0001 and most others 400, 42501 401 for anon / 403 for a
// signed-in user, 23503/23505 409, 57014 and the other 5x-class states 500, …).
import http from "node:http";
import { jwtVerify } from "jose";
import type { Sql } from "postgres";
import { type Caller, type Role, rpcStatement, send } from "./postgrest.ts";

const ROLES: readonly Role[] = ["anon", "authenticated", "service_role"];

/** PostgREST's HTTP status of a failed statement (PostgREST docs, "Errors": HTTP Status Codes). */
export function postgrestStatus(sqlstate: string, role: Role): number {
  if (sqlstate === "42501") return role === "anon" ? 401 : 403;
  const exact: Record<string, number> = { "23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400, "42883": 404, "42P01": 404, "42P17": 500 };
  if (exact[sqlstate] !== undefined) return exact[sqlstate];
  const byClass: [RegExp, number][] = [
    [/^08/, 503], [/^09/, 500], [/^0L/, 403], [/^0P/, 403], [/^25/, 500], [/^28/, 403], [/^2D/, 500], [/^38/, 500],
    [/^39/, 500], [/^3B/, 500], [/^40/, 500], [/^53/, 503], [/^54/, 500], [/^55/, 500], [/^57/, 500], [/^58/, 500],
    [/^F0/, 500], [/^HV/, 500], [/^P0/, 500], [/^XX/, 500],
  ];
  return byClass.find(([re]) => re.test(sqlstate))?.[1] ?? 400;
}

export interface PostgrestRpcServer {
  /** What createClient takes as the project URL (its rest path is /rest/v1). */
  url: string;
  close: () => Promise<void>;
}

function answer(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

async function callerOf(req: http.IncomingMessage, key: Uint8Array): Promise<Caller | string> {
  const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
  if (!token) return "No authorization token";
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ["HS256"] });
    const role = payload.role as Role;
    if (!ROLES.includes(role)) return `role ${String(payload.role)} is not served here`;
    return { role, claims: payload as Record<string, unknown> };
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

export async function servePostgrestRpc(sql: Sql, jwtSecret: string): Promise<PostgrestRpcServer> {
  const key = new TextEncoder().encode(jwtSecret);
  const server = http.createServer((req, res) => {
    void (async () => {
      const fn = /^\/rest\/v1\/rpc\/([a-z_]+)$/.exec(new URL(req.url ?? "/", "http://x").pathname)?.[1];
      if (req.method !== "POST" || !fn) return answer(res, 404, { code: "PGRST202", message: "not an RPC call", details: null, hint: null });
      const caller = await callerOf(req, key);
      // PostgREST refuses a token it cannot verify or whose time is up with 401 (PGRST30x)
      if (typeof caller === "string") return answer(res, 401, { code: "PGRST301", message: caller, details: null, hint: null });
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const args = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      const result = await send(sql, caller, await rpcStatement(sql, { fn, args }));
      if (result.error) return answer(res, postgrestStatus(result.error.code, caller.role), result.error);
      answer(res, 200, result.data);
    })().catch((err: unknown) => answer(res, 500, { code: "XX000", message: String(err), details: null, hint: null }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
