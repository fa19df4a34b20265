// supabase/schemas (the current source, one file per concept) and supabase/migrations (what the
// push applies) build the same database, and a change to the sources becomes a migration:
//   - the demo app plus the migrations (the real CLI's push) and the demo app plus the sources are
//     equal in every function's text, view, policy, trigger, grant, comment, column, constraint,
//     index, partition and configuration row (scripts/lib/catalog.ts, definitions);
//   - a changed source is found, fact by fact, and the generated migration (what npm run db:diff
//     writes) turns the migrations' database into the sources' exactly; what a catalog cannot say
//     safely is listed for the author instead;
//   - a reader finds every function in one file of the sources.
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrationFromDiff } from "../../scripts/lib/schema-diff.ts";
import { buildFromMigrations, buildFromSources, compareBuilds, describeChanges, SCHEMAS_DIR, schemaFiles } from "../../scripts/lib/schema-sources.ts";
import { asSuperuser, dropDatabase, emptyDatabase as emptyDb, withDatabase } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";

const created: Array<() => Promise<void>> = [];
/** An empty database (template1: the hosted bootstrap only), or a copy of template. */
async function emptyDatabase(label: string, template?: string): Promise<string> {
  const name = `src_${label}_${randomBytes(3).toString("hex")}`;
  if (!template) {
    const db = await emptyDb(name);
    created.push(db.drop);
    return db.url;
  }
  await asSuperuser((admin) => admin.unsafe(`create database ${name} owner postgres template ${template}`));
  created.push(() => dropDatabase(name));
  return withDatabase(testEnv.dbUrl, name);
}
const dbName = (url: string) => new URL(url).pathname.slice(1);

let fromMigrations = "";
let fromSources = "";
beforeAll(async () => {
  fromMigrations = await emptyDatabase("migrations");
  fromSources = await emptyDatabase("sources");
  await buildFromMigrations(fromMigrations);
  await buildFromSources(fromSources);
});

afterAll(async () => {
  for (const drop of created) await drop();
});

