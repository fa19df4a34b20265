// The frontend client as a package (`npm run build:client`), used the way our users' apps use it.
// Covers:
//  - the package: package.json (exports with types, zod a dependency at the bundle's range,
//    supabase-js a peer), built .js and .d.ts only, no `.ts` import specifier anywhere, every
//    import of the built files either relative to a file that exists or a declared dependency;
//  - a sample app installed against it type-checks with tsc in a Next.js-style tsconfig
//    (moduleResolution bundler, no allowImportingTsExtensions, isolatedModules) and a Vite-style
//    one (verbatimModuleSyntax, noUnusedLocals): rows typed by the generated database types, not
//    `any` (every `@ts-expect-error` of the sample must fire), before and after the swap;
//  - esbuild bundles the app for the browser: zod and the client end up in it, zod tree-shaken
//    (under 150 KB minified: the contract's `import * as z`);
//  - the bundle, run, reads pages from the real served function and maps a gateway 401;
//  - Deno type-checks an app that copied the package folder (import map, no npm install).
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { buildClientPackage, CLIENT_PACKAGE_NAME } from "../../scripts/build-client.ts";
import { testEnv } from "../helpers/env.ts";
import { createObservationsFixture, type ObservationsFixture } from "../helpers/observations-fixture.ts";
import { tempDir } from "../helpers/processes.ts";

const TSC = join(REPO_ROOT, "node_modules", ".bin", "tsc");
const DENO = join(REPO_ROOT, "node_modules", ".bin", "deno");

let tmp: string;
let app: string;
let pkg: string;

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** The app's own code: what a page of a dashboard does with the client. */
const APP_SOURCE = `
import { createClient, type SupabaseClientOptions } from "@supabase/supabase-js";
import {
  createObservationsClient,
  type ObservationRow,
  type ObservationsError,
  type ObservationsErrorCode,
} from "${CLIENT_PACKAGE_NAME}";

export interface NewestRows {
  rows: ObservationRow[];
  pages: number;
  error: { status: number | null; code: ObservationsErrorCode } | null;
}

/** Every row of a program, page by page, as a signed-in user. */
export async function newestRows(
  url: string, anonKey: string, accessToken: string, companyId: string, programId: string, limit: number,
  options: SupabaseClientOptions<"public"> = {},
): Promise<NewestRows> {
  const supabase = createClient(url, anonKey, {
    ...options,
    global: { headers: { Authorization: \`Bearer \${accessToken}\` } },
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const observations = createObservationsClient(supabase);
  const rows: ObservationRow[] = [];
  let pages = 0;
  try {
    for await (const page of observations.pages({ company_id: companyId, program_id: programId, limit })) {
      pages += 1;
      rows.push(...page.rows);
    }
  } catch (err) {
    const error = err as ObservationsError;
    return { rows, pages, error: { status: error.status, code: error.code } };
  }
  return { rows, pages, error: null };
}
`;

/** Compile-time only: the types a frontend developer relies on. Unused @ts-expect-error fails tsc. */
const TYPES_SOURCE = `
import { createClient } from "@supabase/supabase-js";
import {
  createObservationsClient,
  type Database,
  type DatabaseAfterSwap,
  type ObservationRow,
  type ObservationsErrorCode,
  type ObservationTableRow,
} from "${CLIENT_PACKAGE_NAME}";

declare const row: ObservationRow;
const growth: number | null = row.growth_index;
const createdAt: string = row.created_at;
// @ts-expect-error rows are the generated row type, not any
const notANumber: string = row.growth_index;

declare const gasifierBefore: ObservationTableRow<"gasifier_observations">;
declare const gasifierAfter: ObservationTableRow<"gasifier_observations", DatabaseAfterSwap>;
const programAfter: string = gasifierAfter.program_id;
// @ts-expect-error before the swap a gasifier row may have no program
const programBefore: string = gasifierBefore.program_id;

const code: ObservationsErrorCode = "unauthorized";
// @ts-expect-error codes are a closed list
const unknownCode: ObservationsErrorCode = "http_401";

export async function typed(url: string, key: string): Promise<unknown[]> {
  const untyped = createObservationsClient(createClient(url, key));
  const typedClient = createObservationsClient<DatabaseAfterSwap>(createClient<Database>(url, key));
  const { data } = await typedClient.getById("gasifier_observations", "00000000-0000-0000-0000-000000000000");
  const program: string | undefined = data?.program_id;
  const { data: updated } = await untyped.updateById("petri_observations", "00000000-0000-0000-0000-000000000000", { notes: "x" });
  // @ts-expect-error changes are the table's Update type
  await untyped.updateById("petri_observations", "00000000-0000-0000-0000-000000000000", { no_such_column: 1 });
  // @ts-expect-error routed RPCs serve the observation tables only
  await untyped.getById("sites", "00000000-0000-0000-0000-000000000000");
  return [growth, createdAt, notANumber, programAfter, programBefore, code, unknownCode, program, updated?.notes];
}
`;

