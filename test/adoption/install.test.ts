// Installing the bundle into a user's existing Supabase repo (scripts/lib/install/), with the real
// Supabase CLI against fresh databases on the test cluster.
// Covers:
//  - a sample repo with two years of its own history (an app schema dated 2024, a change dated
//    2026-11 that is already on its database), its own functions (_shared/cors.ts, deno.json,
//    hello) and its own commented config.toml: after the install, `supabase db push --dry-run`
//    lists exactly the bundle's migrations (no --include-all), the push applies them, the repo's
//    own files are byte for byte what they were, config.toml only grew at its end, the functions
//    resolve through their own import maps and type-check; a second install and push do nothing;
//  - an upgrade from an older release (one migration fewer, other function code, a file this
//    release dropped): only the new migration is copied and pushed, the function code is replaced,
//    the dropped file removed;
//  - the refusals, each leaving the repo untouched: a [functions.<name>] or a function folder of
//    theirs with our name, an installed function file they edited, a released migration that
//    changed (unless its release was withdrawn); the command line: --help, a bad flag, a path that
//    is not a Supabase project, a relative path through `npm run install-bundle`;
//  - the dates: after the repo's latest migration, before now, and after a latest dated in the future.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { discoverFunctions } from "../../scripts/lib/functions-server.ts";
import { type Bundle, loadBundle } from "../../scripts/lib/install/bundle.ts";
import { runInstaller } from "../../scripts/lib/install/cli.ts";
import { mergeFunctionSections } from "../../scripts/lib/install/config-toml.ts";
import { planInstall } from "../../scripts/lib/install/install.ts";
import { InstallRefusal } from "../../scripts/lib/install/refusal.ts";
import { allocateVersions } from "../../scripts/lib/install/timestamps.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { pushMigrations } from "../../scripts/lib/push-migrations.ts";
import { migrationFiles } from "../../scripts/lib/released-migrations.ts";
import { DEMO_APP_MIGRATIONS_DIR, demoAppMigrations } from "../../scripts/lib/demo-app.ts";
import { connect, dropDatabase, emptyDatabase } from "../helpers/db.ts";
import { tempDir } from "../helpers/processes.ts";

const bundle = loadBundle();
const BIN = join(REPO_ROOT, "bin", "supabase-partitioning.mjs");
// The demo app's migrations (a customer's project: tables, its own policies, a later report
// migration) stand in for the sample repo's own history, and one more of its own comes last.
const THEIR_APP = demoAppMigrations();
const THEIR_MIGRATIONS = [...THEIR_APP, "20261130093000_program_archive.sql"];
const THEIR_LATEST_VERSION = "20261130093000";

const THEIR_CONFIG = `# A project set up with \`supabase init\` two years ago.
project_id = "acme-field-app"

[api]
enabled = true
port = 54321   # the local API
schemas = ["public", "graphql_public"]

[db]
port = 54322
major_version = 15

# Their one function: public, with their own import map.
[functions.hello]
verify_jwt = false
import_map = "./functions/deno.json"
`;

/** A user's repo as it was before they added the bundle. */
function sampleRepo(): string {
  const repo = tempDir("their-app-");
  const put = (path: string, content: string | Buffer) => {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), content);
  };
  put("supabase/config.toml", THEIR_CONFIG);
  for (const f of THEIR_APP) put(`supabase/migrations/${f}`, readFileSync(join(DEMO_APP_MIGRATIONS_DIR, f)));
  put(`supabase/migrations/${THEIR_MIGRATIONS.at(-1)!}`, `-- programs can be archived; the app lists the active ones
alter table public.pilot_programs add column archived_at timestamptz;
create view public.active_programs with (security_invoker = on) as
  select program_id, name from public.pilot_programs where archived_at is null;
`);
  put("supabase/functions/deno.json", `{ "imports": { "zod": "npm:zod@3.23.8" } }\n`);
  put("supabase/functions/_shared/cors.ts", `export const corsHeaders = { "Access-Control-Allow-Origin": "https://acme.example" };\n`);
  put("supabase/functions/hello/index.ts", `import { corsHeaders } from "../_shared/cors.ts";\n\nDeno.serve(() => new Response("hello", { headers: corsHeaders }));\n`);
  put("package.json", `{ "name": "acme-field-app", "private": true }\n`);
  return repo;
}

