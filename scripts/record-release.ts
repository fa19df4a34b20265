// `npm run release:record -- <version>`: records the migrations of a release (file name and
// SHA-256) in supabase/released-migrations.json. From then on they are append-only
// (scripts/lib/released-migrations.ts); commit the file with the release.
import { writeFileSync } from "node:fs";
import { relative } from "node:path";
import { REPO_ROOT } from "./lib/cluster.ts";
import {
  appendOnlyViolations, currentMigrations, readReleasedMigrations, RELEASED_MIGRATIONS_PATH, type ReleasedMigrations,
} from "./lib/released-migrations.ts";

const version = process.argv[2];
if (!version || !/^\d+\.\d+\.\d+$/.test(version)) {
  console.error(`usage: npm run release:record -- <version> (like 0.2.0), got ${version ?? "nothing"}`);
  process.exit(2);
}
let record: ReleasedMigrations;
try {
  record = readReleasedMigrations();
} catch {
  record = { releases: [] };
}
if (record.releases.some((r) => r.version === version)) {
  console.error(`release ${version} is already recorded in ${relative(REPO_ROOT, RELEASED_MIGRATIONS_PATH)}`);
  process.exit(1);
}
const violations = appendOnlyViolations(record);
if (violations.length > 0) {
  console.error(`cannot record ${version}: released migrations changed\n  ${violations.join("\n  ")}`);
  process.exit(1);
}
const recorded = new Set(record.releases.flatMap((r) => r.migrations.map((m) => m.file)));
const added = currentMigrations().filter((m) => !recorded.has(m.file));
record.releases.push({ version, migrations: added });
writeFileSync(RELEASED_MIGRATIONS_PATH, `${JSON.stringify(record, null, 2)}\n`);
console.log(`recorded ${added.length} migration(s) as release ${version} in ${relative(REPO_ROOT, RELEASED_MIGRATIONS_PATH)}`);
