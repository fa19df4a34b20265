import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    // two cores: two files at a time, each on its own database cloned from the migrated template
    maxWorkers: 2,
    minWorkers: 1,
  },
});
