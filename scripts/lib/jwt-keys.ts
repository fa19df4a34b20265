/**
 * HS256 keys and tokens in the shape of Supabase's legacy local JWTs.
 *
 * The local stack has no GoTrue, so the anon / service_role API keys and the
 * user tokens that tests need are minted here from the shared JWT secret.
 */
import { SignJWT, type JWTPayload } from "jose";

export interface ApiKeys {
  anonKey: string;
  serviceRoleKey: string;
}

export interface UserTokenOptions {
  sub: string;
  role?: "authenticated";
  email?: string;
  /** Negative values mint an already-expired token (for negative tests). */
  expiresInSeconds?: number;
  /** Extra claims; the standard ones above take precedence on conflict. */
  extra?: Record<string, unknown>;
}

// API keys are long-lived by design (Supabase's demo keys expire in 2032);
// ten years keeps them valid for any realistic local run.
const API_KEY_LIFETIME_SECONDS = 10 * 365 * 24 * 60 * 60;
const DEFAULT_USER_TOKEN_LIFETIME_SECONDS = 3600;

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function secretKey(secret: string): Uint8Array {
  if (secret.length < 32) {
    // GoTrue/PostgREST refuse shorter HS256 secrets; failing here is clearer.
    throw new Error("JWT secret must be at least 32 characters long");
  }
  return new TextEncoder().encode(secret);
}

async function signHs256(payload: JWTPayload, secret: string): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(secretKey(secret));
}

async function apiKey(secret: string, role: "anon" | "service_role"): Promise<string> {
  const iat = nowSeconds();
  return signHs256({ iss: "supabase-demo", role, iat, exp: iat + API_KEY_LIFETIME_SECONDS }, secret);
}

export async function makeApiKeys(secret: string): Promise<ApiKeys> {
  const [anonKey, serviceRoleKey] = await Promise.all([
    apiKey(secret, "anon"),
    apiKey(secret, "service_role"),
  ]);
  return { anonKey, serviceRoleKey };
}

export async function signUserToken(secret: string, opts: UserTokenOptions): Promise<string> {
  const iat = nowSeconds();
  const lifetime = opts.expiresInSeconds ?? DEFAULT_USER_TOKEN_LIFETIME_SECONDS;
  const payload: JWTPayload = {
    ...(opts.extra ?? {}),
    sub: opts.sub,
    role: opts.role ?? "authenticated",
    aud: "authenticated",
    iat,
    exp: iat + lifetime,
  };
  if (opts.email !== undefined) payload.email = opts.email;
  return signHs256(payload, secret);
}
