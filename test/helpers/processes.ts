// Running the repository's scripts and other programs from the suites, and their scratch folders.
// Never synchronously (spawnSync, execFileSync): see scripts/lib/processes.ts.
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { type ProgramOptions, runProgram } from "../../scripts/lib/processes.ts";

/** execFile as a promise: resolves with stdout and stderr, rejects when the program fails. */
export const run = promisify(execFile);

/** tsx's CLI, run with `process.execPath` (no shell, no npx): `[process.execPath, [TSX, "scripts/generate.ts", …]]`. */
export const TSX = join(REPO_ROOT, "node_modules", "tsx", "dist", "cli.mjs");

export interface Captured { code: number; stdout: string; stderr: string }

/** Runs a program to its end and returns its exit code and output, never throwing for a failed run. */
export async function capture(command: string, args: string[], options: ProgramOptions = {}): Promise<Captured> {
  try {
    const r = await runProgram(command, args, options);
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    return { code: -1, stdout: "", stderr: String(err) };
  }
}

/** A new empty folder under the system's temporary folder (the caller removes it). */
export const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** A line of a Node stack trace: what a script's message to a user must never contain. */
export const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;
