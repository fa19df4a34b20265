// `npm run build:client`: the frontend client as a package a Next.js, Vite or Deno project installs
// or copies: dist/observations-client/ (package.json, README.md, dist/**/*.js and .d.ts).
//
//   npm run build:client                    # writes dist/observations-client/
//   npm run build:client -- --out <dir>     # elsewhere
//   cd dist/observations-client && npm pack # a tarball to `npm install` (or publish)
//
// tsc compiles client/observations-client.ts and everything it imports (client/tsconfig.build.json);
// the package's version is the bundle's, its one runtime dependency zod at the bundle's own range
// (so the function, its client and the package run the same zod), supabase-js a peer (only its
// types are used). Each .js file names its .d.ts (`@ts-self-types`), so Deno type-checks a copied
// folder too.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "./lib/cluster.ts";
import { runOrThrow } from "./lib/processes.ts";

export const CLIENT_PACKAGE_NAME = "supabase-observation-partitioning-client";
const DEFAULT_OUT = join(REPO_ROOT, "dist", "observations-client");
const ENTRY = "dist/client/observations-client";

interface RootManifest {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

function manifest(root: RootManifest): Record<string, unknown> {
  const zod = root.dependencies.zod;
  if (!zod) throw new Error("package.json has no zod dependency");
  return {
    name: CLIENT_PACKAGE_NAME,
    version: root.version,
    description:
      "Typed frontend client for the observation partitioning bundle's read API: the get-observations-optimized edge function and the routed RPCs by id.",
    type: "module",
    sideEffects: false,
    exports: {
      ".": { types: `./${ENTRY}.d.ts`, default: `./${ENTRY}.js` },
      "./package.json": "./package.json",
    },
    main: `./${ENTRY}.js`,
    types: `./${ENTRY}.d.ts`,
    files: ["dist", "README.md"],
    dependencies: { zod },
    peerDependencies: { "@supabase/supabase-js": "^2" },
  };
}

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

/** Builds the package into out (emptied first); returns out. */
export async function buildClientPackage(out: string = DEFAULT_OUT): Promise<string> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await runOrThrow(
    join(REPO_ROOT, "node_modules", ".bin", "tsc"),
    ["-p", join(REPO_ROOT, "client", "tsconfig.build.json"), "--outDir", join(out, "dist")],
    { cwd: REPO_ROOT },
    "tsc",
  );
  for (const path of files(join(out, "dist"))) {
    if (!path.endsWith(".js")) continue;
    const types = `./${basename(path, ".js")}.d.ts`;
    writeFileSync(path, `// @ts-self-types="${types}"\n${readFileSync(path, "utf8")}`);
  }
  const root = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as RootManifest;
  writeFileSync(join(out, "package.json"), `${JSON.stringify(manifest(root), null, 2)}\n`);
  copyFileSync(join(REPO_ROOT, "client", "README.md"), join(out, "README.md"));
  return out;
}

if (resolve(process.argv[1] ?? "") === resolve(import.meta.filename)) {
  const at = process.argv.indexOf("--out");
  const out = await buildClientPackage(at === -1 ? DEFAULT_OUT : resolve(process.argv[at + 1] ?? DEFAULT_OUT));
  const built = [...files(out)].map((f) => relative(out, f)).sort();
  console.log(`built ${relative(REPO_ROOT, out) || out}: ${built.length} files\n  ${built.join("\n  ")}`);
}
