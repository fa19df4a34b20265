// `npm run db:diff -- --name <what>`: the next migration, produced from the SQL sources.
//
//   1. edit supabase/schemas/<concept>.sql (the current source of every function, table, policy)
//   2. npm run db:diff -- --name <what_changed>      writes supabase/migrations/<UTC now>_<what>.sql
//   3. read it, add what it lists as "by hand", commit both
//
// Supabase's own `supabase db diff` needs Docker for its shadow database; this builds the same two
// databases on a local cluster instead (the demo app, then the migrations with the real CLI's push;
// the demo app, then the sources), compares their catalogs, writes each changed object from the
// sources' catalog, and checks the result: a third database built from the migrations with the new
// file must equal the sources'. Released migrations are never edited.
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import postgres from "postgres";
import { commandLine, runCli, UsageError } from "./lib/cli.ts";
import { REPO_ROOT } from "./lib/cluster.ts";
import { migrationFromDiff } from "./lib/schema-diff.ts";
import { buildFromMigrations, buildFromSources, compareBuilds, describeChanges } from "./lib/schema-sources.ts";
import { localAdminUrl, withScratchDatabases } from "./lib/scratch-db.ts";

const NAME = "npm run db:diff";
const USAGE = `usage: npm run db:diff -- --name <what_changed> [--dry-run] [--admin-url <url>]

Compares the database the migrations build with the one supabase/schemas builds (scratch databases
on a local cluster: the local stack's from .env.local, or --admin-url) and writes the difference as
supabase/migrations/<UTC timestamp>_<what_changed>.sql. Exits 0 with nothing written when they
already agree; 1 when part of the difference must be written by hand (listed, and in the file).

options:
  --name <what_changed>  the migration's name: lower case letters, digits and _
  --dry-run              print the migration, write nothing
  --admin-url <url>      a superuser URL of a local cluster
  -h, --help             this help`;

const { values } = commandLine({
  name: NAME,
  usage: USAGE,
  options: { name: { type: "string" }, "dry-run": { type: "boolean" }, "admin-url": { type: "string" } },
});

const MIGRATIONS_DIR = join(REPO_ROOT, "supabase", "migrations");

function timestamp(): string {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const latest = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{14}_/.test(f)).sort().at(-1)?.slice(0, 14) ?? "";
  if (stamp <= latest) throw new Error(`the latest migration (${latest}) is dated after now (${stamp}): fix the clock or that file's name`);
  return stamp;
}

await runCli(NAME, USAGE, async () => {
  const name = values.name;
  if (!name || !/^[a-z0-9_]+$/.test(name)) throw new UsageError(`--name needs lower case letters, digits and _ (got ${JSON.stringify(name ?? "")})`);
  const admin = localAdminUrl(values["admin-url"]);
  return withScratchDatabases(admin, ["diff_migrations", "diff_sources", "diff_check"], async ([fromMigrations = "", fromSources = "", check = ""]) => {
    console.log(`building the migrations and the sources on ${new URL(admin).host}`);
    await buildFromMigrations(fromMigrations);
    await buildFromSources(fromSources);
    const changes = await compareBuilds(fromMigrations, fromSources);
    if (changes.length === 0) {
      console.log("the migrations already build what supabase/schemas says: nothing to write");
      return 0;
    }
    const a = postgres(fromMigrations, { max: 1, onnotice: () => {} });
    const b = postgres(fromSources, { max: 1, onnotice: () => {} });
    const generated = await migrationFromDiff(a, b, changes).finally(() => Promise.all([a.end(), b.end()]));
    const file = join(MIGRATIONS_DIR, `${timestamp()}_${name}.sql`);
    const text = [
      `-- ${name.replaceAll("_", " ")}: produced by npm run db:diff from supabase/schemas (${changes.length} catalog differences).`,
      ...generated.byHand.map((h) => `-- BY HAND: ${h}`),
      "",
      "-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it",
      "set lock_timeout = '500ms';",
      "",
      generated.sql,
      "",
    ].join("\n");
    if (values["dry-run"]) {
      console.log(text);
      return generated.byHand.length ? 1 : 0;
    }
    writeFileSync(file, text);
    console.log(`wrote ${relative(REPO_ROOT, file)}`);
    // the check: the migrations with the new file build what the sources build
    try {
      await buildFromMigrations(check);
    } catch (e) {
      rmSync(file);
      throw new Error(`the generated migration does not apply, so it was removed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const left = await compareBuilds(check, fromSources);
    if (left.length === 0 && generated.byHand.length === 0) {
      console.log("checked: the migrations with it build what supabase/schemas says");
      return 0;
    }
    console.error(`${relative(REPO_ROOT, file)} leaves ${left.length} difference(s); write them by hand, then run npm run db:diff again (it says "nothing to write" when done):`);
    console.error(describeChanges(left));
    return 1;
  });
});
