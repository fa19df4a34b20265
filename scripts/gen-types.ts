// `npm run gen:types`: regenerates both generated type files from the migrations:
//   supabase/types/database.types.ts             before the swap (bundle pushed, setup steps run)
//   supabase/types/database-after-swap.types.ts  after the swap of both tables and finalize
//
//   npm run gen:types                                   # on the local stack's cluster (`npm start`; .env.local)
//   npm run gen:types -- --admin-url postgresql://…     # any local cluster, as a superuser
//
// It builds a scratch database on the cluster the way a project gets the bundle (the demo app, the
// push, the setup steps), generates the first file, migrates and swaps both tables, generates the
// second, and drops the scratch database; the databases you work with are not touched. Commit the
// result: a test regenerates both from the migrations and fails when a committed file differs.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative } from "node:path";
import postgres from "postgres";
import { commandLine, runCli } from "./lib/cli.ts";
import { REPO_ROOT } from "./lib/cluster.ts";
import { DATABASE_TYPES_PATHS, type DatabaseTypesState, generateDatabaseTypes, swapForTypes } from "./lib/database-types.ts";
import { deployOntoDemoApp } from "./lib/deploy.ts";
import { localAdminUrl, withScratchDatabases } from "./lib/scratch-db.ts";

const NAME = "npm run gen:types";
const USAGE = `usage: npm run gen:types [-- --admin-url <url>]

Writes ${relative(REPO_ROOT, DATABASE_TYPES_PATHS["before-swap"])} and
${relative(REPO_ROOT, DATABASE_TYPES_PATHS["after-swap"])} with supabase gen types, from a scratch
database built on a local cluster (default: the local stack's, from .env.local). Commit the result.

options:
  --admin-url <url>   a superuser URL of a local cluster
  -h, --help          this help`;

const { values } = commandLine({ name: NAME, usage: USAGE, options: { "admin-url": { type: "string" } } });

function write(state: DatabaseTypesState, types: string): void {
  const path = DATABASE_TYPES_PATHS[state];
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, types);
  console.log(`wrote ${relative(REPO_ROOT, path)} (${types.split("\n").length} lines)`);
}

await runCli(NAME, USAGE, async () => {
  const admin = localAdminUrl(values["admin-url"]);
  await withScratchDatabases(admin, ["gen_types"], async ([url = ""]) => {
    console.log(`scratch database ${new URL(url).pathname.slice(1)} on ${new URL(admin).host}: the demo app, the push, the setup steps`);
    await deployOntoDemoApp(url);
    write("before-swap", await generateDatabaseTypes(url, "before-swap"));
    console.log("migrating and swapping both tables, then finalize");
    const sql = postgres(url, { max: 2, onnotice: () => {} });
    try {
      await swapForTypes(sql);
    } finally {
      await sql.end();
    }
    write("after-swap", await generateDatabaseTypes(url, "after-swap"));
  });
});
