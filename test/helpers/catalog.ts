// The catalog snapshot lives with the scripts (the schema sources' check and diff use it too).
export * from "../../scripts/lib/catalog.ts";
