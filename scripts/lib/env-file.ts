// The KEY=VALUE files the local stack writes (.env.local, .local/test*.env; see writeEnvFile in
// stack.ts), read with Node's own .env parser.
import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";

export function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parseEnv(readFileSync(path, "utf8")))) {
    if (value !== undefined) out[key] = value;
  }
  return out;
}
