// Installing the bundle into a user's Supabase repo: planInstall works out every file to create,
// update or delete (or refuses, changing nothing), applyInstall writes them. A second run of the
// same release plans nothing; a newer release's run plans only what it adds or changes.
//
// - Migrations are copied under new names, `<ts>_partitioning_<name>.sql`, in the bundle's order,
//   dated after the repo's latest migration (timestamps.ts), so `supabase db push` applies exactly
//   them without --include-all. Once installed, a migration is history: never copied again,
//   renamed or rewritten. A released migration whose content differs in a newer bundle is a refusal
//   that names it, unless the release it came with was withdrawn (supabase/released-migrations.json),
//   which means no project ever pushed it: then the installed file takes the re-cut content.
// - Functions are code, not history: every install writes the bundle's version of each file,
//   except over a file that is not ours or that changed since we wrote it (a refusal).
// - config.toml gets our [functions.<name>] sections appended (config-toml.ts).
// - The record (record.ts) says what was installed; it is written last.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import {
  type Bundle, INSTALL_RECORD_FILE, INSTALLED_MIGRATION_PREFIX, INSTALLED_SHARED_DIR, loadBundle, sha256,
} from "./bundle.ts";
import { mergeFunctionSections } from "./config-toml.ts";
import { type InstalledMigration, type InstallRecord, readInstallRecord, serializeInstallRecord } from "./record.ts";
import { InstallRefusal } from "./refusal.ts";
import { allocateVersions } from "./timestamps.ts";

export type ChangeKind = "migration" | "function" | "config" | "record";

export interface FileChange {
  kind: ChangeKind;
  action: "create" | "update" | "delete";
  /** relative to the repo, with `/` separators */
  path: string;
  /** what is written (create, update) */
  content?: Buffer;
  /** why, for the listing: the migration's name in the bundle, a re-cut */
  note?: string;
}

export interface InstallPlan {
  repo: string;
  bundle: { name: string; version: string };
  /** the release an earlier install left, if any */
  previousVersion?: string;
  /** the repo's latest migration file before this install */
  latestMigration?: string;
  /** in the order applyInstall writes them: migrations, functions, config.toml, the record */
  changes: FileChange[];
  /** the migrations this install adds to the record, in order (installed names) */
  newMigrations: string[];
  /** those of them already in supabase/migrations with the same content (an install that stopped half way) */
  adoptedMigrations: string[];
  warnings: string[];
  record: InstallRecord;
}

/** What keeps `repo` from being a Supabase project directory, or undefined when it is one. */
export function supabaseProjectProblem(repo: string): string | undefined {
  if (!existsSync(repo)) return `${repo} does not exist`;
  if (!statSync(repo).isDirectory()) return `${repo} is not a directory`;
  const supabaseDir = join(repo, "supabase");
  if (!existsSync(supabaseDir) || !statSync(supabaseDir).isDirectory()) {
    return `${repo} is not a Supabase project: it has no supabase/ directory (\`supabase init\` makes one)`;
  }
  if (!existsSync(join(supabaseDir, "config.toml"))) {
    return `${repo} is not a Supabase project: it has no supabase/config.toml (\`supabase init\` makes one)`;
  }
  return undefined;
}

/** -1, 0, 1 as a is older than, the same as, newer than b (x.y.z; other parts compare as text). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const d = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x.localeCompare(y);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

// The names `supabase db push` reads as migrations (the CLI's own pattern).
const MIGRATION_FILE = /^(\d+)_(.*)\.sql$/;

function fileSha(path: string): string | undefined {
  return existsSync(path) ? sha256(readFileSync(path)) : undefined;
}

function filesUnder(dir: string, base: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => posix.join(base, join(e.parentPath, e.name).slice(dir.length + 1).split(/[\\/]/).join("/")));
}

export interface InstallOptions {
  /** the bundle to install (default: this checkout's) */
  bundle?: Bundle;
  /** the clock migration versions are taken from (default: now) */
  now?: Date;
}

