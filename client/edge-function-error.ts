/**
 * A failed call of one of the bundle's edge functions, as both typed clients report it. status is
 * the HTTP status (null when no response arrived or the parameters were refused before sending);
 * code, message and details are the server's `{ error: { code, message, details } }`.
 */
export class EdgeFunctionError<Details = unknown> extends Error {
  constructor(
    readonly status: number | null,
    readonly code: string,
    message: string,
    readonly details?: Details,
  ) {
    super(message);
    this.name = "EdgeFunctionError";
  }
}
