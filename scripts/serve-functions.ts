/**
 * Serves supabase/functions locally until SIGTERM/SIGINT.
 *
 *   tsx scripts/serve-functions.ts --env-file .env.local [--workers N] [--workers <name>=N ...]
 *
 * The env file holds KEY=VALUE lines: SUPABASE_DB_URL, SUPABASE_ANON_KEY,
 * SUPABASE_SERVICE_ROLE_KEY and JWT_SECRET are required; FUNCTIONS_PORT
 * defaults to 54321 and SUPABASE_URL to this server's own URL; DB_POOLER_URL, when
 * present, is handed to the functions (the read function's transaction pooler).
 * --workers N (else FUNCTIONS_WORKERS from the environment or the env file, else 1): Deno
 * processes per function, as the platform's isolates under load; --workers <name>=N for one function.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { commandLine, integerOption, usageExit } from "./lib/cli.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { startFunctionsServer } from "./lib/functions-server.ts";
import { REPLICA_ENV_KEYS } from "./lib/stack.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const REQUIRED = ["SUPABASE_DB_URL", "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY", "JWT_SECRET"] as const;
const DEFAULT_PORT = 54321;
const MAX_WORKERS = 64;
const NAME = "scripts/serve-functions.ts";
const USAGE = `usage: npx tsx ${NAME} --env-file <path> [--workers <n>] [--workers <function>=<n> ...]

Serves supabase/functions on FUNCTIONS_PORT (default 54321) until SIGTERM or SIGINT; npm start and
npm test run it in the background (scripts/lib/stack.ts).

options:
  --env-file <path>  KEY=VALUE lines: SUPABASE_DB_URL, SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY,
                     JWT_SECRET; optional FUNCTIONS_PORT, SUPABASE_URL, DB_POOLER_URL
  --workers <n>      Deno processes per function, 1 to 64, each with its own module state (its own
                     database pool), as the platform's isolates under load; requests go to the
                     least busy (default FUNCTIONS_WORKERS from the environment or the env file, else 1);
                     <function>=<n> for one function, over the number for all
  -h, --help         this help`;
const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: { "env-file": { type: "string" }, workers: { type: "string", multiple: true } },
});
let workersFlag: number | undefined;
const workersByFunction: Record<string, number> = {};
try {
  for (const value of values.workers ?? []) {
    const named = /^([^=]+)=(.*)$/.exec(value);
    if (named) workersByFunction[named[1]!] = integerOption(`--workers ${named[1]}`, named[2], 1, MAX_WORKERS)!;
    else workersFlag = integerOption("--workers", value, 1, MAX_WORKERS);
  }
} catch (e) {
  usageExit(NAME, USAGE, (e as Error).message);
}
if (!values["env-file"]) usageExit(NAME, USAGE, "--env-file is required");
const envFile = path.resolve(values["env-file"]);

function requireKeys(env: Record<string, string>): Record<(typeof REQUIRED)[number], string> {
  const missing = REQUIRED.filter((key) => !env[key]);
  if (missing.length > 0) throw new Error(`env file is missing: ${missing.join(", ")}`);
  return {
    SUPABASE_DB_URL: env.SUPABASE_DB_URL ?? "",
    SUPABASE_ANON_KEY: env.SUPABASE_ANON_KEY ?? "",
    SUPABASE_SERVICE_ROLE_KEY: env.SUPABASE_SERVICE_ROLE_KEY ?? "",
    JWT_SECRET: env.JWT_SECRET ?? "",
  };
}

function parsePort(raw: string | undefined): number {
  if (raw === undefined || raw === "") return DEFAULT_PORT;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid FUNCTIONS_PORT: ${raw}`);
  return port;
}

async function main(): Promise<void> {
  const fileEnv = readEnvFile(envFile);
  let workersPerFunction: number;
  try {
    workersPerFunction = workersFlag ?? integerOption("FUNCTIONS_WORKERS", process.env.FUNCTIONS_WORKERS ?? fileEnv.FUNCTIONS_WORKERS, 1, MAX_WORKERS) ?? 1;
  } catch (e) {
    usageExit(NAME, USAGE, (e as Error).message);
  }
  const required = requireKeys(fileEnv);
  const port = parsePort(fileEnv.FUNCTIONS_PORT);
  const server = await startFunctionsServer({
    workersPerFunction,
    workersByFunction,
    port,
    functionsDir: path.join(REPO_ROOT, "supabase", "functions"),
    configTomlPath: path.join(REPO_ROOT, "supabase", "config.toml"),
    env: {
      SUPABASE_URL: fileEnv.SUPABASE_URL || `http://127.0.0.1:${port}`,
      SUPABASE_DB_URL: required.SUPABASE_DB_URL,
      // the stack's transaction pooler: the read function's connection (_shared/db.ts)
      ...(fileEnv.DB_POOLER_URL ? { DB_POOLER_URL: fileEnv.DB_POOLER_URL } : {}),
      // a read replica for the read function (_shared/replica.ts), when the stack has one
      ...Object.fromEntries(REPLICA_ENV_KEYS.flatMap((k) => (fileEnv[k] ? [[k, fileEnv[k]]] : []))),
      SUPABASE_ANON_KEY: required.SUPABASE_ANON_KEY,
      SUPABASE_SERVICE_ROLE_KEY: required.SUPABASE_SERVICE_ROLE_KEY,
    },
    jwtSecret: required.JWT_SECRET,
    log: (line) => console.log(line),
  });
  console.log(`Serving functions on ${server.url}/functions/v1/<name>`);
  for (const name of server.functions) console.log(`  - ${server.url}/functions/v1/${name} (${server.workers[name]} worker${server.workers[name] === 1 ? "" : "s"})`);

  const shutdown = (signal: NodeJS.Signals): void => {
    console.log(`${signal}: stopping functions`);
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