describe("supabase/schemas and supabase/migrations", () => {
  it("build the same database: every definition, grant, comment and configuration row", async () => {
    const changes = await compareBuilds(fromMigrations, fromSources);
    expect(changes, `the sources and the migrations differ (edit supabase/schemas, then npm run db:diff):\n${describeChanges(changes)}`).toEqual([]);
  });

  it("each source file holds one concept, and every function is defined in exactly one of them", () => {
    const files = schemaFiles();
    expect(files.length).toBeGreaterThanOrEqual(20);
    const definedIn = new Map<string, Set<string>>();
    for (const f of files) {
      const text = readFileSync(join(SCHEMAS_DIR, f), "utf8");
      for (const m of text.matchAll(/^create (?:or replace )?(?:function|procedure) ([\w.]+)\(/gim)) {
        const name = (m[1] ?? "").toLowerCase();
        definedIn.set(name, (definedIn.get(name) ?? new Set()).add(f));
      }
    }
    expect(definedIn.size).toBeGreaterThan(150);
    const inSeveral = [...definedIn].filter(([, where]) => where.size > 1).map(([fn, where]) => `${fn}: ${[...where].join(", ")}`);
    expect(inSeveral).toEqual([]);
    for (const concept of ["naming", "lock_budget", "sizing", "key_table", "tree_creation", "read_api", "promotion", "maintenance", "admin", "analytics"]) {
      expect(files.some((f) => f.endsWith(`_${concept}.sql`)), `a source file for ${concept}`).toBe(true);
    }
  });
});

describe("a change to the sources becomes a migration", () => {
  let changedDir = "";
  let changedSources = "";
  beforeAll(async () => {
    changedDir = mkdtempSync(join(tmpdir(), "schemas-"));
    cpSync(SCHEMAS_DIR, changedDir, { recursive: true });
    const naming = readdirSync(changedDir).find((f) => f.endsWith("_naming.sql")) ?? "";
    const path = join(changedDir, naming);
    const text = readFileSync(path, "utf8");
    const changed = text.replace(/else 'YYYY' end\)/, "else 'YYYY' end) -- a changed body");
    expect(changed).not.toBe(text);
    writeFileSync(path, `${changed}
create or replace function partition_mgmt.alias_count()
returns bigint
language sql stable
set search_path = ''
as $$ select count(*) from partition_mgmt.key_aliases $$;
comment on function partition_mgmt.alias_count() is 'How many aliases exist.';
revoke execute on function partition_mgmt.alias_count() from public, anon, authenticated;
grant execute on function partition_mgmt.alias_count() to service_role;
comment on function partition_mgmt.alias_for(uuid) is 'A changed comment.';
grant execute on function partition_mgmt.period_suffix(text, timestamptz) to authenticated;

create table if not exists partition_mgmt.naming_notes (
  id bigint generated always as identity primary key,
  note text not null default 'x' check (length(note) < 100)
);
create index if not exists naming_notes_note_idx on partition_mgmt.naming_notes (note);
alter table partition_mgmt.naming_notes enable row level security;
create policy naming_notes_read on partition_mgmt.naming_notes for select to service_role using (true);
alter table partition_mgmt.key_aliases add column if not exists note text;
comment on column partition_mgmt.key_aliases.note is 'A note.';
`);
    changedSources = await emptyDatabase("changed");
    await buildFromSources(changedSources, changedDir);
  });
  afterAll(() => rmSync(changedDir, { recursive: true, force: true }));

  it("is found, object by object", async () => {
    const objects = new Set((await compareBuilds(fromMigrations, changedSources)).map((c) => c.object));
    for (const o of [
      "function partition_mgmt.period_suffix(p_granularity text, p_start timestamp with time zone)",
      "function partition_mgmt.alias_count()",
      "function partition_mgmt.alias_for(p_id uuid)",
      "table partition_mgmt.naming_notes",
      "index partition_mgmt.naming_notes_note_idx",
      "policy naming_notes_read on partition_mgmt.naming_notes",
      "table partition_mgmt.key_aliases",
    ]) expect(objects, o).toContain(o);
  });

  it("and the generated migration turns the migrations' database into the sources' exactly", async () => {
    const a = postgres(fromMigrations, { max: 1, onnotice: () => {} });
    const b = postgres(changedSources, { max: 1, onnotice: () => {} });
    let generated;
    try {
      generated = await migrationFromDiff(a, b, await compareBuilds(fromMigrations, changedSources));
    } finally {
      await a.end();
      await b.end();
    }
    expect(generated.byHand).toEqual([]);
    expect(generated.sql).toMatch(/^create table partition_mgmt\.naming_notes \(/m);
    const upgraded = await emptyDatabase("upgraded", dbName(fromMigrations));
    const c = postgres(upgraded, { max: 1, onnotice: () => {} });
    try {
      await c.begin((tx) => tx.unsafe(generated.sql));
    } finally {
      await c.end();
    }
    const left = await compareBuilds(upgraded, changedSources);
    expect(left, describeChanges(left)).toEqual([]);
  });

  it("lists what it cannot write safely: a dropped column, configuration rows", async () => {
    const dir = mkdtempSync(join(tmpdir(), "schemas-"));
    try {
      cpSync(SCHEMAS_DIR, dir, { recursive: true });
      const last = schemaFiles(dir).at(-1) ?? "";
      writeFileSync(join(dir, last), `${readFileSync(join(dir, last), "utf8")}
alter table partition_mgmt.key_aliases drop column alias;
update partition_mgmt.maintenance_settings set step_seconds = 7;
`);
      const other = await emptyDatabase("byhand");
      await buildFromSources(other, dir);
      const a = postgres(fromMigrations, { max: 1, onnotice: () => {} });
      const b = postgres(other, { max: 1, onnotice: () => {} });
      try {
        const { byHand } = await migrationFromDiff(a, b, await compareBuilds(fromMigrations, other));
        expect(byHand).toContain("table partition_mgmt.key_aliases: column alias is gone from the sources (drop it by hand)");
        expect(byHand.some((h) => h.startsWith("table partition_mgmt.maintenance_settings: its rows differ"))).toBe(true);
      } finally {
        await a.end();
        await b.end();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