/** Every file under dir, by path, with its SHA-256. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const abs = join(e.parentPath, e.name);
    out.set(relative(dir, abs), createHash("sha256").update(readFileSync(abs)).digest("hex"));
  }
  return out;
}

function changedPaths(before: Map<string, string>, after: Map<string, string>): string[] {
  const paths = new Set([...before.keys(), ...after.keys()]);
  return [...paths].filter((p) => before.get(p) !== after.get(p)).sort();
}

interface Run { status: number | null; stdout: string; stderr: string }

/** A file of the bundle with other content (as an older release had it). */
function withContent<T extends { content: Buffer; sha256: string }>(file: T, content: string | Buffer): T {
  const buf = Buffer.from(content);
  return { ...file, content: buf, sha256: createHash("sha256").update(buf).digest("hex") };
}

/** The package's bin, as `npx` runs it. */
const cli = (...args: string[]): Promise<Run> => runProgram(process.execPath, [BIN, ...args]);

/** The installer with another bundle (an older release), in process. */
function installWith(b: Bundle, repo: string, now?: Date): Run {
  const out: string[] = [];
  const err: string[] = [];
  const status = runInstaller(["install", repo], { out: (l) => out.push(l), err: (l) => err.push(l) }, { bundle: b, now });
  return { status, stdout: out.join("\n"), stderr: err.join("\n") };
}

const ourMigrations = (repo: string) =>
  readdirSync(join(repo, "supabase", "migrations")).filter((f) => /^\d{14}_partitioning_/.test(f)).sort();

const databases: string[] = [];
const repos: string[] = [];

/** An empty database (template1 carries the hosted bootstrap only) with the repo's own history pushed. */
async function databaseWithTheirHistory(repo: string, label: string): Promise<string> {
  const name = `t_install_${label}_${process.pid}`;
  const { url } = await emptyDatabase(name);
  databases.push(name);
  expect((await pushMigrations(url, { workdir: repo })).applied).toEqual(THEIR_MIGRATIONS);
  return url;
}

afterAll(async () => {
  for (const db of databases) await dropDatabase(db);
  for (const r of repos) rmSync(r, { recursive: true, force: true });
});

