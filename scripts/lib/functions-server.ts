/**
 * A local stand-in for `supabase functions serve` that needs no Docker.
 *
 *   functions-server/discovery.ts   which functions there are (folders, config.toml) and how their imports resolve
 *   functions-server/supervisor.ts  N Deno processes per function (functions-server/deno-worker.ts), each with its own
 *                                   module state as the platform's isolates, restarted after a crash
 *   functions-server/gateway.ts     what the platform does in front: routes /functions/v1/<name>/..., enforces
 *                                   verify_jwt, reports missing or crashed functions as JSON errors
 */
import path from "node:path";
import { discoverFunctions } from "./functions-server/discovery.ts";
import { createGateway } from "./functions-server/gateway.ts";
import { FunctionPool, type FunctionsServerEnv, type WorkerContext } from "./functions-server/supervisor.ts";

export { discoverFunctions, type FunctionSpec } from "./functions-server/discovery.ts";
export type { FunctionsServerEnv } from "./functions-server/supervisor.ts";

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
  /**
   * Workers (Deno processes) per function, as the platform runs a function in several isolates
   * under load. Default 1.
   */
  workersPerFunction?: number;
  /** Workers of named functions, over workersPerFunction. */
  workersByFunction?: Readonly<Record<string, number>>;
}

function workersFor(name: string, opts: FunctionsServerOptions): number {
  return opts.workersByFunction?.[name] ?? opts.workersPerFunction ?? 1;
}

export interface FunctionsServer {
  url: string;
  functions: string[];
  /** workers per function */
  workers: Record<string, number>;
  stop(): Promise<void>;
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
  const workers = new Map(specs.map((spec) => [spec.name, new FunctionPool(spec, ctx, workersFor(spec.name, opts))] as const));
  const gateway = createGateway(workers, opts.jwtSecret, log);
  const killAll = (): void => workers.forEach((w) => w.killNow());
  process.once("exit", killAll);

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off("exit", killAll);
      await Promise.all([...workers.values()].map((w) => w.stop()));
      await gateway.close();
    })();
    return stopped;
  };

  try {
    const port = await gateway.listen(opts.port);
    await Promise.all([...workers.values()].map((w) => w.ensureRunning()));
    return {
      url: `http://127.0.0.1:${port}`,
      functions: specs.map((s) => s.name),
      workers: Object.fromEntries(specs.map((s) => [s.name, workersFor(s.name, opts)])),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