const NEXT_TSCONFIG = {
  compilerOptions: {
    target: "ES2017", lib: ["dom", "dom.iterable", "esnext"], allowJs: true, skipLibCheck: true, strict: true,
    noEmit: true, esModuleInterop: true, module: "esnext", moduleResolution: "bundler", resolveJsonModule: true,
    isolatedModules: true, jsx: "preserve",
  },
  include: ["src/**/*.ts"],
};

const VITE_TSCONFIG = {
  compilerOptions: {
    target: "ES2022", useDefineForClassFields: true, lib: ["ES2022", "DOM", "DOM.Iterable"], module: "ESNext",
    skipLibCheck: true, moduleResolution: "bundler", allowImportingTsExtensions: true, verbatimModuleSyntax: true,
    moduleDetection: "force", noEmit: true, strict: true, noUnusedLocals: true, noUnusedParameters: true,
    noFallthroughCasesInSwitch: true, noUncheckedSideEffectImports: true,
  },
  include: ["src/**/*.ts"],
};

async function tsc(project: string): Promise<{ status: number | null; output: string }> {
  const r = await runProgram(TSC, ["-p", project], { cwd: app });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  tmp = tempDir("client-package-");
  app = join(tmp, "app");
  // installed as npm installs a tarball: a folder of its own in the app's node_modules
  pkg = await buildClientPackage(join(app, "node_modules", CLIENT_PACKAGE_NAME));
  // the app's other dependencies: the versions this repository installs
  symlinkSync(join(REPO_ROOT, "node_modules", "zod"), join(app, "node_modules", "zod"));
  symlinkSync(join(REPO_ROOT, "node_modules", "@supabase"), join(app, "node_modules", "@supabase"));
  write(join(app, "package.json"), JSON.stringify({ name: "sample-app", private: true, type: "module" }));
  write(join(app, "src", "observations.ts"), APP_SOURCE);
  write(join(app, "src", "types.ts"), TYPES_SOURCE);
  write(join(app, "tsconfig.next.json"), JSON.stringify(NEXT_TSCONFIG));
  write(join(app, "tsconfig.vite.json"), JSON.stringify(VITE_TSCONFIG));
}, 120_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("the package", () => {
  it("declares its entry with types, zod as a dependency at the bundle's range, supabase-js as a peer", () => {
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as Record<string, unknown>;
    const root = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string> };
    expect(manifest).toMatchObject({
      name: CLIENT_PACKAGE_NAME,
      version: root.version,
      type: "module",
      exports: { ".": { types: "./dist/client/observations-client.d.ts", default: "./dist/client/observations-client.js" } },
      dependencies: { zod: root.dependencies.zod },
      peerDependencies: { "@supabase/supabase-js": "^2" },
    });
    const built = [...files(pkg)].map((f) => relative(pkg, f)).sort();
    expect(built).toContain("dist/client/observations-client.js");
    expect(built).toContain("dist/client/observations-client.d.ts");
    expect(built).toContain("README.md");
    expect(built.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
  });

  it("imports no .ts specifier, and only files it has or packages it declares", () => {
    const declared = new Set(["zod", "@supabase/supabase-js"]);
    const problems: string[] = [];
    for (const path of files(join(pkg, "dist"))) {
      const text = readFileSync(path, "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
        const spec = m[1]!;
        if (spec.endsWith(".ts") && !spec.endsWith(".d.ts")) problems.push(`${relative(pkg, path)}: ${spec}`);
        else if (spec.startsWith(".")) {
          const target = join(dirname(path), spec);
          const exists = [target, target.replace(/\.js$/, ".d.ts")].some((t) => {
            try {
              return statSync(t).isFile();
            } catch {
              return false;
            }
          });
          if (!exists) problems.push(`${relative(pkg, path)}: ${spec} (missing)`);
        } else if (!declared.has(spec)) problems.push(`${relative(pkg, path)}: ${spec} (undeclared)`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe("a sample app", () => {
  it("type-checks in a Next.js-style tsconfig (bundler resolution, no allowImportingTsExtensions)", async () => {
    const r = await tsc("tsconfig.next.json");
    expect(r.output).toBe("");
    expect(r.status).toBe(0);
  });

  it("type-checks in a Vite-style tsconfig (verbatimModuleSyntax, noUnusedLocals)", async () => {
    const r = await tsc("tsconfig.vite.json");
    expect(r.output).toBe("");
    expect(r.status).toBe(0);
  });

  it("bundles for the browser with esbuild, zod (tree-shaken) and the client inside", async () => {
    const result = await esbuild.build({
      entryPoints: [join(app, "src", "observations.ts")],
      bundle: true,
      platform: "browser",
      format: "esm",
      minify: true,
      metafile: true,
      write: false,
      absWorkingDir: app,
      logLevel: "silent",
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((i) => i.includes(`node_modules/${CLIENT_PACKAGE_NAME}/dist/client/observations-client.js`))).toBe(true);
    // what each part adds to the minified bundle
    const bytes = { zod: 0, client: 0 };
    for (const output of Object.values(result.metafile.outputs)) {
      for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
        if (/node_modules\/zod\//.test(input)) bytes.zod += bytesInOutput;
        if (input.includes(`node_modules/${CLIENT_PACKAGE_NAME}/`)) bytes.client += bytesInOutput;
      }
    }
    console.log(`minified bundle: the client ${bytes.client} bytes, zod ${bytes.zod} bytes`);
    expect(bytes.client).toBeGreaterThan(0);
    expect(bytes.zod).toBeGreaterThan(0);
    // the contract's `import * as z` lets the bundler drop what it does not use (about 90 KB of
    // zod in it); `import { z }` pulls in all of zod and its locales (about 450 KB)
    expect(bytes.zod).toBeLessThan(150_000);
  });

  describe("run against the served function", () => {
    let fx: ObservationsFixture;
    let newestRows: (url: string, anonKey: string, token: string, companyId: string, programId: string, limit: number,
      options?: Record<string, unknown>) => Promise<{ rows: { observation_id: string }[]; pages: number; error: { status: number | null; code: string } | null }>;

    beforeAll(async () => {
      fx = await createObservationsFixture({ a: 40, b: 4 });
      const bundle = join(app, "bundle.mjs");
      await esbuild.build({ entryPoints: [join(app, "src", "observations.ts")], bundle: true, platform: "browser", format: "esm", outfile: bundle, absWorkingDir: app, logLevel: "silent" });
      ({ newestRows } = (await import(pathToFileURL(bundle).href)) as { newestRows: typeof newestRows });
    }, 120_000);

    afterAll(async () => {
      await fx?.remove();
    });

    // Node 20 has no WebSocket; supabase-js builds its realtime client eagerly (a browser has one)
    class NoRealtime {
      constructor() {
        throw new Error("realtime is not used");
      }
    }
    const options = { realtime: { transport: NoRealtime } };

    it("reads every row of a program, one request per page", async () => {
      const r = await newestRows(testEnv.supabaseUrl, testEnv.anonKey, fx.a.token, fx.a.companyId, fx.a.programId, 20, options);
      expect(r.error).toBeNull();
      expect(r.pages).toBe(2);
      expect(new Set(r.rows.map((row) => row.observation_id))).toEqual(new Set(fx.a.observations.map((o) => o.observation_id)));
    });

    it("reports the gateway's refusal of a forged token as unauthorized", async () => {
      const [header, payload] = fx.a.token.split(".");
      const r = await newestRows(testEnv.supabaseUrl, testEnv.anonKey, `${header}.${payload}.forged`, fx.a.companyId, fx.a.programId, 20, options);
      expect(r.error).toEqual({ status: 401, code: "unauthorized" });
    });
  });
});

describe("a Deno app that copied the package folder", () => {
  it("type-checks with an import map, without npm install", async () => {
    const denoApp = join(tmp, "deno-app");
    cpSync(pkg, join(denoApp, "vendor", "observations-client"), { recursive: true });
    write(join(denoApp, "deno.json"), JSON.stringify({
      imports: {
        [CLIENT_PACKAGE_NAME]: "./vendor/observations-client/dist/client/observations-client.js",
        zod: "npm:zod@4.6.7",
        "@supabase/supabase-js": "npm:@supabase/supabase-js@^2",
      },
      compilerOptions: { strict: true },
    }));
    write(join(denoApp, "main.ts"), TYPES_SOURCE);
    const r = await runProgram(DENO, ["check", "--quiet", "--config", "deno.json", "main.ts"], {
      cwd: denoApp, env: { ...process.env, DENO_TLS_CA_STORE: "mozilla,system", NO_COLOR: "1" },
    });
    expect(`${r.stdout}${r.stderr}`).toBe("");
    expect(r.status).toBe(0);
  }, 300_000);
});