describe("installing into an existing repo, pushed with the real CLI", () => {
  let repo: string;
  let url: string;
  beforeAll(async () => {
    repo = sampleRepo();
    repos.push(repo);
    url = await databaseWithTheirHistory(repo, "first");
  });

  it("copies exactly the bundle's migrations after the repo's latest, which db push lists and applies", async () => {
    const before = snapshot(repo);
    const dry = await cli("install", "--dry-run", repo);
    expect(dry.status, dry.stderr).toBe(0);
    expect(snapshot(repo)).toEqual(before);
    expect(dry.stdout.match(/^ {2}\+ supabase\/migrations\//gm)?.length).toBe(bundle.migrations.length);

    const run = await cli("install", repo);
    expect(run.status, run.stderr).toBe(0);
    const installed = ourMigrations(repo);
    expect(installed.length).toBe(bundle.migrations.length);
    // in the bundle's order, under recognisable names, byte for byte, all after their latest
    expect(installed.map((f) => f.slice(15))).toEqual(bundle.migrations.map((m) => `partitioning_${m.name}.sql`));
    for (const [i, f] of installed.entries()) {
      expect(f.slice(0, 14) > THEIR_LATEST_VERSION, f).toBe(true);
      expect(readFileSync(join(repo, "supabase", "migrations", f)).equals(bundle.migrations[i]!.content), f).toBe(true);
    }
    expect(installed.at(-1)!.slice(0, 14) <= new Date().toISOString().replace(/\D/g, "").slice(0, 14)).toBe(true);

    // their files are untouched; config.toml only grew at its end
    const after = snapshot(repo);
    for (const [path, sha] of before) if (path !== join("supabase", "config.toml")) expect(after.get(path), path).toBe(sha);
    const config = readFileSync(join(repo, "supabase", "config.toml"), "utf8");
    expect(config.slice(0, THEIR_CONFIG.length)).toBe(THEIR_CONFIG);
    const functions = (parseToml(config) as { functions: Record<string, unknown> }).functions;
    expect(functions.hello).toEqual({ verify_jwt: false, import_map: "./functions/deno.json" });
    for (const fn of bundle.functions) expect(functions[fn.name]).toEqual(fn.settings);

    // the record
    const record = JSON.parse(readFileSync(join(repo, "supabase", "partitioning-bundle.json"), "utf8"));
    expect(record).toMatchObject({ bundle: bundle.name, version: bundle.version, functions: bundle.functions.map((f) => f.name) });
    expect(record.migrations).toEqual(bundle.migrations.map((m, i) => ({ source: m.source, installed: installed[i], sha256: m.sha256, release: bundle.version })));

    // the CLI sees exactly our files as pending, in order, without --include-all, and applies them
    const dryPush = await pushMigrations(url, { workdir: repo, dryRun: true });
    expect(dryPush.wouldApply).toEqual(installed);
    expect(dryPush.output).not.toMatch(/include-all/);
    expect((await pushMigrations(url, { workdir: repo })).applied).toEqual(installed);
    const sql = connect(url);
    try {
      const rows = await sql<{ v: string }[]>`select version || '_' || name || '.sql' as v from supabase_migrations.schema_migrations order by version`;
      expect(rows.map((r) => r.v)).toEqual([...THEIR_MIGRATIONS, ...installed]);
      const [col] = await sql<{ n: number }[]>`select count(*)::int as n from information_schema.columns where table_name = 'pilot_programs' and column_name = 'archived_at'`;
      expect(col?.n).toBe(1);
      const [fn] = await sql<{ n: number }[]>`select count(*)::int as n from pg_proc where proname = 'get_observations_optimized'`;
      expect(fn?.n).toBeGreaterThan(0);
    } finally {
      await sql.end();
    }
  });

  it("installs functions that resolve through their own import map and type-check, beside the repo's", async () => {
    const functionsDir = join(repo, "supabase", "functions");
    const specs = await discoverFunctions(functionsDir, join(repo, "supabase", "config.toml"));
    const ourMap = join(functionsDir, "_shared", "partitioning", "deno.json");
    expect(specs.map((s) => s.name).sort()).toEqual([...bundle.functions.map((f) => f.name), "hello"].sort());
    for (const s of specs) {
      expect(s.resolution, s.name).toEqual({ kind: "config", path: s.name === "hello" ? join(functionsDir, "deno.json") : ourMap });
    }
    const check = await runProgram(join(REPO_ROOT, "node_modules", ".bin", "deno"), [
      "check", "--quiet", "--config", ourMap, "--node-modules-dir=none",
      ...bundle.functions.map((f) => join(functionsDir, f.name, "index.ts")),
    ], { cwd: repo, env: { ...process.env, DENO_TLS_CA_STORE: "mozilla,system" } });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });

  it("a second install and push change nothing", async () => {
    const before = snapshot(repo);
    const again = await cli("install", repo);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toBe(`up to date: ${bundle.name} ${bundle.version} is installed in ${repo} `
      + `(${bundle.migrations.length} migrations, ${bundle.functions.length} functions); nothing to do\n`);
    expect(snapshot(repo)).toEqual(before);
    const push = await pushMigrations(url, { workdir: repo });
    expect(push.applied).toEqual([]);
    expect(push.output).toMatch(/up to date/i);
  });
});

describe("upgrading a repo that installed an older release", () => {
  it("copies and pushes only the new migration, and replaces the function code", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    const url = await databaseWithTheirHistory(repo, "upgrade");
    const health = "functions/health/index.ts";
    const dropped = "functions/_shared/partitioning/retired.ts"; // a file 0.1.9 had and this release has not
    const older: Bundle = {
      ...bundle,
      version: "0.1.9",
      migrations: bundle.migrations.slice(0, -1),
      files: [
        ...bundle.files.map((f) => (f.path === health ? withContent(f, Buffer.concat([f.content, Buffer.from("// 0.1.9\n")])) : f)),
        withContent({ path: dropped, content: Buffer.alloc(0), sha256: "" }, "export const retired = true;\n"),
      ],
    };
    const first = installWith(older, repo);
    expect(first.status, first.stderr).toBe(0);
    const olderInstalled = ourMigrations(repo);
    expect(olderInstalled.length).toBe(bundle.migrations.length - 1);
    expect((await pushMigrations(url, { workdir: repo })).applied).toEqual(olderInstalled);

    const before = snapshot(repo);
    const up = await cli("install", repo);
    expect(up.status, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/upgrade from 0\.1\.9/);
    const now = ourMigrations(repo);
    const added = now.filter((f) => !olderInstalled.includes(f));
    const last = bundle.migrations.at(-1)!;
    expect(added).toEqual([expect.stringMatching(new RegExp(`^\\d{14}_partitioning_${last.name}\\.sql$`))]);
    expect(added[0]! > olderInstalled.at(-1)!).toBe(true);
    expect(changedPaths(before, snapshot(repo))).toEqual([
      join("supabase", ...dropped.split("/")),
      join("supabase", "functions", "health", "index.ts"),
      join("supabase", "migrations", added[0]!),
      join("supabase", "partitioning-bundle.json"),
    ].sort());
    expect(readFileSync(join(repo, "supabase", ...health.split("/"))).equals(bundle.files.find((f) => f.path === health)!.content)).toBe(true);
    const record = JSON.parse(readFileSync(join(repo, "supabase", "partitioning-bundle.json"), "utf8"));
    expect(record.version).toBe(bundle.version);
    expect(record.migrations.map((m: { release: string }) => m.release)).toEqual([...olderInstalled.map(() => "0.1.9"), bundle.version]);

    expect((await pushMigrations(url, { workdir: repo, dryRun: true })).wouldApply).toEqual(added);
    expect((await pushMigrations(url, { workdir: repo })).applied).toEqual(added);
  });
});

describe("refusals: the repo stays as it was", () => {
  function refused(repo: string, run: Run, pattern: RegExp, before: Map<string, string>): void {
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(pattern);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(snapshot(repo)).toEqual(before);
  }

  it("when their config.toml defines one of our functions differently", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    writeFileSync(join(repo, "supabase", "config.toml"), `${THEIR_CONFIG}\n[functions.health]\nverify_jwt = false\n`);
    refused(repo, await cli("install", repo), /already has \[functions\.health\] \(verify_jwt = false\), which is not the bundle's/, snapshot(repo));
  });

  it("when they have a function folder of our name", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    mkdirSync(join(repo, "supabase", "functions", "health"));
    writeFileSync(join(repo, "supabase", "functions", "health", "index.ts"), "Deno.serve(() => new Response('ok'));\n");
    refused(repo, await cli("install", repo), /supabase\/functions\/health\/ already exists and is not the bundle's/, snapshot(repo));
  });

  it("when they edited an installed function file, and the release would replace it", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    const older: Bundle = { ...bundle, version: "0.1.9", files: bundle.files.map((f) => (f.path === "functions/health/index.ts" ? withContent(f, "// old\n") : f)) };
    expect(installWith(older, repo).status).toBe(0);
    writeFileSync(join(repo, "supabase", "functions", "health", "index.ts"), "// old, and theirs now\n");
    refused(repo, await cli("install", repo), /supabase\/functions\/health\/index\.ts changed since it was installed/, snapshot(repo));
  });

  it("when a released migration changed, naming it; not when its release was withdrawn", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    const changed = bundle.migrations[3]!;
    const older: Bundle = {
      ...bundle,
      version: "0.1.9",
      migrations: bundle.migrations.map((m) => (m === changed ? withContent(m, "select 1;\n") : m)),
    };
    expect(installWith(older, repo).status).toBe(0);
    const before = snapshot(repo);
    refused(repo, await cli("install", repo), new RegExp(`migration ${changed.source} of release 0\\.1\\.9 \\(installed as supabase/migrations/\\d{14}_partitioning_${changed.name}\\.sql\\) differs in this bundle`), before);

    const withdrawn: Bundle = { ...bundle, withdrawnReleases: new Map([["0.1.9", "never installed"]]) };
    const recut = installWith(withdrawn, repo);
    expect(recut.status, recut.stderr).toBe(0);
    expect(recut.stdout).toMatch(/re-cut by .* \(release 0\.1\.9 was withdrawn\)/);
    const file = ourMigrations(repo).find((f) => f.endsWith(`_partitioning_${changed.name}.sql`))!;
    expect(changedPaths(before, snapshot(repo))).toEqual([join("supabase", "migrations", file), join("supabase", "partitioning-bundle.json")].sort());
    expect(readFileSync(join(repo, "supabase", "migrations", file)).equals(changed.content)).toBe(true);
  });

  it("when the record is newer than the bundle", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    expect(installWith({ ...bundle, version: "9.0.0" }, repo).status).toBe(0);
    refused(repo, await cli("install", repo), /records release 9\.0\.0, newer than this bundle/, snapshot(repo));
  });
});

