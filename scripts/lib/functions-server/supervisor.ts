/**
 * N Deno processes per function (./deno-worker.ts runs the function's index.ts on a port of its
 * own), as the platform runs a function in several isolates under load: each worker has its own
 * module state (so its own postgres.js pool), is started with only the env vars hosted functions
 * get, booted again on the next request after a crash, and stopped with everything it spawned.
 */
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { FunctionSpec, ModuleResolution } from "./discovery.ts";

export interface FunctionsServerEnv {
  SUPABASE_URL: string;
  SUPABASE_DB_URL: string;
  /** the transaction pooler's URL (a secret the project sets; hosted gives none): _shared/db.ts's "pooled" connection */
  DB_POOLER_URL?: string;
  /** a read replica's URL, its lag bound, check interval and lock timeout in ms: _shared/replica.ts */
  DB_REPLICA_URL?: string;
  DB_REPLICA_MAX_LAG_MS?: string;
  DB_REPLICA_CHECK_MS?: string;
  DB_REPLICA_LOCK_TIMEOUT_MS?: string;
  SUPABASE_ANON_KEY: string;
  SUPABASE_SERVICE_ROLE_KEY: string;
  /** Supabase's newer keys: a JSON object of name -> sb_secret_… key */
  SUPABASE_SECRET_KEYS?: string;
  /** the project's public signing keys, {"keys": [...]} */
  SUPABASE_JWKS?: string;
  /** partition-admin's bound on each action's statement (default 140s, under hosted's 150 s request limit) */
  PARTITION_ADMIN_STATEMENT_TIMEOUT?: string;
}

const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const DENO_BIN = path.join(REPO_ROOT, "node_modules", ".bin", "deno");
const WORKER_SCRIPT = fileURLToPath(new URL("./deno-worker.ts", import.meta.url));

// The first boot downloads npm packages into Deno's cache.
const WORKER_BOOT_TIMEOUT_MS = 60_000;
const WORKER_POLL_INTERVAL_MS = 100;
const WORKER_STOP_GRACE_MS = 5_000;
const SUSPECT_EXIT_GRACE_MS = 1_000;
const STDERR_TAIL_LINES = 40;

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

export interface WorkerContext {
  env: FunctionsServerEnv;
  /** the secret the functions may use to verify tokens themselves (null: they only decode them) */
  functionSecret: string | null;
  log: (line: string) => void;
  cwd: string;
}

export class FunctionWorker {
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
    /** how its log lines are prefixed: the function's name, with the worker's number in a pool of several */
    private readonly label: string = spec.name,
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
      this.ctx.log(`[${this.label}] ${line}`);
    });
  }

  private onExit(proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.proc !== proc) return;
    this.proc = null;
    if (!this.stopping) {
      this.ctx.log(`[${this.label}] worker exited (${signal ?? code}); it restarts on the next request`);
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

/** A worker taken for one request; release() when its answer is done. */
export interface WorkerLease {
  worker: FunctionWorker;
  release: () => void;
}

/**
 * The workers of one function, as the platform's isolates of it. A request goes to the least busy
 * worker (fewest requests in flight), ties taken in turn: requests differ in cost (a 100-row page,
 * an aggregate over a year), and round-robin alone would queue one behind a slow request while
 * another worker sits idle; taking ties in turn sends even sequential requests to every worker,
 * so nothing can come to rely on one isolate's module state (hosted gives no affinity either).
 */
export class FunctionPool {
  readonly workers: readonly FunctionWorker[];
  private readonly inFlight: number[];
  private nextTie = 0;

  constructor(
    readonly spec: FunctionSpec,
    ctx: WorkerContext,
    size: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`function ${spec.name}: workers must be a positive integer, not ${size}`);
    this.workers = Array.from({ length: size }, (_, i) => new FunctionWorker(spec, ctx, size === 1 ? spec.name : `${spec.name}#${i + 1}`));
    this.inFlight = this.workers.map(() => 0);
  }

  acquire(): WorkerLease {
    const n = this.workers.length;
    let best = this.nextTie % n;
    for (let k = 1; k < n; k++) {
      const i = (this.nextTie + k) % n;
      if (this.inFlight[i]! < this.inFlight[best]!) best = i;
    }
    this.nextTie = (best + 1) % n;
    this.inFlight[best]!++;
    let released = false;
    return {
      worker: this.workers[best]!,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight[best]!--;
      },
    };
  }

  /** Boots every worker: the first alone (its boot may fill Deno's npm cache), then the others together. */
  async ensureRunning(): Promise<void> {
    const [first, ...rest] = this.workers;
    await first?.ensureRunning();
    await Promise.all(rest.map((w) => w.ensureRunning()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  killNow(): void {
    for (const w of this.workers) w.killNow();
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

