/**
 * Reading a request's parameters at the boundary: the HTTP method, a size-capped
 * JSON body (POST) or the query string (GET). Produces a plain object for the
 * function's zod schema; every failure is an HttpError with its 4xx status.
 */
import { clientClosed, methodNotAllowed, payloadTooLarge, unsupportedMediaType, validationFailed } from "./errors.ts";

const invalid = (field: string, code: string, message: string) => validationFailed([{ field, code, message }]);

export type Method = "GET" | "POST";

export function requireMethod<M extends Method>(req: Request, allowed: readonly M[]): M {
  const method = allowed.find((m) => m === req.method);
  if (!method) throw methodNotAllowed([...allowed, "OPTIONS"]);
  return method;
}

function isJsonMediaType(contentType: string): boolean {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType);
}

/** The body's bytes, refusing more than maxBytes whether or not Content-Length was sent. */
async function readCapped(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw payloadTooLarge(maxBytes);
  if (!req.body) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch {
      // the client went away before sending its whole body: nobody is left to answer
      throw clientClosed();
    }
    const { done, value } = chunk;
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      // Chunked bodies have no Content-Length: stop reading at the cap.
      await reader.cancel().catch(() => undefined);
      throw payloadTooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * The JSON object in the body. An empty body is `{}` (the schema then names
 * what is missing); a body without Content-Type is read as JSON.
 */
export async function readJsonObject(req: Request, maxBytes: number): Promise<Record<string, unknown>> {
  const contentType = req.headers.get("content-type");
  if (contentType !== null && !isJsonMediaType(contentType)) throw unsupportedMediaType("application/json");
  const bytes = await readCapped(req, maxBytes);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw invalid("body", "invalid_encoding", "is not valid UTF-8");
  }
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid("body", "invalid_json", "is not valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw invalid("body", "invalid_type", "must be a JSON object of parameters");
  }
  return parsed as Record<string, unknown>;
}

/**
 * Query parameters as an object of strings. A repeated parameter is refused
 * rather than silently picking one; `ignore` lists parameters the platform or
 * client library adds (e.g. supabase-js's forceFunctionRegion).
 */
export function queryObject(url: URL, ignore: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    if (ignore.includes(key)) continue;
    if (Object.hasOwn(out, key)) {
      throw invalid(key, "duplicate_parameter", "is given more than once");
    }
    out[key] = value;
  }
  return out;
}