describe("the command line", () => {
  it("--help prints the usage and exits 0", async () => {
    for (const args of [["--help"], ["install", "-h"]]) {
      const r = await cli(...args);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^usage: supabase-partitioning install \[--dry-run\] <repo>/);
    }
  });

  it("a bad flag, a missing or wrong path: one line saying what, the usage, exit 2", async () => {
    const notSupabase = tempDir("not-supabase-");
    const noConfig = tempDir("no-config-");
    mkdirSync(join(noConfig, "supabase"));
    repos.push(notSupabase, noConfig);
    const cases: [string[], RegExp][] = [
      [["install", "--frobnicate", notSupabase], /^supabase-partitioning: unknown option --frobnicate$/],
      [["install"], /^supabase-partitioning: no <repo> given/],
      [["uninstall", notSupabase], /^supabase-partitioning: unknown command uninstall/],
      [["install", join(notSupabase, "missing")], /^supabase-partitioning: .*missing does not exist$/],
      [["install", notSupabase], /^supabase-partitioning: .* is not a Supabase project: it has no supabase\/ directory/],
      [["install", noConfig], /^supabase-partitioning: .* is not a Supabase project: it has no supabase\/config\.toml/],
    ];
    for (const [args, line] of cases) {
      const r = await cli(...args);
      expect(r.status, args.join(" ")).toBe(2);
      const lines = r.stderr.split("\n");
      expect(lines[0]).toMatch(line);
      expect(lines[1]).toBe("");
      expect(lines[2]).toMatch(/^usage: /);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stdout).toBe("");
    }
  });

  it("npm run install-bundle takes a path relative to where npm was run", async () => {
    const repo = sampleRepo();
    repos.push(repo);
    const before = snapshot(repo);
    const r = await runProgram("npm", ["--prefix", REPO_ROOT, "run", "--silent", "install-bundle", "--", "--dry-run", basename(repo)], {
      cwd: dirname(repo),
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`-> ${repo} (first install): dry run, nothing is written`);
    expect(snapshot(repo)).toEqual(before);
  });
});

