// `npm ci` installs from package-lock.json on a fresh machine of any platform we support: the
// lockfile lists every platform's optional binary of the Supabase CLI (@supabase/cli-<platform>)
// and of Deno (@deno/<platform>), without which npm ci refuses it ("Missing: … from lock file")
// everywhere, this machine included. Checked with npm's own validation: `npm ci --dry-run
// --offline` on a copy of package.json and package-lock.json, once per platform (npm's --os, --cpu
// and --libc), each of which must plan its own CLI binary. No network, nothing installed.
import { copyFileSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { runProgram } from "../../scripts/lib/processes.ts";
import { tempDir } from "../helpers/processes.ts";

interface LockEntry { version?: string; os?: string[]; cpu?: string[]; libc?: string[]; optionalDependencies?: Record<string, string> }
const lock = JSON.parse(readFileSync(path.join(REPO_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };

const PLATFORMS = [
  { os: "linux", cpu: "x64", libc: "glibc" },
  { os: "linux", cpu: "arm64", libc: "glibc" },
  { os: "linux", cpu: "x64", libc: "musl" },
  { os: "darwin", cpu: "arm64" },
  { os: "darwin", cpu: "x64" },
  { os: "win32", cpu: "x64" },
] as const;

/** The optional package of `parent` built for a platform, by the os/cpu/libc fields the lockfile records. */
function binaryFor(parent: string, p: (typeof PLATFORMS)[number]): string | undefined {
  const names = Object.keys(lock.packages[`node_modules/${parent}`]?.optionalDependencies ?? {});
  return names.find((name) => {
    const e = lock.packages[`node_modules/${name}`];
    const libc = "libc" in p ? p.libc : undefined;
    return e?.os?.includes(p.os) && e.cpu?.includes(p.cpu) && (e.libc === undefined || libc === undefined || e.libc.includes(libc));
  });
}

describe("package-lock.json", () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir("lockfile-");
    for (const f of ["package.json", "package-lock.json"]) copyFileSync(path.join(REPO_ROOT, f), path.join(dir, f));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("lists every optional platform binary of every locked package, at the version its parent asks for", () => {
    const missing: string[] = [];
    for (const [key, entry] of Object.entries(lock.packages)) {
      for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
        const found = lock.packages[`${key}/node_modules/${name}`] ?? lock.packages[`node_modules/${name}`];
        if (!found) missing.push(`${name}@${spec} (of ${key || "the root"})`);
        else if (/^\d+\.\d+\.\d+$/.test(spec) && found.version !== spec) missing.push(`${name}@${spec} (locked ${found.version})`);
      }
    }
    expect(missing).toEqual([]);
  });

  for (const p of PLATFORMS) {
    const label = `${p.os}-${p.cpu}${"libc" in p ? `-${p.libc}` : ""}`;
    it(`npm ci accepts it on ${label} and installs that platform's Supabase CLI and Deno`, async () => {
      const args = ["ci", "--dry-run", "--offline", "--ignore-scripts", "--no-audit", "--no-fund", "--os", p.os, "--cpu", p.cpu, ...("libc" in p ? ["--libc", p.libc] : [])];
      const r = await runProgram("npm", args, { cwd: dir, timeout: 120_000 });
      expect(r.status, `npm ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
      const cli = binaryFor("supabase", p);
      const deno = binaryFor("deno", p);
      expect(cli, `no @supabase/cli binary for ${label} in package-lock.json`).toBeDefined();
      expect(r.stdout).toContain(`add ${cli} ${lock.packages["node_modules/supabase"]?.version}`);
      if (deno) expect(r.stdout).toContain(`add ${deno} ${lock.packages["node_modules/deno"]?.version}`);
    });
  }
});
