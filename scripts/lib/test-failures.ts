// The failed tests of a run by name, so that the last lines of `npm test` say what failed:
// a CI log is often read from its tail only.
import { relative } from "node:path";

/**
 * What failed, from pg_prove's output: `file: failed test 12: "description"` per failed assertion
 * (each file's header, then its diagnostics), and `file: <reason>` for a file of the summary report
 * that failed without one (an error before its plan, a wrong count, a non-zero exit).
 */
export function pgTapFailures(out: string): string[] {
  const found: string[] = [];
  const named = new Set<string>();
  let file = "";
  let summary = "";
  for (const line of out.split("\n")) {
    const header = /^(\S+\.sql) \.+/.exec(line);
    if (header?.[1]) file = header[1];
    const failedTest = /^# Failed test (\d+)(: .*)?$/.exec(line);
    if (failedTest) {
      found.push(`${file}: failed test ${failedTest[1]}${failedTest[2] ?? ""}`);
      named.add(file);
    }
    const summaryFile = /^(\S+\.sql) \(Wstat/.exec(line);
    if (summaryFile?.[1]) summary = summaryFile[1];
    const reason = /^\s+(Parse errors: .*|Non-zero exit status: .*|Bad plan\..*)$/.exec(line);
    if (summary && reason && !named.has(summary)) {
      found.push(`${summary}: ${reason[1]}`);
      named.add(summary);
    }
  }
  return found;
}

export interface VitestReport {
  numPassedTests: number;
  numFailedTests: number;
  testResults?: { name: string; message?: string; assertionResults?: { fullName: string; status: string; failureMessages?: string[] }[] }[];
}

/** "file > test name: first line of the error" per failed test (or failed file), from vitest's JSON report. */
export function vitestFailures(r: VitestReport, root: string): string[] {
  const found: string[] = [];
  for (const file of r.testResults ?? []) {
    const rel = relative(root, file.name);
    const failed = (file.assertionResults ?? []).filter((a) => a.status === "failed");
    for (const a of failed) found.push(`${rel} > ${a.fullName}: ${firstLine(a.failureMessages?.[0] ?? "")}`);
    if (failed.length === 0 && file.message) found.push(`${rel}: ${firstLine(file.message)}`);
  }
  return found;
}


const firstLine = (text: string): string => (text.split("\n")[0] ?? "").slice(0, 300);
