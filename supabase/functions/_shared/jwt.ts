/**
 * Caller identity from the request's keys and token.
 *
 * - A secret API key (`sb_secret_…`, Supabase's newer keys, in the `apikey` or
 *   `Authorization: Bearer` header) equal to one of SUPABASE_SECRET_KEYS is the
 *   service role. A publishable key (`sb_publishable_…`) identifies no one.
 * - Otherwise the bearer token is a JWT, whose signature is verified here
 *   whenever the key material is at hand:
 *   - HS256 (legacy JWT secret): locally the gateway hands us the secret
 *     (SB_LOCAL_JWT_SECRET); on hosted Supabase only if you set SUPABASE_JWT_SECRET.
 *   - ES256/RS256/EdDSA (JWT signing keys): the public keys in SUPABASE_JWKS,
 *     which hosted Supabase provides, else the project's JWKS endpoint
 *     (SUPABASE_URL/auth/v1/.well-known/jwks.json, cached).
 *   Without matching key material (an HS256 token and no secret) the token is
 *   only decoded: with verify_jwt = true the platform has verified it before the
 *   function runs, so keep verify_jwt on for such projects. Expiry, the role
 *   claim and, for signed-in users, the audience are checked in every case.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
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
/** What Supabase Auth puts in `aud` of a signed-in user's access token. */
const USER_AUDIENCE = "authenticated";
const SECRET_KEY_PREFIX = "sb_secret_";
const PUBLISHABLE_KEY_PREFIX = "sb_publishable_";
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

let hmacKey: { secret: string; key: Promise<CryptoKey> } | null = null;

/** The HS256 secret as a key imported once per isolate (jose would import raw bytes on every call). */
function hmacKeyOf(secret: string): Promise<CryptoKey> {
  if (hmacKey?.secret !== secret) {
    const key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    hmacKey = { secret, key };
  }
  return hmacKey.key;
}

/** The project's secret API keys: SUPABASE_SECRET_KEYS is a JSON object of name -> key. */
function secretKeys(): Map<string, string> {
  const raw = Deno.env.get("SUPABASE_SECRET_KEYS");
  const keys = new Map<string, string>();
  if (!raw) return keys;
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      for (const [name, value] of Object.entries(parsed)) {
        if (typeof value === "string" && value.startsWith(SECRET_KEY_PREFIX)) keys.set(value, name);
      }
    }
  } catch (err) {
    console.error("SUPABASE_SECRET_KEYS is not a JSON object of name -> key; secret keys are refused:", err);
  }
  return keys;
}

/** Equal strings, in time independent of where they differ. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The service role, when the request carries one of the project's secret API keys. */
function secretKeyClaims(presented: string): Claims {
  for (const [key, name] of secretKeys()) {
    if (sameSecret(presented, key)) return { role: "service_role", raw: { role: "service_role", api_key: name } };
  }
  throw unauthorized("Invalid API key");
}

let jwksCache: { raw: string; getKey: JWTVerifyGetKey | undefined } | null = null;
let remoteJwks: { url: string; getKey: JWTVerifyGetKey } | null = null;

/** The project's JWKS endpoint (Supabase Auth's signing keys), fetched once and cached by jose. */
function remoteSigningKeys(): JWTVerifyGetKey | undefined {
  const base = Deno.env.get("SUPABASE_URL");
  if (!base) return undefined;
  const url = new URL("/auth/v1/.well-known/jwks.json", base).toString();
  if (remoteJwks?.url !== url) {
    // Supabase's edge caches the JWKS for 10 minutes; so does this function
    remoteJwks = { url, getKey: createRemoteJWKSet(new URL(url), { cacheMaxAge: 600_000, cooldownDuration: 30_000 }) };
  }
  return remoteJwks.getKey;
}

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
  key: CryptoKey | JWTVerifyGetKey,
  algorithms: string[],
): Promise<JWTPayload> {
  try {
    const { payload } = typeof key === "function"
      ? await jwtVerify(token, key, { algorithms })
      : await jwtVerify(token, key, { algorithms });
    return payload;
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw unauthorized("JWT expired");
    if (err instanceof errors.JWKSNoMatchingKey) throw unauthorized("Invalid JWT: no signing key of the project matches it");
    // the project's JWKS could not be fetched: our fault, not the caller's
    if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || err instanceof TypeError) throw err;
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
  const apikey = req.headers.get("apikey") ?? "";
  const header = req.headers.get("authorization");
  const bearer = header === null ? null : bearerToken(req);
  if (bearer?.startsWith(SECRET_KEY_PREFIX)) return secretKeyClaims(bearer);
  if (bearer?.startsWith(PUBLISHABLE_KEY_PREFIX) || (bearer === null && apikey.startsWith(PUBLISHABLE_KEY_PREFIX))) {
    throw unauthorized("The publishable key identifies no one: send a signed-in user's access token, or the secret key from a server");
  }
  if (bearer === null && apikey.startsWith(SECRET_KEY_PREFIX)) return secretKeyClaims(apikey);
  const token = bearer ?? bearerToken(req);
  const alg = tokenAlgorithm(token);
  const secret = jwtSecret();
  let payload: JWTPayload;
  if (alg === "HS256" && secret) {
    payload = await verifiedPayload(token, await hmacKeyOf(secret), ["HS256"]);
  } else if (alg !== "HS256") {
    const jwks = signingKeys() ?? remoteSigningKeys();
    if (!jwks) throw unauthorized("Cannot verify the JWT: no signing keys (SUPABASE_JWKS or SUPABASE_URL) are configured");
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
  const aud = claims.raw.aud;
  if (!(aud === USER_AUDIENCE || (Array.isArray(aud) && aud.includes(USER_AUDIENCE)))) {
    throw unauthorized(`JWT audience must be '${USER_AUDIENCE}' (a signed-in user's access token), got ${JSON.stringify(aud ?? null)}`);
  }
  return claims as UserClaims;
}
