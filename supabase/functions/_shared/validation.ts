/**
 * Validation issues as the API reports them: one entry per offending field.
 *
 * Structural on purpose (no zod import): errors.ts uses it for functions that
 * never load zod, and the frontend client uses it to report its own
 * pre-flight validation in exactly the shape the server answers with.
 */

/** The parts of a zod issue (v4) this module reads. */
export interface IssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  readonly keys?: readonly string[];
}

export interface FieldIssue {
  /** Dotted path of the parameter ("limit", "body" for the request as a whole). */
  field: string;
  code: string;
  message: string;
}

function fieldName(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "body" : path.map((segment) => String(segment)).join(".");
}

export function fieldIssues(issues: readonly IssueLike[]): FieldIssue[] {
  return issues.flatMap((issue): FieldIssue[] => {
    // zod reports all unknown keys in one issue on the parent; name each key.
    if (issue.code === "unrecognized_keys" && issue.keys && issue.keys.length > 0) {
      return issue.keys.map((key) => ({
        field: fieldName([...issue.path, key]),
        code: "unrecognized_key",
        message: "is not a parameter of this endpoint",
      }));
    }
    return [{ field: fieldName(issue.path), code: issue.code ?? "invalid", message: issue.message }];
  });
}

/** "limit: must be at most 1000; cursor: …", for the error message. */
export function describeFieldIssues(issues: readonly FieldIssue[]): string {
  return issues.map((issue) => `${issue.field}: ${issue.message}`).join("; ");
}
