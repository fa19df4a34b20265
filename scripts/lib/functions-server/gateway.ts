/**
 * The HTTP front of the local functions server, doing what the Supabase platform does: routes
 * /functions/v1/<name>[/…] to the function's worker, enforces verify_jwt (HS256 with the local
 * JWT secret), streams bodies both ways and answers a missing or crashed function with a JSON error.
 */
import http from "node:http";
import { errors as joseErrors, jwtVerify } from "jose";
import type { FunctionWorker } from "./supervisor.ts";


function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
    // Lets browser callers read gateway errors, as they can on the platform.
    "Access-Control-Allow-Origin": "*",
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

/** Returns null when the request may pass, else why it may not. */
async function jwtRejection(req: http.IncomingMessage, key: Uint8Array): Promise<string | null> {
  const header = req.headers.authorization;
  if (!header) return "Missing authorization header";
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) return "Authorization header is not 'Bearer <token>'";
  try {
    await jwtVerify(match[1], key, { algorithms: ["HS256"] });
    return null;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) return "JWT expired";
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "Invalid JWT signature";
    return "Invalid JWT";
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
type ForwardOutcome = "answered" | "unreachable" | "client-gone";

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

/** Streams req to the worker and the worker's answer back to res. */
function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number,
  forwardPath: string,
  agent: http.Agent,
): Promise<ForwardOutcome> {
  return new Promise((resolve) => {
    let clientGone = false;
    // The worker's whole answer has been read (it may still be flushing to the caller).
    let answered = false;
    const upstream = http.request({
      host: "127.0.0.1",
      port,
      method: req.method,
      path: forwardPath,
      headers: endToEndHeaders(req.headers),
      agent,
    });
    upstream.on("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEndHeaders(answer.headers));
      answer.pipe(res);
      answer.on("end", () => {
        answered = true;
        discardRestOfBody(req, upstream);
        resolve("answered");
      });
      answer.on("error", () => {
        if (answered) return;
        res.destroy();
        resolve("answered");
      });
    });
    upstream.on("error", () => {
      // A worker that answered and then stopped reading the body (or was
      // disconnected by discardRestOfBody) is done: the answer stands.
      if (answered) return;
      if (clientGone) return resolve("client-gone");
      // After headers all we can do is cut the stream; before, the worker is down.
      if (res.headersSent) {
        res.destroy();
        return resolve("answered");
      }
      resolve("unreachable");
    });
    res.on("close", () => {
      if (res.writableFinished) return;
      clientGone = true;
      upstream.destroy();
    });
    req.pipe(upstream);
  });
}

interface Gateway {
  workers: ReadonlyMap<string, FunctionWorker>;
  key: Uint8Array;
  agent: http.Agent;
  log: (line: string) => void;
}

async function handleRequest(gw: Gateway, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const route = parseRoute(req.url);
  if (!route) return sendError(res, 404, "not_found", "Not found");
  const worker = gw.workers.get(route.name);
  if (!worker) return sendError(res, 404, "not_found", `Function ${route.name} not found`);
  // CORS preflights carry no credentials; the CLI's edge runtime lets them through too.
  if (worker.spec.verifyJwt && req.method !== "OPTIONS") {
    const rejection = await jwtRejection(req, gw.key);
    if (rejection) return sendError(res, 401, "unauthorized", rejection);
  }
  let port: number;
  try {
    port = await worker.ensureRunning();
  } catch (err) {
    gw.log(`[${route.name}] restart failed: ${err instanceof Error ? err.message : String(err)}`);
    return sendError(res, 502, "worker_boot_failed", `Function ${route.name} failed to start`);
  }
  const outcome = await forward(req, res, port, route.forwardPath, gw.agent);
  if (outcome === "unreachable") {
    worker.markUnreachable();
    sendError(res, 502, "worker_unavailable", `Function ${route.name} crashed or is unreachable; it restarts on the next request`);
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
  workers: ReadonlyMap<string, FunctionWorker>,
  jwtSecret: string,
  log: (line: string) => void,
): FunctionsGateway {
  const gw: Gateway = {
    workers,
    key: new TextEncoder().encode(jwtSecret),
    // No keep-alive: reusing a socket the worker is closing would surface as a spurious 502.
    agent: new http.Agent({ keepAlive: false }),
    log,
  };
  const server = http.createServer((req, res) => {
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
