// The edge functions' one import map (supabase/functions/deno.json): every function resolves its
// imports through it, locally (scripts/lib/functions-server) as with `supabase functions deploy`
// (config.toml's import_map), and it pins the npm packages to the versions package-lock.json
// installs, so the contracts shared with client/ run under the same zod on both sides.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { discoverFunctions } from "../../scripts/lib/functions-server.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";

const FUNCTIONS_DIR = path.join(REPO_ROOT, "supabase", "functions");
const IMPORT_MAP = path.join(FUNCTIONS_DIR, "deno.json");

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

describe("the edge functions' import map", () => {
  const imports = readJson<{ imports: Record<string, string> }>(IMPORT_MAP).imports;
  const lock = readJson<{ packages: Record<string, { version?: string }> }>(path.join(REPO_ROOT, "package-lock.json"));

  it("pins every npm package to the version package-lock.json installs", () => {
    const pinned = Object.entries(imports).map(([specifier, target]) => {
      const match = /^npm:((?:@[^/@]+\/)?[^/@]+)@([^/]+)(\/[^@]*)?$/.exec(target);
      expect(match, `${specifier}: "${target}" is not npm:<package>@<version>[/<subpath>]`).not.toBeNull();
      const [, name = "", version = ""] = match ?? [];
      return { specifier, name, version, locked: lock.packages[`node_modules/${name}`]?.version ?? "(not in package-lock.json)" };
    });
    expect(pinned.map((p) => p.name).sort()).toEqual(["@supabase/supabase-js", "jose", "postgres", "zod"]);
    for (const p of pinned) expect(p.version, `${p.specifier}: import map has ${p.version}, package-lock.json ${p.locked}`).toBe(p.locked);
  });

  it("is the one every function resolves its imports through", async () => {
    const functions = await discoverFunctions(FUNCTIONS_DIR, path.join(REPO_ROOT, "supabase", "config.toml"));
    expect(functions.map((f) => f.name)).toEqual(["get-observations-optimized", "health", "partition-admin"]);
    for (const f of functions) {
      expect(f.resolution, f.name).toEqual({ kind: "config", path: IMPORT_MAP });
      for (const own of ["deno.json", "deno.jsonc", "import_map.json"]) {
        expect(existsSync(path.join(FUNCTIONS_DIR, f.name, own)), `${f.name}/${own}`).toBe(false);
      }
    }
  });
});
