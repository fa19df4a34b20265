// The get-observations-optimized contract (supabase/functions/_shared/observations-contract.ts) on
// its own, without HTTP: the same module the Deno function and the frontend client import.
// Covers: defaults per mode; both date forms and the half-open range check; the cursor format the
// function emits (microseconds, +00:00) and what it refuses; unknown keys named one by one; the
// error messages name each field.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_LIMIT,
  ObservationsRequestSchema,
  parseCursor,
} from "../../supabase/functions/_shared/observations-contract.ts";
import { describeFieldIssues, fieldIssues } from "../../supabase/functions/_shared/validation.ts";

const ids = { company_id: randomUUID(), program_id: randomUUID() };

function issuesOf(input: unknown) {
  const parsed = ObservationsRequestSchema.safeParse(input);
  return parsed.success ? [] : fieldIssues(parsed.error.issues);
}

describe("observations contract", () => {
  it("defaults: rows mode with limit 100; aggregate mode grouped by day", () => {
    expect(ObservationsRequestSchema.parse(ids)).toEqual({ ...ids, limit: DEFAULT_LIMIT });
    expect(ObservationsRequestSchema.parse({ ...ids, mode: "aggregate" })).toEqual({ ...ids, mode: "aggregate", group_by: "day" });
  });

  it("accepts dates and offset date-times; an equal start and end is an empty range, not an error", () => {
    for (const start_date of ["2025-01-31", "2025-01-31T10:00:00Z", "2025-01-31T10:00:00.123456+02:00"]) {
      expect(issuesOf({ ...ids, start_date, end_date: start_date })).toEqual([]);
    }
    expect(issuesOf({ ...ids, start_date: "2025-02-01T00:00:00+01:00", end_date: "2025-01-31T23:30:00Z" })).toEqual([]);
    expect(issuesOf({ ...ids, start_date: "2025-02-01T00:00:00Z", end_date: "2025-01-31T23:30:00Z" }).map((i) => i.field)).toEqual(["end_date"]);
  });

  it("reads the cursor the function emits and refuses anything else", () => {
    const id = randomUUID();
    expect(parseCursor(`2025-01-31T09:12:45.123456+00:00|${id}`)).toEqual({ createdAt: "2025-01-31T09:12:45.123456+00:00", observationId: id });
    expect(parseCursor(`2025-01-31T09:12:45+00:00|${id}`)).not.toBeNull();
    for (const bad of ["", "x", `2025-01-31|${id}`, `2025-01-31T09:12:45Z|${id}|x`, `2025-01-31T09:12:45Z|${id.slice(1)}`]) {
      expect(parseCursor(bad), bad).toBeNull();
    }
  });

  it("names every unknown key and every bad field in the message", () => {
    const issues = issuesOf({ ...ids, limit: 0, select: "*", order: "id" });
    expect(issues.map((i) => i.field).sort()).toEqual(["limit", "order", "select"]);
    const message = describeFieldIssues(issues);
    for (const part of ["limit: must be an integer", "select: is not a parameter", "order: is not a parameter"]) {
      expect(message).toContain(part);
    }
  });
});