describe("migration dates", () => {
  const now = new Date("2026-12-07T10:00:00Z");

  it("end one second before now, after a latest in the past, so `migration new` sorts after them", () => {
    expect(allocateVersions(3, "20261115093000", now)).toEqual({ versions: ["20261207095957", "20261207095958", "20261207095959"] });
    expect(allocateVersions(2, undefined, now)).toEqual({ versions: ["20261207095958", "20261207095959"] });
    expect(allocateVersions(2, "20261207095959", now)).toEqual({ versions: ["20261207100000", "20261207100001"], sortsAfterNowUntil: new Date("2026-12-07T10:00:01Z") });
    // versions that are not timestamps sort as text, as the CLI sorts them
    expect(allocateVersions(1, "0042", now)).toEqual({ versions: ["20261207095959"] });
    expect(allocateVersions(1, "9", now)).toBeUndefined();
  });

  it("follow a latest migration dated in the future, with a warning", () => {
    const repo = sampleRepo();
    repos.push(repo);
    writeFileSync(join(repo, "supabase", "migrations", "20270301000000_planned.sql"), "select 1;\n");
    const plan = planInstall(repo, { now });
    const created = plan.changes.filter((c) => c.kind === "migration").map((c) => basename(c.path));
    expect(created[0]).toBe("20270301000001_partitioning_company_context.sql");
    expect(created.at(-1)!.slice(0, 14)).toBe(`202703010000${String(bundle.migrations.length).padStart(2, "0")}`);
    expect(plan.warnings.join("\n")).toMatch(/follow your latest migration, 20270301000000_planned\.sql, so they are dated up to 202703010000\d\d, after now: until 2027-03-01T00:00:\d\dZ, `supabase migration new` names files that sort before them/);
  });
});

describe("config.toml merge", () => {
  const fns = bundle.functions;

  it("appends to a file without a final newline, and keeps CRLF line ends", () => {
    const crlf = "# theirs\r\n[db]\r\nport = 54322";
    const m = mergeFunctionSections(crlf, fns, {});
    expect(m.text!.slice(0, crlf.length)).toBe(crlf);
    expect(m.text!.slice(crlf.length)).not.toMatch(/[^\r]\n/);
    expect(m.added).toEqual(fns.map((f) => f.name));
  });

  it("updates its own section of an earlier install in place, and refuses a layout it cannot append to", () => {
    const old = { ...fns[0]!, settings: { ...fns[0]!.settings, verify_jwt: false } };
    const first = mergeFunctionSections("[db]\nport = 1\n", [old], {});
    const text = `${first.text!}\n[storage]\nenabled = true\n`;
    const second = mergeFunctionSections(text, [fns[0]!], first.sections);
    expect(second.updated).toEqual([fns[0]!.name]);
    expect(second.text!.endsWith("[storage]\nenabled = true\n")).toBe(true);
    expect(second.text!.indexOf(`[functions.${fns[0]!.name}]`)).toBe(text.indexOf(`[functions.${fns[0]!.name}]`));
    expect(() => mergeFunctionSections(`functions = { hello = { verify_jwt = false } }\n`, fns, {})).toThrow(InstallRefusal);
  });
});

describe("the bundle", () => {
  it("is every migration of supabase/migrations but the demo app's schema, and functions under names of their own", () => {
    expect(bundle.migrations.map((m) => m.source)).toEqual(migrationFiles());
    const ours = bundle.functions.map((fn) => `functions/${fn.name}/`);
    for (const f of bundle.files) expect(f.path.startsWith("functions/_shared/partitioning/") || ours.some((dir) => f.path.startsWith(dir)), f.path).toBe(true);
  });
});
