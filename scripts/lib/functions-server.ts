/**
 * A local stand-in for `supabase functions serve` that needs no Docker.
 *
 * Each function runs in its own Deno process (scripts/functions/worker.ts),
 * and a small Node gateway in front of them does what the Supabase platform
 * does: routes /functions/v1/<name>/..., enforces verify_jwt, and reports
 * missing or crashed functions as JSON errors.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { errors as joseErrors, jwtVerify } from "jose";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";

export interface FunctionsServerEnv {
  SUPABASE_URL: string;
  SUPABASE_DB_URL: string;
  SUPABASE_ANON_KEY: string;
  SUPABASE_SERVICE_ROLE_KEY: string;
  /** Supabase's newer keys: a JSON object of name -> sb_secret_… key */
  SUPABASE_SECRET_KEYS?: string;
  /** the project's public signing keys, {"keys": [...]} */
  SUPABASE_JWKS?: string;
  /** partition-admin's bound on each action's statement (default 140s, under hosted's 150 s request limit) */
  PARTITION_ADMIN_STATEMENT_TIMEOUT?: string;
}

export interface FunctionsServerOptions {
  /** 0 picks a free port; the chosen one is in the returned url. */
  port: number;
  functionsDir: string;
  configTomlPath: string;
  env: FunctionsServerEnv;
  jwtSecret: string;
  /**
   * Hand the JWT secret to the functions (SB_LOCAL_JWT_SECRET) so they verify signatures
   * themselves, as with SUPABASE_JWT_SECRET on hosted. Default true; false is hosted's default,
   * where a function without key material only decodes the token.
   */
  secretForFunctions?: boolean;
  log?: (line: string) => void;
}

export interface FunctionsServer {
  url: string;
  functions: string[];
  stop(): Promise<void>;
}

/** How Deno should resolve bare specifiers for one function. */
type ModuleResolution =
  | { kind: "config"; path: string }
  | { kind: "import-map"; path: string }
  | { kind: "none" };

export interface FunctionSpec {
  name: string;
  entrypoint: string;
  verifyJwt: boolean;
  resolution: ModuleResolution;
}

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DENO_BIN = path.join(REPO_ROOT, "node_modules", ".bin", "deno");
const WORKER_SCRIPT = path.join(REPO_ROOT, "scripts", "functions", "worker.ts");

// The first boot downloads npm packages into Deno's cache.
const WORKER_BOOT_TIMEOUT_MS = 60_000;
const WORKER_POLL_INTERVAL_MS = 100;
const WORKER_STOP_GRACE_MS = 5_000;
const SUSPECT_EXIT_GRACE_MS = 1_000;
const STDERR_TAIL_LINES = 40;
const FUNCTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

// ---------------------------------------------------------------------------
// Discovery and config.toml
// ---------------------------------------------------------------------------

const FunctionSectionSchema = z.looseObject({
  enabled: z.boolean().optional(),
  verify_jwt: z.boolean().optional(),
  import_map: z.string().optional(),
  entrypoint: z.string().optional(),
});
type FunctionSection = z.infer<typeof FunctionSectionSchema>;

const ConfigSchema = z.looseObject({
  functions: z.record(z.string(), FunctionSectionSchema).optional(),
});

async function readFunctionSections(configTomlPath: string): Promise<Record<string, FunctionSection>> {
  const parsed = ConfigSchema.safeParse(parseToml(await readFile(configTomlPath, "utf8")));
  if (!parsed.success) {
    throw new Error(`${configTomlPath}: invalid [functions.*] section: ${parsed.error.message}`);
  }
  return parsed.data.functions ?? {};
}

function isFile(p: string): boolean {
  return existsSync(p) && statSync(p).isFile();
}

function resolutionFor(importMap: string | undefined, functionDir: string): ModuleResolution {
  const candidate = importMap ?? path.join(functionDir, "deno.json");
  if (!isFile(candidate)) {
    if (importMap) throw new Error(`import_map ${importMap} does not exist`);
    return { kind: "none" };
  }
  // A deno.json carries its import map inside; a bare import map file does not.
  const isDenoConfig = /^deno\.jsonc?$/.test(path.basename(candidate));
  return isDenoConfig ? { kind: "config", path: candidate } : { kind: "import-map", path: candidate };
}

function specFor(name: string, functionsDir: string, supabaseDir: string, section: FunctionSection): FunctionSpec {
  const functionDir = path.join(functionsDir, name);
  // As in the Supabase CLI, paths in config.toml are relative to supabase/.
  const fromConfig = (p: string | undefined): string | undefined =>
    p === undefined ? undefined : path.resolve(supabaseDir, p);
  const entrypoint = fromConfig(section.entrypoint) ?? path.join(functionDir, "index.ts");
  if (!isFile(entrypoint)) throw new Error(`function ${name}: entrypoint ${entrypoint} does not exist`);
  return {
    name,
    entrypoint,
    verifyJwt: section.verify_jwt ?? true,
    resolution: resolutionFor(fromConfig(section.import_map), functionDir),
  };
}

