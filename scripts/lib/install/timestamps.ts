// Versions for the bundle's migrations in a user's repo.
//
// `supabase db push` applies local files in file-name order and refuses one that sorts before the
// last version the database already recorded, so every migration we add must sort after the repo's
// latest. The user's own later migrations come from `supabase migration new`, which names them by
// the current UTC time: ours end one second before now, so anything the user creates from now on
// sorts after ours (and after a second install's). When the repo's latest migration is too recent
// for that (or dated in the future), ours follow it second by second, and the caller warns: until
// that time has passed, `migration new` names files that sort before ours.

const TIMESTAMP = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/;

/** A 14-digit UTC timestamp (YYYYMMDDHHMMSS), as `supabase migration new` writes it. */
export function formatVersion(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** The time a 14-digit version stands for, or undefined when it is not one. */
export function parseVersion(version: string): Date | undefined {
  const m = TIMESTAMP.exec(version);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return formatVersion(t) === version ? t : undefined;
}

export interface Versions {
  versions: string[];
  /** set when `supabase migration new` would, for a while, name files that sort before ours */
  sortsAfterNowUntil?: Date;
}

/**
 * `count` consecutive versions, one second apart, all sorting after `latest` (the repo's latest
 * migration version, if any): ending one second before `now` when that leaves room, else starting
 * one second after `latest`. Undefined when `latest` is not a 14-digit timestamp that versions can
 * follow (the CLI sorts versions as text).
 */
export function allocateVersions(count: number, latest: string | undefined, now: Date): Versions | undefined {
  const nowSecond = Math.floor(now.getTime() / 1000) * 1000;
  const latestTime = latest === undefined ? undefined : parseVersion(latest)?.getTime();
  if (latest !== undefined && latestTime === undefined) {
    // Not a timestamp (a hand-numbered 0001_init.sql): ours must still sort after it as text.
    const versions = Array.from({ length: count }, (_, i) => formatVersion(new Date(nowSecond - (count - i) * 1000)));
    return versions.every((v) => v > latest) ? { versions } : undefined;
  }
  const firstBeforeNow = nowSecond - count * 1000;
  const first = latestTime === undefined || latestTime < firstBeforeNow ? firstBeforeNow : latestTime + 1000;
  const versions = Array.from({ length: count }, (_, i) => formatVersion(new Date(first + i * 1000)));
  const last = first + (count - 1) * 1000;
  return last >= nowSecond ? { versions, sortsAfterNowUntil: new Date(last) } : { versions };
}
