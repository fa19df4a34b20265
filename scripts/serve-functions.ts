/**
 * Serves supabase/functions locally until SIGTERM/SIGINT.
 *
 *   tsx scripts/serve-functions.ts --env-file .env.local
 *
 * The env file holds KEY=VALUE lines: SUPABASE_DB_URL, SUPABASE_ANON_KEY,
 * SUPABASE_SERVICE_ROLE_KEY and JWT_SECRET are required; FUNCTIONS_PORT
 * defaults to 54321 and SUPABASE_URL to this server's own URL; DB_POOLER_URL, when
 * present, is handed to the functions (the read function's transaction pooler).
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readEnvFile } from "./lib/env-file.ts";
import { startFunctionsServer } from "./lib/functions-server.ts";
import { REPLICA_ENV_KEYS } from "./lib/stack.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const REQUIRED = ["SUPABASE_DB_URL", "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY", "JWT_SECRET"] as const;
const DEFAULT_PORT = 54321;

function envFilePath(argv: readonly string[]): string {
  const at = argv.indexOf("--env-file");
  const value = at === -1 ? undefined : argv[at + 1];
  if (!value) throw new Error("usage: serve-functions --env-file <path>");
  return path.resolve(value);
}

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
  const fileEnv = readEnvFile(envFilePath(process.argv.slice(2)));
  const required = requireKeys(fileEnv);
  const port = parsePort(fileEnv.FUNCTIONS_PORT);
  const server = await startFunctionsServer({
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
  for (const name of server.functions) console.log(`  - ${server.url}/functions/v1/${name}`);

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
