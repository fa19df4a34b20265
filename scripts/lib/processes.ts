// The one way scripts and suites run another program: asynchronously. A test worker that blocks its
// event loop (spawnSync, execFileSync) for longer than vitest's 60 s RPC timeout ends the whole run
// red with "Timeout calling onTaskUpdate", though no test failed; test/cli/no-blocking-spawns.test.ts
// keeps synchronous child processes out of everything the suites load.
import { spawn } from "node:child_process";

export interface ProgramOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** written to the program's stdin, which is then closed */
  input?: string;
  /** milliseconds until the program gets SIGTERM (then `signal` says so, `status` is null) */
  timeout?: number;
}

/** What spawnSync would have returned: the exit code (null when a signal ended it) and the output. */
export interface ProgramRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to its end without blocking this process. Resolves whatever the exit code; rejects
 * only when the program cannot start (not found, not executable).
 */
export function runProgram(file: string, args: readonly string[], options: ProgramOptions = {}): Promise<ProgramRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => { stdout += d; });
    child.stderr.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
    // a program that exits without reading its stdin must not fail the run with EPIPE
    child.stdin.on("error", () => {});
    child.stdin.end(options.input ?? "");
    const timer = options.timeout === undefined ? undefined : setTimeout(() => child.kill("SIGTERM"), options.timeout);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** runProgram that throws when the program fails, with what it printed; resolves with its stdout. */
export async function runOrThrow(file: string, args: readonly string[], options: ProgramOptions = {}, label = `${file} ${args.join(" ")}`): Promise<string> {
  const res = await runProgram(file, args, options);
  if (res.status !== 0) {
    throw new Error(`${label} failed (${res.signal ? `signal ${res.signal}` : `exit ${res.status}`}):\n${res.stderr}${res.stdout}`);
  }
  return res.stdout;
}
