/**
 * Which functions supabase/functions holds and how each is run, read the way the Supabase CLI
 * reads them: every folder with an index.ts (or a config.toml entrypoint), minus `_`- and
 * dot-folders and `enabled = false`; verify_jwt and import_map from its [functions.<name>] section,
 * paths relative to supabase/.
 */
import { existsSync, statSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";

/** How Deno should resolve bare specifiers for one function. */
export type ModuleResolution =
  | { kind: "config"; path: string }
  | { kind: "import-map"; path: string }
  | { kind: "none" };

export interface FunctionSpec {
  name: string;
  entrypoint: string;
  verifyJwt: boolean;
  resolution: ModuleResolution;
}

const FUNCTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

const FunctionSectionSchema = z.looseObject({
  enabled: z.boolean().optional(),
  verify_jwt: z.boolean().optional(),
  import_map: z.string().optional(),
  entrypoint: z.string().optional(),
});
type FunctionSection = z.infer<typeof FunctionSectionSchema>;

const ConfigSchema = z.looseObject({
  functions: z.record(z.string(), FunctionSectionSchema).optional(),
});

async function readFunctionSections(configTomlPath: string): Promise<Record<string, FunctionSection>> {
  const parsed = ConfigSchema.safeParse(parseToml(await readFile(configTomlPath, "utf8")));
  if (!parsed.success) {
    throw new Error(`${configTomlPath}: invalid [functions.*] section: ${parsed.error.message}`);
  }
  return parsed.data.functions ?? {};
}

function isFile(p: string): boolean {
  return existsSync(p) && statSync(p).isFile();
}

function resolutionFor(importMap: string | undefined, functionDir: string): ModuleResolution {
  const candidate = importMap ?? path.join(functionDir, "deno.json");
  if (!isFile(candidate)) {
    if (importMap) throw new Error(`import_map ${importMap} does not exist`);
    return { kind: "none" };
  }
  // A deno.json carries its import map inside; a bare import map file does not.
  const isDenoConfig = /^deno\.jsonc?$/.test(path.basename(candidate));
  return isDenoConfig ? { kind: "config", path: candidate } : { kind: "import-map", path: candidate };
}

function specFor(name: string, functionsDir: string, supabaseDir: string, section: FunctionSection): FunctionSpec {
  const functionDir = path.join(functionsDir, name);
  // As in the Supabase CLI, paths in config.toml are relative to supabase/.
  const fromConfig = (p: string | undefined): string | undefined =>
    p === undefined ? undefined : path.resolve(supabaseDir, p);
  const entrypoint = fromConfig(section.entrypoint) ?? path.join(functionDir, "index.ts");
  if (!isFile(entrypoint)) throw new Error(`function ${name}: entrypoint ${entrypoint} does not exist`);
  return {
    name,
    entrypoint,
    verifyJwt: section.verify_jwt ?? true,
    resolution: resolutionFor(fromConfig(section.import_map), functionDir),
  };
}

export async function discoverFunctions(functionsDir: string, configTomlPath: string): Promise<FunctionSpec[]> {
  const sections = await readFunctionSections(configTomlPath);
  const supabaseDir = path.dirname(configTomlPath);
  const entries = await readdir(functionsDir, { withFileTypes: true });
  const specs: FunctionSpec[] = [];
  for (const entry of entries) {
    const name = entry.name;
    // _shared and dot-folders hold code, not functions.
    if (!entry.isDirectory() || name.startsWith("_") || name.startsWith(".")) continue;
    if (!FUNCTION_NAME.test(name)) continue;
    const section = sections[name] ?? {};
    const hasIndex = isFile(path.join(functionsDir, name, "index.ts"));
    if (!hasIndex && section.entrypoint === undefined) continue;
    if (section.enabled === false) continue;
    specs.push(specFor(name, functionsDir, supabaseDir, section));
  }
  return specs.sort((a, b) => a.name.localeCompare(b.name));
}

