-- =============================================================================
-- Partition names: a short stable alias per uuid (key_aliases) and a suffix per period, so that
-- every name fits PostgreSQL's 63 bytes and stays readable (partitions.petri_p_<alias>_s_<alias>_2025_01).
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------

-- Short, stable aliases for uuids in partition names: the first 12 hex digits, a hash on a clash.
create table if not exists partition_mgmt.key_aliases (
  id     uuid primary key,
  alias  text not null unique
);

-- -----------------------------------------------------------------------------
-- Periods and the sizing rule
--
-- How big a leaf gets, in one place; every function that plans, promotes or premakes partitions
-- asks these (supabase/tests/database/13-sizing-rule checks that no other function repeats them).
--
--   A leaf is full when it holds target_rows_per_leaf rows (fills_leaf). In a sized tree a site
--   gets partitions of its own once its rows fill a leaf or it is pinned (set_site_granularity), and
--   a program once its rows fill a leaf or one of its sites gets partitions of its own; until then
--   each shares its parent's DEFAULT leaf. A site's period is the shortest of week, month, quarter
--   and year in which its rate fills a leaf (granularity_for_rate); a site that fills no year keeps
--   one leaf for all its time ('none'), unless its time is split already: then years. Its rate
--   (rows_per_period) is its rows over the span of their times, a month at least: all its rows when
--   the tree is planned or the site is promoted, its last rate_window() (90 days) when maintenance
--   sets the period of its next leaves (a leaf once made is never split). Its periods reach
--   premake_horizon(): the end of the month premake_months after this one, or the program's end.
--
--   Maintenance counts a shared leaf's rows only when its statistics say one program or site in it
--   may be within promotion_margin() (90%) of the target (may_fill_leaf): statistics lag behind the
--   writes, and counting every shared leaf every night would scan them all. What it promotes is
--   decided on the exact count (fills_leaf).
--
--   Periods are UTC weeks (ISO, from Monday), months, quarters and years (period_length); a rate
--   counts a month as the average Gregorian month, 365.2425 / 12 days (period_seconds).
-- -----------------------------------------------------------------------------

-- Suffix of a period leaf's name: _2025w03, _2025_01, _2025q1, _2025.
create or replace function partition_mgmt.period_suffix(p_granularity text, p_start timestamptz)
returns text
language sql immutable
set search_path = ''
as $$
  select to_char(p_start at time zone 'UTC', case p_granularity when 'week' then 'IYYY"w"IW' when 'month' then 'YYYY_MM'
                                                                 when 'quarter' then 'YYYY"q"Q' else 'YYYY' end)
$$;

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.alias_for(p_id uuid)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_alias text;
  v_hex text := replace(p_id::text, '-', '');
  v_attempt int := 0;
  v_existing text;
begin
  select alias into v_alias from partition_mgmt.key_aliases where id = p_id;
  if v_alias is not null then
    return v_alias;
  end if;
  -- The uuid's first 12 hex digits keep names recognisable; when two ids share them (sequential
  -- or hand-made uuids often do), a 12-digit hash of the id serves instead, so every name keeps
  -- its length (<= 43 bytes with the longest prefix) and stays unique. The lock is per candidate
  -- alias, so creators of unrelated partitions never wait for each other here.
  loop
    v_alias := case when v_attempt = 0 then left(v_hex, 12) else left(md5(p_id::text || ':' || v_attempt), 12) end;
    perform pg_advisory_xact_lock(hashtextextended('partition_mgmt.alias:' || v_alias, 0));
    select alias into v_existing from partition_mgmt.key_aliases where id = p_id;
    if v_existing is not null then
      return v_existing;
    end if;
    exit when not exists (select from partition_mgmt.key_aliases where alias = v_alias);
    v_attempt := v_attempt + 1;
  end loop;
  insert into partition_mgmt.key_aliases (id, alias) values (p_id, v_alias);
  return v_alias;
end
$$;
