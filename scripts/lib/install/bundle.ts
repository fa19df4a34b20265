// What the bundle installs into a user's Supabase repo, read from this checkout (or the published
// package): its migrations, its edge functions with their shared code and import map, the
// [functions.<name>] settings they need in config.toml, and which releases were withdrawn.
//
// Where the files go in the user's repo (paths relative to their supabase/ directory):
//   migrations/<ts>_partitioning_<name>.sql     each of our migrations, renamed (install/timestamps.ts)
//   functions/<name>/…                          each of our functions, under its own name
//   functions/_shared/partitioning/…            our _shared/ code and our import map (deno.json):
//                                               a folder of our own beside their _shared/ files,
//                                               so their cors.ts or deno.json is never touched
// The functions' relative imports are rewritten to those places.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix, relative, sep } from "node:path";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import { REPO_ROOT } from "../cluster.ts";
import { MIGRATIONS_DIR, migrationFiles, migrationSha256, readReleasedMigrations } from "../released-migrations.ts";

/** Every installed migration's name starts with this after its timestamp. */
export const INSTALLED_MIGRATION_PREFIX = "partitioning_";
/** Our _shared/ code and our import map, in the user's repo (relative to supabase/). */
export const INSTALLED_SHARED_DIR = "functions/_shared/partitioning";
/** What the installer installed in a repo (install/record.ts), relative to supabase/. */
export const INSTALL_RECORD_FILE = "partitioning-bundle.json";

export interface BundleMigration {
  /** file name in the bundle's supabase/migrations: 20250102000200_partition_tree.sql */
  source: string;
  /** the name after the timestamp: partition_tree */
  name: string;
  content: Buffer;
  sha256: string;
}

/** A file of the functions' code or their import map, as installed. */
export interface BundleFile {
  /** where it goes, relative to the user's supabase/ directory, with `/` separators */
  path: string;
  content: Buffer;
  sha256: string;
}

/** The settings of one [functions.<name>] section, as the installed function needs them. */
export type FunctionSettings = Record<string, string | boolean>;

export interface BundleFunction {
  name: string;
  settings: FunctionSettings;
}

export interface Bundle {
  /** package.json name and version */
  name: string;
  version: string;
  /** in the order `supabase db push` applies them */
  migrations: BundleMigration[];
  functions: BundleFunction[];
  files: BundleFile[];
  /** release version -> why it was withdrawn (supabase/released-migrations.json) */
  withdrawnReleases: ReadonlyMap<string, string>;
}

export function sha256(content: Buffer | string): string {
  return createHash("sha256").update(content).digest("hex");
}

/** 20250102000200_partition_tree.sql -> partition_tree */
export function migrationName(file: string): string {
  const m = /^\d+_(.+)\.sql$/.exec(file);
  if (!m?.[1]) throw new Error(`${file} is not named <timestamp>_<name>.sql`);
  return m[1];
}

function bundleMigrations(): BundleMigration[] {
  return migrationFiles()
    .map((source) => ({
      source,
      name: migrationName(source),
      content: readFileSync(join(MIGRATIONS_DIR, source)),
      sha256: migrationSha256(source),
    }));
}

/**
 * Where a file of the bundle's supabase/ goes in the user's: our _shared/ and our import map move
 * into INSTALLED_SHARED_DIR, everything else keeps its path.
 */
export function installedPath(bundlePath: string, importMap: string): string {
  if (bundlePath === importMap) return posix.join(INSTALLED_SHARED_DIR, posix.basename(importMap));
  if (bundlePath.startsWith("functions/_shared/")) {
    return posix.join(INSTALLED_SHARED_DIR, bundlePath.slice("functions/_shared/".length));
  }
  return bundlePath;
}

