/**
 * Caller identity from the bearer token.
 *
 * Locally the gateway hands us the JWT secret (SB_LOCAL_JWT_SECRET), so the
 * token is verified here too. Hosted Supabase does not expose the secret, but
 * with verify_jwt = true the platform has already verified the signature
 * before the function runs, so decoding is enough. Use readClaims only in
 * functions deployed with verify_jwt = true.
 */
import { decodeJwt, errors, jwtVerify, type JWTPayload } from "jose";
import { unauthorized } from "./errors.ts";

export interface Claims {
  role: string;
  sub?: string;
  email?: string;
  raw: JWTPayload;
}

function bearerToken(req: Request): string {
  const header = req.headers.get("authorization");
  if (!header) throw unauthorized("Missing authorization header");
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) throw unauthorized("Authorization header must be 'Bearer <token>'");
  return match[1];
}

function jwtSecret(): string | undefined {
  return Deno.env.get("SB_LOCAL_JWT_SECRET") || Deno.env.get("SUPABASE_JWT_SECRET") || undefined;
}

async function verifiedPayload(token: string, secret: string): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), {
      algorithms: ["HS256"],
    });
    return payload;
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw unauthorized("JWT expired");
    if (err instanceof errors.JWSSignatureVerificationFailed) {
      throw unauthorized("Invalid JWT signature");
    }
    throw unauthorized("Invalid JWT");
  }
}

function decodedPayload(token: string): JWTPayload {
  try {
    return decodeJwt(token);
  } catch {
    throw unauthorized("Malformed JWT");
  }
}

function toClaims(payload: JWTPayload): Claims {
  // A token without exp would never expire; Supabase never issues one.
  if (typeof payload.exp !== "number") throw unauthorized("JWT has no exp claim");
  if (payload.exp <= Math.floor(Date.now() / 1000)) throw unauthorized("JWT expired");
  const role = payload.role;
  if (typeof role !== "string" || role === "") throw unauthorized("JWT has no role claim");
  const claims: Claims = { role, raw: payload };
  if (typeof payload.sub === "string") claims.sub = payload.sub;
  if (typeof payload.email === "string") claims.email = payload.email;
  return claims;
}

export async function readClaims(req: Request): Promise<Claims> {
  const token = bearerToken(req);
  const secret = jwtSecret();
  const payload = secret ? await verifiedPayload(token, secret) : decodedPayload(token);
  return toClaims(payload);
}
