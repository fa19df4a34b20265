// A local database the way a user's project gets the bundle: the demo app first (the customer's
// existing project), then `supabase db push` with the real CLI, then the setup steps the push leaves
// to run online.
import postgres from "postgres";
import { applyDemoApp } from "./demo-app.ts";
import { pushMigrations } from "./push-migrations.ts";
import { runSetup, type SetupRun } from "./setup-driver.ts";

export interface Deployed { app: string[]; applied: string[]; setup: SetupRun }

/** The setup steps on dbUrl, on a connection of their own. */
export async function runSetupAt(dbUrl: string): Promise<SetupRun> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    return await runSetup(sql);
  } finally {
    await sql.end();
  }
}

export async function deployOntoDemoApp(dbUrl: string): Promise<Deployed> {
  const app = await applyDemoApp(dbUrl);
  const { applied } = await pushMigrations(dbUrl);
  return { app, applied, setup: await runSetupAt(dbUrl) };
}
