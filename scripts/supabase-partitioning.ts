// `npm run install-bundle -- [--dry-run] <repo>`, and the package's bin (bin/supabase-partitioning.mjs):
// installs the bundle into a user's Supabase repo, or upgrades it there (scripts/lib/install/).
import { runInstaller } from "./lib/install/cli.ts";

process.exitCode = runInstaller(process.argv.slice(2), { out: (line) => console.log(line), err: (line) => console.error(line) });
