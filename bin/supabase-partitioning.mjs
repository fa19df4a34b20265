#!/usr/bin/env node
// The package's command (package.json "bin"): `npx supabase-observation-partitioning install <repo>`.
// The installer is TypeScript, run through tsx (a dependency of the package).
import { register } from "tsx/esm/api";

register();
await import("../scripts/supabase-partitioning.ts");