export async function discoverFunctions(functionsDir: string, configTomlPath: string): Promise<FunctionSpec[]> {
  const sections = await readFunctionSections(configTomlPath);
  const supabaseDir = path.dirname(configTomlPath);
  const entries = await readdir(functionsDir, { withFileTypes: true });
  const specs: FunctionSpec[] = [];
  for (const entry of entries) {
    const name = entry.name;
    // _shared and dot-folders hold code, not functions.
    if (!entry.isDirectory() || name.startsWith("_") || name.startsWith(".")) continue;
    if (!FUNCTION_NAME.test(name)) continue;
    const section = sections[name] ?? {};
    const hasIndex = isFile(path.join(functionsDir, name, "index.ts"));
    if (!hasIndex && section.entrypoint === undefined) continue;
    if (section.enabled === false) continue;
    specs.push(specFor(name, functionsDir, supabaseDir, section));
  }
  return specs.sort((a, b) => a.name.localeCompare(b.name));
}

// ---------------------------------------------------------------------------
// Worker processes
// ---------------------------------------------------------------------------

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error("could not allocate a port"))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// Only what Deno itself needs (cache location, proxies, certificates) is
// inherited: functions must not come to depend on this machine's env.
const INHERITED_ENV = /^(PATH|HOME|TMPDIR|TZ|LANG|LC_[A-Z]+|DENO_[A-Z_]+|NPM_CONFIG_REGISTRY|SSL_CERT_(FILE|DIR)|(HTTPS?|NO)_PROXY|(https?|no)_proxy)$/;

function inheritedEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && INHERITED_ENV.test(key)) out[key] = value;
  }
  return out;
}

function resolutionArgs(resolution: ModuleResolution): string[] {
  switch (resolution.kind) {
    case "config":
      return ["--config", resolution.path];
    case "import-map":
      return ["--no-config", "--import-map", resolution.path];
    case "none":
      return ["--no-config"];
  }
}

interface WorkerContext {
  env: FunctionsServerEnv;
  /** the secret the functions may use to verify tokens themselves (null: they only decode them) */
  functionSecret: string | null;
  log: (line: string) => void;
  cwd: string;
}

class FunctionWorker {
  private proc: ChildProcess | null = null;
  private port = 0;
  private booting: Promise<number> | null = null;
  private stderrTail: string[] = [];
  private stopping = false;
  // Set when a forward failed: a crash's connection reset can arrive before
  // Node has seen the child's exit, so liveness must be re-checked.
  private suspect = false;

  constructor(
    readonly spec: FunctionSpec,
    private readonly ctx: WorkerContext,
  ) {}

  /** Port of a live worker, booting one first if there is none (lazy restart). */
  ensureRunning(): Promise<number> {
    if (this.proc && !this.booting && !this.suspect) return Promise.resolve(this.port);
    this.booting ??= this.recoverOrBoot().finally(() => {
      this.booting = null;
    });
    return this.booting;
  }

  markUnreachable(): void {
    this.suspect = true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.terminate();
  }

  /** Synchronous last resort for process exit, when awaiting is impossible. */
  killNow(): void {
    if (this.proc && this.proc.exitCode === null) killGroup(this.proc, "SIGKILL");
  }

  private async recoverOrBoot(): Promise<number> {
    if (this.suspect) {
      this.suspect = false;
      if (await this.survivedFailure()) return this.port;
      await this.terminate();
    }
    return this.boot();
  }

  /**
   * A crashing Deno may still accept connections for a moment, so give it a
   * short grace to exit before trusting a successful connect.
   */
  private async survivedFailure(): Promise<boolean> {
    const proc = this.proc;
    if (!proc) return false;
    let onExit = (): void => undefined;
    let timer: NodeJS.Timeout | undefined;
    const died = await new Promise<boolean>((resolve) => {
      onExit = () => resolve(true);
      proc.once("exit", onExit);
      timer = setTimeout(() => resolve(false), SUSPECT_EXIT_GRACE_MS);
    });
    proc.off("exit", onExit);
    clearTimeout(timer);
    return !died && this.proc === proc && (await canConnect(this.port));
  }