export function planInstall(repo: string, options: InstallOptions = {}): InstallPlan {
  const problem = supabaseProjectProblem(repo);
  if (problem) throw new InstallRefusal(problem);
  const bundle = options.bundle ?? loadBundle();
  const now = options.now ?? new Date();
  const supabaseDir = join(repo, "supabase");
  const inRepo = (p: string) => join(repo, ...p.split("/"));
  const recordPath = `supabase/${INSTALL_RECORD_FILE}`;
  const record = readInstallRecord(inRepo(recordPath), recordPath);

  if (record && record.bundle !== bundle.name) {
    throw new InstallRefusal(`${recordPath} records ${record.bundle}, not ${bundle.name}: this is another bundle's record`);
  }
  if (record && compareVersions(record.version, bundle.version) > 0) {
    throw new InstallRefusal(`${recordPath} records release ${record.version}, newer than this bundle (${bundle.version}): install ${record.version} or later`);
  }

  const changes: FileChange[] = [];
  const warnings: string[] = [];

  // ---- Migrations ---------------------------------------------------------------------------
  const migrationsDir = join(supabaseDir, "migrations");
  const repoMigrations = existsSync(migrationsDir) ? readdirSync(migrationsDir).filter((f) => MIGRATION_FILE.test(f)).sort() : [];
  const versionOf = (f: string) => MIGRATION_FILE.exec(f)?.[1] ?? "";
  const latestMigration = [...repoMigrations].sort((a, b) => versionOf(a).localeCompare(versionOf(b)) || a.localeCompare(b)).at(-1);
  const bySource = new Map(bundle.migrations.map((m) => [m.source, m]));
  const withdrawn = (release: string) => bundle.withdrawnReleases.has(release);

  const kept: InstalledMigration[] = [];
  for (const r of record?.migrations ?? []) {
    const path = `supabase/migrations/${r.installed}`;
    const onDisk = fileSha(inRepo(path));
    const current = bySource.get(r.source);
    if (onDisk === undefined) {
      throw new InstallRefusal(`${path} (the bundle's ${r.source}, installed with ${r.release}) is missing: restore it from version control (a database that applied it expects the file)`);
    }
    if (current === undefined) {
      if (!withdrawn(r.release)) {
        throw new InstallRefusal(`migration ${r.source} of release ${r.release} (installed as ${path}) is not in this bundle (${bundle.version}): released migrations stay, so this bundle cannot upgrade the repo`);
      }
      warnings.push(`${path}: release ${r.release} was withdrawn and this bundle no longer has ${r.source}; the file stays`);
      kept.push(r);
    } else if (current.sha256 !== r.sha256) {
      if (!withdrawn(r.release)) {
        throw new InstallRefusal(
          `migration ${r.source} of release ${r.release} (installed as ${path}) differs in this bundle (${bundle.version}): `
          + "a released migration never changes, so this bundle cannot upgrade the repo",
        );
      }
      if (onDisk !== r.sha256) {
        throw new InstallRefusal(`${path} changed since it was installed, and release ${r.release}, which re-cuts it, was withdrawn: restore the installed file from version control and run the installer again`);
      }
      changes.push({ kind: "migration", action: "update", path, content: current.content, note: `${r.source}, re-cut by ${bundle.version} (release ${r.release} was withdrawn)` });
      kept.push({ ...r, sha256: current.sha256, release: bundle.version });
    } else {
      if (onDisk !== r.sha256) warnings.push(`${path} differs from the bundle's ${r.source}, as installed: the installer leaves it as it is`);
      kept.push(r);
    }
  }

  const recorded = new Set(kept.map((m) => m.source));
  const adds = bundle.migrations.filter((m) => !recorded.has(m.source));
  const added: InstalledMigration[] = [];
  // A file of ours already there with the same content (an install that stopped half way) is adopted.
  const adoptable = new Map<string, string>();
  const recordedFiles = new Set(kept.map((m) => m.installed));
  for (const f of repoMigrations) {
    if (recordedFiles.has(f) || !/^\d{14}_/.test(f) || !f.slice(15).startsWith(INSTALLED_MIGRATION_PREFIX)) continue;
    adoptable.set(`${f.slice(15 + INSTALLED_MIGRATION_PREFIX.length)}:${fileSha(join(migrationsDir, f))}`, f);
  }
  const toCopy = adds.filter((m) => !adoptable.has(`${m.name}.sql:${m.sha256}`));
  const allocated = allocateVersions(toCopy.length, latestMigration === undefined ? undefined : versionOf(latestMigration), now);
  if (allocated === undefined) {
    throw new InstallRefusal(`cannot date the bundle's migrations after your latest migration, ${latestMigration}: its version is not a 14-digit timestamp (YYYYMMDDHHMMSS) that later timestamps sort after`);
  }
  if (allocated.sortsAfterNowUntil && toCopy.length > 0) {
    warnings.push(
      `the bundle's migrations follow your latest migration, ${latestMigration}, so they are dated up to `
      + `${allocated.versions.at(-1)}, after now: until ${allocated.sortsAfterNowUntil.toISOString().replace(".000Z", "Z")}, \`supabase migration new\` `
      + "names files that sort before them, which `supabase db push` refuses once they are applied: give such a file a later timestamp",
    );
  }
  const newMigrations: string[] = [];
  const adoptedMigrations: string[] = [];
  let next = 0;
  for (const m of adds) {
    const adopted = adoptable.get(`${m.name}.sql:${m.sha256}`);
    const installed = adopted ?? `${allocated.versions[next++]}_${INSTALLED_MIGRATION_PREFIX}${m.name}.sql`;
    if (adopted) adoptedMigrations.push(installed);
    else changes.push({ kind: "migration", action: "create", path: `supabase/migrations/${installed}`, content: m.content, note: m.source });
    added.push({ source: m.source, installed, sha256: m.sha256, release: bundle.version });
    newMigrations.push(installed);
  }

  // ---- Functions: code, shared code, import map ---------------------------------------------
  const previousFiles = record?.files ?? {};
  const ownedDirs = [...bundle.functions.map((f) => `functions/${f.name}`), INSTALLED_SHARED_DIR];
  for (const dir of ownedDirs) {
    const ours = Object.keys(previousFiles).some((p) => p.startsWith(`${dir}/`));
    if (ours) continue;
    const bundled = new Map(bundle.files.filter((f) => f.path.startsWith(`${dir}/`)).map((f) => [f.path, f.sha256]));
    const foreign = filesUnder(join(supabaseDir, ...dir.split("/")), dir)
      .filter((p) => bundled.get(p) !== fileSha(join(supabaseDir, ...p.split("/"))));
    if (foreign.length > 0) {
      const what = dir === INSTALLED_SHARED_DIR ? "its functions' shared code and import map" : `its function ${dir.slice("functions/".length)}`;
      throw new InstallRefusal(`supabase/${dir}/ already exists and is not the bundle's (${foreign.map((p) => `supabase/${p}`).join(", ")}): the bundle installs ${what} there; rename yours and run the installer again`);
    }
  }
  const files: Record<string, string> = {};
  for (const f of bundle.files) {
    const path = `supabase/${f.path}`;
    const onDisk = fileSha(inRepo(path));
    const previous = previousFiles[f.path];
    files[f.path] = f.sha256;
    if (onDisk === f.sha256) continue;
    if (onDisk === undefined) changes.push({ kind: "function", action: "create", path, content: f.content });
    else if (previous !== undefined && onDisk === previous) changes.push({ kind: "function", action: "update", path, content: f.content });
    else if (previous !== undefined) {
      throw new InstallRefusal(`${path} changed since it was installed: every install writes the bundle's function code, so move your change elsewhere (or delete the file) and run the installer again`);
    } else {
      throw new InstallRefusal(`${path} exists and is not the bundle's: rename yours and run the installer again`);
    }
  }
  for (const [p, previous] of Object.entries(previousFiles)) {
    if (files[p] !== undefined) continue;
    const path = `supabase/${p}`;
    const onDisk = fileSha(inRepo(path));
    if (onDisk === undefined) continue;
    if (onDisk !== previous) {
      throw new InstallRefusal(`${path} was installed by ${record?.version}, which this release no longer has, and it changed since: move your change elsewhere (or delete the file) and run the installer again`);
    }
    changes.push({ kind: "function", action: "delete", path });
  }

  // ---- config.toml ---------------------------------------------------------------------------
  const configPath = "supabase/config.toml";
  const merge = mergeFunctionSections(readFileSync(inRepo(configPath), "utf8"), bundle.functions, record?.config ?? {}, configPath);
  if (merge.text !== undefined) {
    const what = [
      ...merge.added.map((n) => `+ [functions.${n}]`), ...merge.updated.map((n) => `~ [functions.${n}]`), ...merge.removed.map((n) => `- [functions.${n}]`),
    ].join(", ");
    changes.push({ kind: "config", action: "update", path: configPath, content: Buffer.from(merge.text), note: what });
  }

  // ---- The record ------------------------------------------------------------------------------
  const newRecord: InstallRecord = {
    bundle: bundle.name,
    version: bundle.version,
    migrations: [...kept, ...added],
    functions: bundle.functions.map((f) => f.name),
    files,
    config: merge.sections,
  };
  const recordText = serializeInstallRecord(newRecord);
  const recordOnDisk = existsSync(inRepo(recordPath)) ? readFileSync(inRepo(recordPath), "utf8") : undefined;
  if (recordOnDisk !== recordText) {
    changes.push({ kind: "record", action: recordOnDisk === undefined ? "create" : "update", path: recordPath, content: Buffer.from(recordText) });
  }

  return {
    repo,
    bundle: { name: bundle.name, version: bundle.version },
    previousVersion: record?.version,
    latestMigration,
    changes,
    newMigrations,
    adoptedMigrations,
    warnings,
    record: newRecord,
  };
}

/** Writes a plan: migrations, function files, config.toml, and the record last. */
export function applyInstall(plan: InstallPlan): void {
  for (const c of plan.changes) {
    const abs = join(plan.repo, ...c.path.split("/"));
    if (c.action === "delete") {
      rmSync(abs, { force: true });
      // a folder of ours left empty goes too
      for (let dir = dirname(abs); dir.startsWith(join(plan.repo, "supabase", "functions")) && dir !== join(plan.repo, "supabase", "functions"); dir = dirname(dir)) {
        if (readdirSync(dir).length > 0) break;
        rmdirSync(dir);
      }
      continue;
    }
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, c.content ?? Buffer.alloc(0));
  }
}
