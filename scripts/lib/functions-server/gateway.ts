/**
 * The HTTP front of the local functions server, doing what the Supabase platform does: routes
 * /functions/v1/<name>[/…] to the least busy of the function's workers, enforces verify_jwt (HS256 with the local
 * JWT secret) and refuses in the hosted platform's shape, streams bodies both ways and answers a
 * missing or crashed function with a JSON error.
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import http from "node:http";
import { decodeProtectedHeader } from "jose";
import jwt from "jsonwebtoken";
import type { FunctionPool } from "./supervisor.ts";

const KEEP_ALIVE_TIMEOUT_MS = 65_000;

// Lets browser callers read gateway errors, as they can on the platform.
const GATEWAY_CORS = { "Access-Control-Allow-Origin": "*" };

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
    ...GATEWAY_CORS,
  });
  res.end(body);
}

/**
 * A refusal of the verify_jwt check, as the hosted platform answers it: the body
 * `{ "code": 401, "message": "Invalid JWT" }` (or "Missing authorization header"), the reason in
 * the sb-error-code header (Supabase docs: "Edge Functions > Error codes", "Edge Function 401
 * error response"). The function never runs.
 */
interface JwtRejection {
  /** sb-error-code */
  platformCode:
    | "UNAUTHORIZED_NO_AUTH_HEADER"
    | "UNAUTHORIZED_INVALID_JWT_FORMAT"
    | "UNAUTHORIZED_LEGACY_JWT"
    | "UNAUTHORIZED_ASYMMETRIC_JWT"
    | "UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM";
  message: "Missing authorization header" | "Invalid JWT";
  /** What exactly was wrong, for the server's log only (the platform does not say it either). */
  reason: string;
}

function sendJwtRejection(res: http.ServerResponse, rejection: JwtRejection): void {
  const body = JSON.stringify({ code: 401, message: rejection.message });
  res.writeHead(401, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
    "sb-error-code": rejection.platformCode,
    ...GATEWAY_CORS,
  });
  res.end(body);
}

interface Route {
  name: string;
  /** Path the function sees: /<name>[/rest][?query], like on the platform. */
  forwardPath: string;
}

function parseRoute(rawUrl: string | undefined): Route | null {
  const url = rawUrl ?? "/";
  const queryAt = url.indexOf("?");
  const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
  const search = queryAt === -1 ? "" : url.slice(queryAt);
  const match = /^\/functions\/v1\/([^/]+)(\/.*)?$/.exec(pathname);
  if (!match?.[1]) return null;
  const name = match[1];
  return { name, forwardPath: `/${name}${match[2] ?? ""}${search}` };
}

/** The token's alg; undefined when it is no JWT at all (no decodable protected header). */
function algorithmOf(token: string): string | null | undefined {
  try {
    return decodeProtectedHeader(token).alg ?? null;
  } catch {
    return undefined;
  }
}

/**
 * Returns null when the request may pass, else why it may not. The HS256 check is synchronous
 * (jsonwebtoken, node:crypto): jose's goes through WebCrypto, a thread-pool hop per request that
 * npm run bench:edge measured at 0.4–0.5 ms a request here, against about 10 µs.
 */
function jwtRejection(req: http.IncomingMessage, key: KeyObject): JwtRejection | null {
  const header = req.headers.authorization;
  if (!header) return { platformCode: "UNAUTHORIZED_NO_AUTH_HEADER", message: "Missing authorization header", reason: "no Authorization header" };
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) {
    return { platformCode: "UNAUTHORIZED_INVALID_JWT_FORMAT", message: "Invalid JWT", reason: "Authorization header is not 'Bearer <token>'" };
  }
  const token = match[1];
  const alg = algorithmOf(token);
  if (alg === undefined) {
    return { platformCode: "UNAUTHORIZED_INVALID_JWT_FORMAT", message: "Invalid JWT", reason: "the bearer token is not a JWT" };
  }
  // Only the legacy HS256 secret is known here; the platform checks ES256/RS256 against the signing keys.
  if (alg === "ES256" || alg === "RS256") {
    return { platformCode: "UNAUTHORIZED_ASYMMETRIC_JWT", message: "Invalid JWT", reason: `${alg} token: the local gateway holds no signing keys` };
  }
  if (alg !== "HS256") {
    return { platformCode: "UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM", message: "Invalid JWT", reason: `not a JWT of ES256, RS256 or HS256 (alg ${alg ?? "missing"})` };
  }
  try {
    jwt.verify(token, key, { algorithms: ["HS256"] });
    return null;
  } catch (err) {
    const reason = err instanceof jwt.TokenExpiredError
      ? "JWT expired"
      : err instanceof jwt.JsonWebTokenError && err.message === "invalid signature"
        ? "invalid JWT signature"
        : `invalid JWT (${err instanceof Error ? err.message : String(err)})`;
    return { platformCode: "UNAUTHORIZED_LEGACY_JWT", message: "Invalid JWT", reason };
  }
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

function endToEndHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(key)) out[key] = value;
  }
  return out;
}

/**
 * How a forward ended: "unreachable" means the worker reset or refused the
 * connection before answering (a crash), "client-gone" that the caller left.
 */
export type ForwardOutcome = "answered" | "unreachable" | "client-gone";

/**
 * After a complete answer, discard what is left of the caller's body (a
 * function may answer, say 413, without reading it). Cutting the connection
 * instead breaks a caller still writing its body (EPIPE) and, worse, the
 * next request the caller's pool sends on that keep-alive socket
 * (ECONNRESET); never reading it stalls the socket. Node's requestTimeout
 * bounds a caller that never stops sending.
 */
function discardRestOfBody(req: http.IncomingMessage, upstream: http.ClientRequest): void {
  req.unpipe(upstream);
  upstream.destroy();
  if (!req.complete) req.resume();
}

/**
 * The answer's Server-Timing with the gateway's own phases after the function's: gw-verify
 * (verify_jwt) and gw-forward (from sending the request to the worker to its answer's headers,
 * the function's whole time included).
 */
function withGatewayTiming(headers: http.OutgoingHttpHeaders, verifyMs: number, forwardStartedAt: number): http.OutgoingHttpHeaders {
  const own = `gw-verify;dur=${verifyMs.toFixed(2)}, gw-forward;dur=${(performance.now() - forwardStartedAt).toFixed(2)}`;
  const fromFunction = headers["server-timing"];
  return { ...headers, "server-timing": fromFunction ? `${String(fromFunction)}, ${own}` : own };
}

/**
 * How long the gateway keeps an idle connection to a worker for the next request. Reusing it saves
 * a TCP connection and Deno's accept per request (about a millisecond here); it is kept well under
 * any idle limit of the worker's HTTP server (Deno's kept an idle connection open for more than 130 s
 * here), so the worker is not the side that closes it.
 */
export const WORKER_IDLE_SOCKET_MS = 2_000;

/** The gateway's connections to its workers: kept alive between requests, closed after WORKER_IDLE_SOCKET_MS idle. */
export function workerAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, timeout: WORKER_IDLE_SOCKET_MS });
}

/**
 * The request body kept to send again when a kept-alive connection turns out closed (up to this
 * many bytes; a larger body is not sent again: the caller gets the 502).
 */
const REPLAY_LIMIT_BYTES = 1 << 20;

/**
 * A reused connection that the worker had closed as the request went out: no byte of an answer,
 * the socket reset or ended. The worker never read the request, so it is sent again on a new connection.
 */
function closedUnderUs(upstream: http.ClientRequest, err: NodeJS.ErrnoException, answerStarted: boolean): boolean {
  return upstream.reusedSocket && !answerStarted && (err.code === "ECONNRESET" || err.code === "EPIPE" || err.code === "ECONNABORTED");
}

/**
 * Streams req to the worker and the worker's answer back to res; verifyMs: the verify_jwt check's
 * time. On a kept-alive connection the worker closed under us (closedUnderUs) the request is sent
 * once more on a new connection, its body replayed from what was already piped.
 */
