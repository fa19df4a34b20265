/**
 * Caller identity from the bearer token.
 *
 * The signature is verified here whenever the key material is at hand:
 *   - HS256 (legacy JWT secret): locally the gateway hands us the secret
 *     (SB_LOCAL_JWT_SECRET); on hosted Supabase only if you set SUPABASE_JWT_SECRET.
 *   - ES256/RS256/EdDSA (JWT signing keys): the public keys in SUPABASE_JWKS,
 *     which hosted Supabase provides.
 * Without matching key material the token is only decoded: with
 * verify_jwt = true the platform has verified it before the function runs, so
 * use readClaims only in functions deployed with verify_jwt = true. Expiry and
 * the role claim are checked in every case.
 */
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { forbidden, unauthorized } from "./errors.ts";

export interface Claims {
  role: string;
  sub?: string;
  email?: string;
  raw: JWTPayload;
}

const ASYMMETRIC_ALGORITHMS = ["ES256", "RS256", "EdDSA"];
const KNOWN_ALGORITHMS = new Set(["HS256", ...ASYMMETRIC_ALGORITHMS]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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

let jwksCache: { raw: string; getKey: JWTVerifyGetKey | undefined } | null = null;

/** SUPABASE_JWKS holds `{"keys":[…]}` or a bare `[…]`; anything unusable counts as absent. */
function signingKeys(): JWTVerifyGetKey | undefined {
  const raw = Deno.env.get("SUPABASE_JWKS");
  if (!raw) return undefined;
  if (jwksCache?.raw === raw) return jwksCache.getKey;
  let getKey: JWTVerifyGetKey | undefined;
  try {
    const parsed: unknown = JSON.parse(raw);
    const keys = Array.isArray(parsed) ? parsed : (parsed as { keys?: unknown } | null)?.keys;
    if (Array.isArray(keys) && keys.length > 0) {
      getKey = createLocalJWKSet({ keys } as JSONWebKeySet);
    }
  } catch (err) {
    console.error("SUPABASE_JWKS is not a JSON Web Key Set; tokens are only decoded:", err);
  }
  jwksCache = { raw, getKey };
  return getKey;
}

function tokenAlgorithm(token: string): string {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw unauthorized("Malformed JWT");
  }
  // Also refuses alg "none": an unsigned token is never acceptable.
  if (typeof alg !== "string" || !KNOWN_ALGORITHMS.has(alg)) throw unauthorized("Invalid JWT");
  return alg;
}

async function verifiedPayload(
  token: string,
  key: Uint8Array | JWTVerifyGetKey,
  algorithms: string[],
): Promise<JWTPayload> {
  try {
    const { payload } = typeof key === "function"
      ? await jwtVerify(token, key, { algorithms })
      : await jwtVerify(token, key, { algorithms });
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
  const alg = tokenAlgorithm(token);
  const secret = jwtSecret();
  const jwks = signingKeys();
  let payload: JWTPayload;
  if (alg === "HS256" && secret) {
    payload = await verifiedPayload(token, new TextEncoder().encode(secret), ["HS256"]);
  } else if (alg !== "HS256" && jwks) {
    payload = await verifiedPayload(token, jwks, ASYMMETRIC_ALGORITHMS);
  } else {
    payload = decodedPayload(token);
  }
  return toClaims(payload);
}

/** Claims of a signed-in user (role authenticated, sub = auth.users.id). */
export interface UserClaims extends Claims {
  role: "authenticated";
  sub: string;
}

/** Claims of the service role (server-side callers; bypasses RLS). */
export interface ServiceClaims extends Claims {
  role: "service_role";
}

/**
 * For endpoints that act for a signed-in user, or for trusted servers with the
 * service role key. The anon key identifies no one: 401, so clients sign in.
 */
export function requireUserOrService(claims: Claims): UserClaims | ServiceClaims {
  if (claims.role === "service_role") return claims as ServiceClaims;
  if (claims.role === "anon") {
    throw unauthorized("This endpoint needs a signed-in user's access token, not the anon key");
  }
  if (claims.role !== "authenticated") throw forbidden(`Role '${claims.role}' may not call this endpoint`);
  if (!claims.sub || !UUID.test(claims.sub)) throw unauthorized("JWT sub claim must be the user's id (a UUID)");
  return claims as UserClaims;
}
