// Our [functions.<name>] sections in the user's supabase/config.toml.
//
// Their file is never re-serialised: our sections are appended as text after theirs, so their
// settings, order, comments and formatting stay byte for byte. smol-toml reads the file to see what
// it already defines, and reads the result to prove it is still valid TOML that says what we need.
// A section of ours from an earlier install is replaced where it stands, only while it is exactly
// the text we appended; a [functions.<name>] of theirs that differs from ours is a refusal.
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import type { BundleFunction } from "./bundle.ts";
import { InstallRefusal } from "./refusal.ts";

/** The text of one section as we append it: `[functions.<name>]` and its keys. */
export function functionSection(fn: BundleFunction): string {
  return stringifyToml({ functions: { [fn.name]: fn.settings } });
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Same TOML values (smol-toml's tables have no prototype, so node's deep equality will not do). */
function sameValue(a: unknown, b: unknown): boolean {
  const canonical = (v: unknown): unknown =>
    isTable(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
    : Array.isArray(v) ? v.map(canonical)
    : v instanceof Date ? v.toISOString()
    : v;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function parseConfig(text: string, what: string): Table {
  try {
    return parseToml(text) as Table;
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    throw new InstallRefusal(`${what} is not valid TOML (${first}); fix it and run the installer again`);
  }
}

function functionsOf(config: Table): Table {
  const fns = config.functions;
  return isTable(fns) ? fns : {};
}

function describe(settings: unknown): string {
  if (!isTable(settings)) return JSON.stringify(settings);
  return Object.entries(settings).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ");
}

export interface ConfigMerge {
  /** the new config.toml, or undefined when it stays as it is */
  text: string | undefined;
  /** our sections as they now stand in the file, by function name (the install record keeps them) */
  sections: Record<string, string>;
  added: string[];
  updated: string[];
  removed: string[];
}

const BANNER = "# Edge functions of the observation-partitioning bundle, added by `supabase-partitioning install`\n"
  + "# (supabase/partitioning-bundle.json lists them). Their code is in functions/<name>/ and\n"
  + "# functions/_shared/partitioning/, with the import map that pins their npm packages.\n";

/**
 * Merges our functions' sections into `text` (the user's config.toml). `installed` holds the
 * sections an earlier install appended, by function name: one the bundle still has is updated in
 * place, one it no longer has is taken out, each only while it is the text we wrote.
 */
export function mergeFunctionSections(
  text: string,
  functions: BundleFunction[],
  installed: Readonly<Record<string, string>>,
  path = "supabase/config.toml",
): ConfigMerge {
  const theirs = functionsOf(parseConfig(text, path));
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const withEol = (s: string) => s.replace(/\r?\n/g, eol);
  let out = text;
  const sections: Record<string, string> = {};
  const added: string[] = [];
  const updated: string[] = [];
  const removed: string[] = [];
  const append: string[] = [];

  const ours = (section: string, name: string): unknown => functionsOf(parseConfig(section, `the section of ${name}`))[name];

  for (const fn of functions) {
    const section = functionSection(fn);
    const current = theirs[fn.name];
    const previous = installed[fn.name];
    if (current === undefined) {
      append.push(section);
      added.push(fn.name);
      sections[fn.name] = section;
    } else if (sameValue(current, fn.settings)) {
      // already as we need it: ours from an earlier install, or written by hand
      sections[fn.name] = previous !== undefined && out.includes(withEol(previous)) ? previous : section;
    } else if (previous !== undefined && sameValue(current, ours(previous, fn.name)) && out.split(withEol(previous)).length === 2) {
      out = out.replace(withEol(previous), () => withEol(section));
      updated.push(fn.name);
      sections[fn.name] = section;
    } else {
      throw new InstallRefusal(
        `${path} already has [functions.${fn.name}] (${describe(current)}), which is not the bundle's `
        + `(${describe(fn.settings)}): the bundle installs a function named ${fn.name}; `
        + "rename yours (or, if it is an edited copy of ours, set it back) and run the installer again",
      );
    }
  }

  // Functions an earlier install added that this bundle no longer has.
  const keep = new Set(functions.map((f) => f.name));
  for (const [name, previous] of Object.entries(installed)) {
    if (keep.has(name)) continue;
    if (out.split(withEol(previous)).length === 2) {
      out = out.replace(withEol(previous), "");
      removed.push(name);
    } else if (theirs[name] !== undefined) {
      throw new InstallRefusal(
        `${path}: [functions.${name}] was installed by an earlier release, which this one no longer has, `
        + "and it was edited since: remove the section by hand and run the installer again",
      );
    }
  }

  if (append.length > 0) {
    const sep = out.length === 0 || out.endsWith("\n") ? "" : eol;
    const blankLine = out.trim().length === 0 || out.endsWith(`${eol}${eol}`) ? "" : eol;
    out = `${out}${sep}${blankLine}${withEol(BANNER)}${append.map(withEol).join(eol)}`;
  }
  if (out === text) return { text: undefined, sections, added, updated, removed };

  // The result must be valid TOML that defines our sections exactly as we need them.
  const merged = functionsOf(parseConfig(out, `${path} with the bundle's sections`));
  for (const fn of functions) {
    if (!sameValue(merged[fn.name], fn.settings)) {
      throw new InstallRefusal(`${path}: appending [functions.${fn.name}] does not define it as the bundle needs (the file's own layout prevents it); add the section by hand: ${describe(fn.settings)}`);
    }
  }
  return { text: out, sections, added, updated, removed };
}