export function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number,
  forwardPath: string,
  agent: http.Agent,
  verifyMs: number,
): Promise<ForwardOutcome> {
  return new Promise((resolve) => {
    const startedAt = performance.now();
    let clientGone = false;
    // The worker's whole answer has been read (it may still be flushing to the caller).
    let answered = false;
    // What the caller's body has sent so far, while it is small enough to send again.
    let sent: Buffer[] | null = [];
    let sentBytes = 0;
    const keep = (chunk: Buffer) => {
      if (!sent) return;
      sentBytes += chunk.length;
      if (sentBytes > REPLAY_LIMIT_BYTES) sent = null;
      else sent.push(chunk);
    };
    req.on("data", keep);
    let upstream: http.ClientRequest;
    const attempt = (retry: boolean) => {
      let answerStarted = false;
      const current = http.request({
        host: "127.0.0.1",
        port,
        method: req.method,
        path: forwardPath,
        headers: endToEndHeaders(req.headers),
        // the retry on a connection of its own: another idle one of the agent may be as stale
        agent: retry ? false : agent,
      });
      upstream = current;
      current.on("response", (answer) => {
        answerStarted = true;
        req.off("data", keep);
        sent = null;
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, withGatewayTiming(endToEndHeaders(answer.headers), verifyMs, startedAt));
        answer.pipe(res);
        answer.on("end", () => {
          answered = true;
          discardRestOfBody(req, current);
          resolve("answered");
        });
        answer.on("error", () => {
          if (answered) return;
          res.destroy();
          resolve("answered");
        });
      });
      current.on("error", (err: NodeJS.ErrnoException) => {
        // A worker that answered and then stopped reading the body (or was
        // disconnected by discardRestOfBody) is done: the answer stands.
        if (answered) return;
        if (clientGone) return resolve("client-gone");
        if (!retry && sent && closedUnderUs(current, err, answerStarted)) {
          req.unpipe(current);
          attempt(true);
          return;
        }
        // After headers all we can do is cut the stream; before, the worker is down.
        if (res.headersSent) {
          res.destroy();
          return resolve("answered");
        }
        resolve("unreachable");
      });
      if (!retry) {
        req.pipe(current);
        return;
      }
      for (const chunk of sent ?? []) current.write(chunk);
      if (req.readableEnded) current.end();
      else req.pipe(current);
    };
    res.on("close", () => {
      if (res.writableFinished) return;
      clientGone = true;
      upstream.destroy();
    });
    attempt(false);
  });
}

interface Gateway {
  pools: ReadonlyMap<string, FunctionPool>;
  /** The JWT secret as a key object, made once. */
  key: KeyObject;
  agent: http.Agent;
  log: (line: string) => void;
}

async function handleRequest(gw: Gateway, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const route = parseRoute(req.url);
  if (!route) return sendError(res, 404, "not_found", "Not found");
  const pool = gw.pools.get(route.name);
  if (!pool) return sendError(res, 404, "not_found", `Function ${route.name} not found`);
  // CORS preflights carry no credentials; the CLI's edge runtime lets them through too.
  const verifyStartedAt = performance.now();
  if (pool.spec.verifyJwt && req.method !== "OPTIONS") {
    const rejection = jwtRejection(req, gw.key);
    if (rejection) {
      gw.log(`[${route.name}] verify_jwt: 401 ${rejection.platformCode}: ${rejection.reason}`);
      return sendJwtRejection(res, rejection);
    }
  }
  const verifyMs = performance.now() - verifyStartedAt;
  const { worker, release } = pool.acquire();
  try {
    let port: number;
    try {
      port = await worker.ensureRunning();
    } catch (err) {
      gw.log(`[${route.name}] restart failed: ${err instanceof Error ? err.message : String(err)}`);
      return sendError(res, 502, "worker_boot_failed", `Function ${route.name} failed to start`);
    }
    const outcome = await forward(req, res, port, route.forwardPath, gw.agent, verifyMs);
    if (outcome === "unreachable") {
      worker.markUnreachable();
      sendError(res, 502, "worker_unavailable", `Function ${route.name} crashed or is unreachable; it restarts on the next request`);
    }
  } finally {
    release();
  }
}

function listen(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export interface FunctionsGateway {
  /** Listens on 127.0.0.1:port (0 picks a free port); resolves with the port. */
  listen(port: number): Promise<number>;
  close(): Promise<void>;
}

export function createGateway(
  pools: ReadonlyMap<string, FunctionPool>,
  jwtSecret: string,
  log: (line: string) => void,
): FunctionsGateway {
  const gw: Gateway = {
    pools,
    key: createSecretKey(Buffer.from(jwtSecret, "utf8")),
    agent: workerAgent(),
    log,
  };
  const server = http.createServer({
    // Node's 5 s default closes an idle keep-alive socket while a busy caller is already sending its
    // next request on it (the caller sees "other side closed"); platform front ends keep idle
    // sockets for about a minute. headersTimeout must exceed it (Node's rule).
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    headersTimeout: KEEP_ALIVE_TIMEOUT_MS + 1_000,
  }, (req, res) => {
    handleRequest(gw, req, res).catch((err: unknown) => {
      log(`gateway error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      sendError(res, 500, "internal_error", "Internal gateway error");
    });
  });
  return {
    listen: (port) => listen(server, port),
    async close() {
      gw.agent.destroy();
      if (server.listening) await closeServer(server);
    },
  };
}