  private async terminate(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    killGroup(proc, "SIGTERM");
    const timer = setTimeout(() => killGroup(proc, "SIGKILL"), WORKER_STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  private async boot(): Promise<number> {
    if (this.stopping) throw new Error(`function ${this.spec.name}: server is stopping`);
    this.port = await freePort();
    // stop() may have run while we awaited the port; spawning now would leak.
    if (this.stopping) throw new Error(`function ${this.spec.name}: server is stopping`);
    this.stderrTail = [];
    const proc = this.spawnWorker(this.port);
    this.proc = proc;
    const exitedEarly = new Promise<never>((_, reject) => {
      // "close" rather than "exit": stdio is drained by then, so the tail is complete.
      proc.once("close", (code, signal) => {
        const tail = this.stderrTail.join("\n");
        reject(new Error(`function ${this.spec.name}: worker exited (${signal ?? code}) before listening\n${tail}`));
      });
    });
    // Once booted, a later exit is onExit's business, not this promise's.
    exitedEarly.catch(() => undefined);
    try {
      await Promise.race([this.waitListening(proc), exitedEarly]);
    } catch (err) {
      this.killNow();
      this.proc = null;
      throw err;
    }
    return this.port;
  }

  private spawnWorker(port: number): ChildProcess {
    const args = [
      "run",
      "--allow-all",
      // The repo root has a package.json; without this Deno refuses npm: specifiers.
      "--node-modules-dir=none",
      ...resolutionArgs(this.spec.resolution),
      WORKER_SCRIPT,
    ];
    const proc = spawn(DENO_BIN, args, {
      cwd: this.ctx.cwd,
      env: this.workerEnv(port),
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group, so stop() also reaps anything the function spawned.
      detached: true,
    });
    this.pipeLines(proc.stdout, false);
    this.pipeLines(proc.stderr, true);
    proc.once("exit", (code, signal) => this.onExit(proc, code, signal));
    return proc;
  }

  private workerEnv(port: number): Record<string, string> {
    return {
      // Egress here may pass a TLS proxy whose CA only the OS trusts; Deno's
      // bundled store alone then fails the first npm download.
      DENO_TLS_CA_STORE: "mozilla,system",
      ...inheritedEnv(),
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      ...this.ctx.env,
      // Hosted Supabase does not expose the JWT secret; this local-only name
      // lets _shared/jwt.ts verify tokens itself when running here.
      ...(this.ctx.functionSecret === null ? {} : { SB_LOCAL_JWT_SECRET: this.ctx.functionSecret }),
      WORKER_PORT: String(port),
      WORKER_ENTRYPOINT: this.spec.entrypoint,
    };
  }

  private pipeLines(stream: NodeJS.ReadableStream | null, isStderr: boolean): void {
    if (!stream) return;
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on("line", (line) => {
      if (isStderr) {
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      }
      this.ctx.log(`[${this.spec.name}] ${line}`);
    });
  }

  private onExit(proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.proc !== proc) return;
    this.proc = null;
    if (!this.stopping) {
      this.ctx.log(`[${this.spec.name}] worker exited (${signal ?? code}); it restarts on the next request`);
    }
  }

  private async waitListening(proc: ChildProcess): Promise<void> {
    const deadline = Date.now() + WORKER_BOOT_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) return; // exitedEarly reports it
      if (await canConnect(this.port)) return;
      await sleep(WORKER_POLL_INTERVAL_MS);
    }
    throw new Error(
      `function ${this.spec.name}: worker not listening after ${WORKER_BOOT_TIMEOUT_MS / 1000}s\n` +
        this.stderrTail.join("\n"),
    );
  }
}

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------

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
  workers: Map<string, FunctionWorker>;
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

export async function startFunctionsServer(opts: FunctionsServerOptions): Promise<FunctionsServer> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const specs = await discoverFunctions(opts.functionsDir, opts.configTomlPath);
  const ctx: WorkerContext = {
    env: opts.env,
    functionSecret: opts.secretForFunctions === false ? null : opts.jwtSecret,
    log,
    cwd: path.dirname(path.dirname(path.resolve(opts.configTomlPath))),
  };
  const workers = new Map(specs.map((spec) => [spec.name, new FunctionWorker(spec, ctx)] as const));
  const gw: Gateway = {
    workers,
    key: new TextEncoder().encode(opts.jwtSecret),
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
  const killAll = (): void => workers.forEach((w) => w.killNow());
  process.once("exit", killAll);

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off("exit", killAll);
      await Promise.all([...workers.values()].map((w) => w.stop()));
      gw.agent.destroy();
      if (server.listening) await closeServer(server);
    })();
    return stopped;
  };

  try {
    const port = await listen(server, opts.port);
    await Promise.all([...workers.values()].map((w) => w.ensureRunning()));
    return { url: `http://127.0.0.1:${port}`, functions: specs.map((s) => s.name), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
