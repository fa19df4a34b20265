// The command line of every script a user runs (npm start, stop, admin, generate, bench,
// bench:adoption, gen:types, backup): node:util's parseArgs, strict; `--help` prints the usage and
// exits 0; a bad command line prints one line saying what was wrong, then the usage, and exits 2,
// never a stack trace. test/cli/cli-help.test.ts runs each script both ways.
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A command line the script cannot run: one line, then the usage; exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure the user can act on: one line (and hints), exit 1, no stack. */
export class CliFailure extends Error {
  override name = "CliFailure";
  constructor(message: string, readonly hints: readonly string[] = []) {
    super(message);
  }
}

/** parseArgs' own messages, shortened to what was wrong ("Unknown option '--x'. To specify …"). */
function parseArgsMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const option = /'([^']+)'/.exec(message)?.[1];
    return option ? `unknown option ${option}` : message;
  }
  if (e.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    const arg = /'([^']+)'/.exec(message)?.[1];
    return arg ? `unexpected argument ${arg}` : message;
  }
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    // "Option '--months <value>' argument missing", "Option '--json' does not take an argument"
    const option = /--[A-Za-z0-9-]+/.exec(message)?.[0] ?? /'(-[^' ,]+)/.exec(message)?.[1] ?? "";
    if (/argument missing/.test(message)) return `${option} needs a value`;
    if (/ambiguous/.test(message)) return `${option} needs a value (one that starts with - is written ${option}=-…)`;
    if (/does not take an argument/.test(message)) return `${option} takes no value`;
  }
  return message.split("\n")[0] ?? message;
}

export interface CommandLineSpec<O extends Options> {
  /** how the user runs it, for the messages: "npm run generate" */
  name: string;
  usage: string;
  options: O;
  /** positional arguments allowed (default 0) */
  maxPositionals?: number;
  argv?: string[];
}

/**
 * Parses the command line; prints the usage and exits 0 on --help / -h; prints
 * "<name>: <what was wrong>" and the usage and exits 2 on a bad one. Returns values and
 * positionals otherwise.
 */
export function commandLine<O extends Options>(spec: CommandLineSpec<O>) {
  const args = spec.argv ?? process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(spec.usage);
    process.exit(0);
  }
  try {
    const parsed = parseArgs({ args, options: spec.options, allowPositionals: true as const, strict: true as const });
    const max = spec.maxPositionals ?? 0;
    if (parsed.positionals.length > max) {
      const extra = parsed.positionals[max];
      throw new UsageError(max === 0 ? `unexpected argument ${extra}: this command takes options only` : `unexpected argument ${extra}`);
    }
    return parsed;
  } catch (err) {
    return usageExit(spec.name, spec.usage, err instanceof UsageError ? err.message : parseArgsMessage(err));
  }
}

/** Prints "<name>: <message>", a blank line and the usage to stderr; exits 2. */
export function usageExit(name: string, usage: string, message: string): never {
  console.error(`${name}: ${message}`);
  console.error("");
  console.error(usage);
  process.exit(2);
}

/** A non-negative (or at least `min`) integer option, else a UsageError naming the flag. */
export function integerOption(flag: string, value: string | undefined, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`;
    throw new UsageError(`${flag} must be ${range}, got "${value}"`);
  }
  return n;
}

/** What went wrong in one line: a database error with its code, a system error with its cause. */
export function describeError(err: unknown): { message: string; hints: string[] } {
  if (err instanceof CliFailure) return { message: err.message, hints: [...err.hints] };
  const e = err as { message?: string; code?: string; detail?: string; hint?: string; severity?: string; address?: string; port?: number; hostname?: string };
  const message = e.message ?? String(err);
  const hints: string[] = [];
  // postgres.js: a server error has severity and a SQLSTATE code
  if (typeof e.severity === "string" && typeof e.code === "string") {
    if (e.detail) hints.push(`detail: ${e.detail}`);
    if (e.hint) hints.push(`hint: ${e.hint}`);
    return { message: `${message} (SQLSTATE ${e.code})`, hints };
  }
  if (e.code === "ECONNREFUSED") return { message: `connection refused by ${e.address ?? "the server"}${e.port ? `:${e.port}` : ""}: nothing listens there`, hints };
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") return { message: `the host name ${e.hostname ?? ""} does not resolve (${e.code})`, hints };
  return { message: message.split("\n")[0] ?? message, hints };
}

/**
 * Runs a script's body: a UsageError prints one line and the usage (exit 2); any other failure
 * prints one line and its hints (exit 1). Stack traces only with DEBUG=1.
 */
export async function runCli(name: string, usage: string, main: () => Promise<number | void>): Promise<never> {
  try {
    const code = await main();
    process.exit(code ?? 0);
  } catch (err) {
    if (err instanceof UsageError) usageExit(name, usage, err.message);
    const { message, hints } = describeError(err);
    console.error(`${name}: ${message}`);
    for (const h of hints) console.error(`  ${h}`);
    if (process.env.DEBUG) console.error(err);
    process.exit(1);
  }
}
