// Fresh databases for integration tests: cloned from the migrated template in milliseconds.
import postgres, { type Sql } from "postgres";
import { randomBytes } from "node:crypto";
import { applyDemoApp } from "../../scripts/lib/demo-app.ts";
import { testEnv } from "./env.ts";

export interface FreshDb {
  name: string;
  /** URL for the non-superuser postgres role (what users and the app's server code use) */
  url: string;
  sql: Sql;
  drop: () => Promise<void>;
}

/** A pool of `max` connections to `url` that ignores the server's notices, as every suite opens them. */
export function connect(url: string, max = 1, options: Omit<postgres.Options<Record<string, postgres.PostgresType>>, "max" | "onnotice"> = {}): Sql {
  return postgres(url, { max, onnotice: () => {}, ...options });
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export interface FreshDbOptions {
  template?: string;
  /**
   * The managed tables' tree shape: the suites of the engine's period mechanics (premake, drain,
   * cleanup, concurrent creation) use the plan's literal tree, where every site has periods.
   */
  treeShape?: "sized" | "literal";
  /**
   * Rows a leaf should hold in a sized tree. The small demo data sets hold a few hundred rows per
   * program: the migration suites lower it so their tree has programs, sites and periods, and rows
   * move between leaves.
   */
  targetRowsPerLeaf?: number;
  /**
   * The pre-check's minimum of keyless statements that must fit in the lock table at once
   * (default 20). The migration suites' deep trees for a few hundred rows (100 rows per leaf): on
   * the small demo's petri tree a keyless statement takes 235 locks on PostgreSQL 15 and 286 on 17,
   * which also locks the partitioned tables' indexes; 16 of those fit in Micro's lock table, so
   * those suites lower the minimum to 10.
   */
  minKeylessStatements?: number;
}

export async function freshDatabase(label: string, opts: FreshDbOptions = {}): Promise<FreshDb> {
  const name = `t_${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase().slice(0, 30)}_${randomBytes(3).toString("hex")}`;
  await asSuperuser((admin) => admin.unsafe(`create database ${name} template ${opts.template ?? testEnv.templateDb} owner postgres`));
  const url = withDatabase(testEnv.dbUrl, name);
  const sql = connect(url, 4);
  if (opts.treeShape) await sql`update partition_mgmt.managed_tables set tree_shape = ${opts.treeShape}`;
  if (opts.targetRowsPerLeaf) await sql`update partition_mgmt.managed_tables set target_rows_per_leaf = ${opts.targetRowsPerLeaf}`;
  if (opts.minKeylessStatements) await sql`update partition_mgmt.managed_tables set min_keyless_statements = ${opts.minKeylessStatements}`;
  return {
    name,
    url,
    sql,
    drop: async () => {
      await sql.end({ timeout: 5 });
      await dropDatabase(name);
    },
  };
}

export { withDatabase };

/** Runs `fn` connected as the cluster's superuser to `database` (the test database by default), then disconnects. */
export async function asSuperuser<T>(fn: (admin: Sql) => Promise<T>, database?: string): Promise<T> {
  const admin = connect(database ? withDatabase(testEnv.adminUrl, database) : testEnv.adminUrl);
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

export async function dropDatabase(name: string): Promise<void> {
  await asSuperuser((admin) => admin.unsafe(`drop database if exists ${name} with (force)`));
}

/**
 * A database made from template1, which carries the hosted bootstrap only (no app, no bundle), as
 * the `postgres` role's; one a previous run left under the same name is dropped first.
 */
export async function emptyDatabase(name: string): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  await asSuperuser(async (admin) => {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name} owner postgres`);
  });
  return { name, url: withDatabase(testEnv.dbUrl, name), drop: () => dropDatabase(name) };
}


/** An empty database (emptyDatabase) with the demo app: a customer's project before the bundle, without data. */
export async function demoAppDatabase(name: string): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const db = await emptyDatabase(name);
  await applyDemoApp(db.url);
  return db;
}