// import … from "./x.ts", export … from "../x.ts", import "./x.ts", import("./x.ts")
const RELATIVE_SPECIFIER = /(\b(?:from|import)\s*\(?\s*)(["'])(\.{1,2}\/[^"'\n]+)\2/g;

/** The relative module specifiers a TypeScript file imports. */
export function relativeImports(source: string): string[] {
  return [...source.matchAll(RELATIVE_SPECIFIER)].map((m) => m[3] ?? "");
}

/**
 * Rewrites a file's relative imports for its installed place: each specifier is resolved where the
 * file was, moved the way `move` moves files, and made relative to where the file goes.
 */
export function rewriteRelativeImports(source: string, from: string, move: (path: string) => string): string {
  const to = move(from);
  return source.replace(RELATIVE_SPECIFIER, (_all, lead: string, quote: string, spec: string) => {
    const target = move(posix.normalize(posix.join(posix.dirname(from), spec)));
    let rel = posix.relative(posix.dirname(to), target);
    if (!rel.startsWith(".")) rel = `./${rel}`;
    return `${lead}${quote}${rel}${quote}`;
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

const ConfigSchema = z.looseObject({
  functions: z.record(z.string(), z.record(z.string(), z.union([z.string(), z.boolean()]))),
});

/** `./functions/deno.json` -> `functions/deno.json` (config.toml paths are relative to supabase/) */
function fromConfigPath(p: string): string {
  return posix.normalize(p).replace(/^\.\//, "");
}

function bundleFunctionsAndFiles(supabaseDir: string): { functions: BundleFunction[]; files: BundleFile[] } {
  const config = ConfigSchema.parse(parseToml(readFileSync(join(supabaseDir, "config.toml"), "utf8")));
  const sections = Object.entries(config.functions);
  const importMaps = new Set(sections.map(([, s]) => s.import_map).filter((p): p is string => typeof p === "string"));
  if (importMaps.size !== 1) throw new Error(`the bundle's functions name ${importMaps.size} import maps in config.toml; the installer expects one`);
  const importMap = fromConfigPath([...importMaps][0] ?? "");
  const move = (p: string) => installedPath(p, importMap);

  const sources = [
    ...sections.flatMap(([name]) => filesUnder(join(supabaseDir, "functions", name))),
    ...filesUnder(join(supabaseDir, "functions", "_shared")),
    join(supabaseDir, importMap),
  ];
  const files = sources.map((abs): BundleFile => {
    const from = relative(supabaseDir, abs).split(sep).join("/");
    const raw = readFileSync(abs);
    const content = /\.(ts|tsx|js|mjs)$/.test(from)
      ? Buffer.from(rewriteRelativeImports(raw.toString("utf8"), from, move))
      : raw;
    return { path: move(from), content, sha256: sha256(content) };
  });

  // Every relative import of an installed file must land on an installed file.
  const installed = new Set(files.map((f) => f.path));
  for (const f of files) {
    if (!/\.(ts|tsx|js|mjs)$/.test(f.path)) continue;
    for (const spec of relativeImports(f.content.toString("utf8"))) {
      const target = posix.normalize(posix.join(posix.dirname(f.path), spec));
      if (!installed.has(target)) throw new Error(`bundle: ${f.path} imports ${spec}, which the installer does not install`);
    }
  }

  const functions = sections.map(([name, section]): BundleFunction => {
    const settings: FunctionSettings = { ...section };
    for (const key of ["import_map", "entrypoint"] as const) {
      const value = section[key];
      if (typeof value === "string") settings[key] = `./${move(fromConfigPath(value))}`;
    }
    return { name, settings };
  });
  return { functions, files };
}

/** The bundle this checkout (or the installed package) holds. */
export function loadBundle(): Bundle {
  const pkg = z.object({ name: z.string(), version: z.string() })
    .parse(JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")));
  const withdrawnReleases = new Map<string, string>();
  for (const r of readReleasedMigrations().releases) {
    if (r.withdrawn !== undefined) withdrawnReleases.set(r.version, r.withdrawn);
  }
  return {
    name: pkg.name,
    version: pkg.version,
    migrations: bundleMigrations(),
    ...bundleFunctionsAndFiles(join(REPO_ROOT, "supabase")),
    withdrawnReleases,
  };
}

