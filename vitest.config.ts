import { defineConfig } from "vitest/config";

// pg_cron fires jobs only in the cluster's shared `postgres` database, where a job's run is visible
// to every suite (health() reports failed jobs): its suite runs alone, after all the others.
const CRON_SUITE = "test/partitions/pg-cron.test.ts";
// 20 concurrent sessions of one test on Micro's 60 connections: alone, after the others.
const MICRO_SUITE = "test/partitions/micro-limits.test.ts";
// the app's longest wait while the push and the setup steps run: measured with nothing else running
const ADOPTION_SUITE = "test/adoption/adoption-push.test.ts";
// the suites that stop the test stack's one read replica or pause its replay: one file at a time
const REPLICA_SUITES = "test/replica/**/*.test.ts";

export default defineConfig({
  test: {
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // two cores: two files at a time, each on its own database cloned from the migrated template
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: "suites", include: ["test/**/*.test.ts"], exclude: [CRON_SUITE, MICRO_SUITE, ADOPTION_SUITE, REPLICA_SUITES], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: "replica", include: [REPLICA_SUITES], poolOptions: { forks: { singleFork: true } }, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: "adoption", include: [ADOPTION_SUITE], sequence: { groupOrder: 2 } } },
      { extends: true, test: { name: "micro-limits", include: [MICRO_SUITE], sequence: { groupOrder: 3 } } },
      { extends: true, test: { name: "pg-cron", include: [CRON_SUITE], sequence: { groupOrder: 4 } } },
    ],
  },
});
