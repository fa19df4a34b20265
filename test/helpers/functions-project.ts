// A throwaway Supabase project of edge functions in a temporary folder, served by the local
// functions server (scripts/lib/functions-server.ts), for the suites of the server's mechanics.
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { startFunctionsServer, type FunctionsServer, type FunctionsServerOptions } from "../../scripts/lib/functions-server.ts";
import { tempDir } from "./processes.ts";

export interface FunctionsProject {
  server: FunctionsServer;
  /** stops the server and removes the folder */
  remove: () => Promise<void>;
}

/** functions: name → the source of its index.ts (verify_jwt off); options: the server's other settings. */
export async function serveFunctionsProject(
  functions: Record<string, string>,
  options: Pick<FunctionsServerOptions, "workersPerFunction" | "workersByFunction" | "log"> = {},
): Promise<FunctionsProject> {
  const root = tempDir("functions-project-");
  for (const [name, source] of Object.entries(functions)) {
    await mkdir(path.join(root, "supabase", "functions", name), { recursive: true });
    await writeFile(path.join(root, "supabase", "functions", name, "index.ts"), source);
  }
  await writeFile(path.join(root, "supabase", "config.toml"), Object.keys(functions).map((n) => `[functions.${n}]\nverify_jwt = false\n`).join("\n"));
  const remove = () => rm(root, { recursive: true, force: true });
  try {
    const server = await startFunctionsServer({
      port: 0,
      functionsDir: path.join(root, "supabase", "functions"),
      configTomlPath: path.join(root, "supabase", "config.toml"),
      env: { SUPABASE_URL: "http://127.0.0.1:1", SUPABASE_DB_URL: "postgres://nobody@127.0.0.1:1/unused", SUPABASE_ANON_KEY: "anon", SUPABASE_SERVICE_ROLE_KEY: "service" },
      jwtSecret: "test-jwt-secret-with-at-least-32-characters!!",
      log: () => undefined,
      ...options,
    });
    return { server, remove: async () => { await server.stop(); await remove(); } };
  } catch (err) {
    await remove();
    throw err;
  }
}
