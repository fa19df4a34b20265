-- The sizing rule of a sized tree, on its own ("Periods and the sizing rule" in migration
-- 20250102000200_partition_tree): when a program or site gets partitions of its own and at which
-- period. plan_tree, promotion and maintenance using it are in 08-sized-tree and the vitest suites.
-- Covers: a leaf is full exactly at the target (one row under is not); maintenance counts a shared
-- leaf from 90% of the target (one row under is not, no estimate is unknown); a rate is rows over
-- their span, a month at least, in average Gregorian months (week 7 days, quarter 3 months, year 12);
-- each switch of the period (week, month, quarter, year, none; a site split by time never gets
-- none) exactly at the target and one row under; the calendar step of each period; the premake
-- horizon; and that no other function of the bundle's schemas repeats the rule's constants or
-- comparisons (the margin, a month's seconds, a period's step, the horizon, a comparison with
-- target_rows_per_leaf): a copy would let the rule and the copy drift apart.
begin;
select plan(14);
set local timezone = 'UTC';

-- the threshold
select results_eq(
  $$select partition_mgmt.fills_leaf(999, 1000), partition_mgmt.fills_leaf(1000, 1000), partition_mgmt.fills_leaf(1001, 1000),
           partition_mgmt.fills_leaf(null, 1000)$$,
  $$values (false, true, true, false)$$,
  'a leaf is full at the target, not one row under; no rows fill nothing');

-- the margin of the statistics
select is(partition_mgmt.promotion_margin(), 0.9, 'the margin is 90%');
select results_eq(
  $$select partition_mgmt.may_fill_leaf(899, 1000), partition_mgmt.may_fill_leaf(899.99, 1000), partition_mgmt.may_fill_leaf(900, 1000),
           partition_mgmt.may_fill_leaf(null, 1000)$$,
  $$values (false, false, true, null::boolean)$$,
  'an estimate may fill a leaf from 90% of the target; without one, unknown (the caller decides)');

-- rates
select results_eq(
  $$select g, partition_mgmt.period_seconds(g) from unnest(array['week', 'month', 'quarter', 'year', 'none']) g$$,
  $$values ('week', 604800::numeric), ('month', 2629746), ('quarter', 7889238), ('year', 31556952), ('none', null)$$,
  'a week is 7 days, a month 365.2425 / 12 days, a quarter 3 months, a year 12; none has no length');
select results_eq(
  $$select partition_mgmt.rows_per_period(1000, make_interval(secs => 2629746), 'month'),
           partition_mgmt.rows_per_period(1000, interval '1 day', 'month'),
           partition_mgmt.rows_per_period(1000, null, 'month'),
           partition_mgmt.rows_per_period(1000, make_interval(secs => 2 * 2629746), 'month'),
           partition_mgmt.rows_per_period(1000, make_interval(secs => 2629746), 'year'),
           partition_mgmt.rows_per_period(5000, interval '35 days', 'week')$$,
  $$values (1000::numeric, 1000::numeric, 1000::numeric, 500::numeric, 12000::numeric, 1000::numeric)$$,
  'rows per period: over their span, a month at least (a day or no span counts as a month)');

-- each switch of the period, at the target (1,000 rows a leaf) and one row under
create temporary table switches (rows numeric, span interval, expected text, expected_split text);
insert into switches values
  (5000, interval '35 days', 'week', 'week'),                               -- 1,000 a week
  (4999, interval '35 days', 'month', 'month'),
  (1000, make_interval(secs => 2629746), 'month', 'month'),                 -- 1,000 a month
  (999, make_interval(secs => 2629746), 'quarter', 'quarter'),
  (1000, make_interval(secs => 3 * 2629746), 'quarter', 'quarter'),         -- 1,000 a quarter
  (999, make_interval(secs => 3 * 2629746), 'year', 'year'),
  (1000, make_interval(secs => 12 * 2629746), 'year', 'year'),              -- 1,000 a year
  (999, make_interval(secs => 12 * 2629746), 'none', 'year'),               -- fills no year: one leaf, or years once split
  (0, null, 'none', 'year');
select results_eq(
  $$select partition_mgmt.granularity_for_rate(rows, span, 1000), partition_mgmt.granularity_for_rate(rows, span, 1000, true) from switches order by rows desc, span$$,
  $$select expected, expected_split from switches order by rows desc, span$$,
  'the shortest period the rate fills, switching exactly at the target; none only for a site not split by time');
select is(partition_mgmt.granularity_for_rate(1000, make_interval(secs => 2629746), 1001), 'quarter',
  'the target is the table''s: one more row a leaf and a month no longer fills it');

-- calendar periods and the horizon
select results_eq(
  $$select g, partition_mgmt.period_length(g) from unnest(array['week', 'month', 'quarter', 'year', 'none']) g$$,
  $$values ('week', interval '7 days'), ('month', interval '1 month'), ('quarter', interval '3 months'), ('year', interval '1 year'), ('none', null)$$,
  'the calendar step of each period');
select is(partition_mgmt.rate_window(), interval '90 days', 'maintenance sets a site''s next periods from its last 90 days');
select results_eq(
  $$select partition_mgmt.premake_horizon(3, null), partition_mgmt.premake_horizon(0, null),
           partition_mgmt.premake_horizon(3, current_date), partition_mgmt.premake_horizon(3, (current_date + interval '2 years')::date)$$,
  $$select date_trunc('month', now()) + interval '4 months', date_trunc('month', now()) + interval '1 month',
           (current_date + 1)::timestamptz, date_trunc('month', now()) + interval '4 months'$$,
  'periods reach the end of the month premake_months after this one, or the program''s end');

-- ---------------------------------------------------------------------------
-- No function but the rule's states the rule
-- ---------------------------------------------------------------------------
create temporary table rule_functions (name text);
insert into rule_functions values ('period_length'), ('period_seconds'), ('fills_leaf'), ('promotion_margin'), ('may_fill_leaf'),
  ('rows_per_period'), ('granularity_for_rate'), ('rate_window'), ('premake_horizon');
create temporary table copies_of_the_rule (what text, pattern text, copy text);   -- copy: what the pattern catches
insert into copies_of_the_rule values
  ('the promotion margin', '[^0-9.]0?\.9[^0-9]', 'greatest(k.reltuples, 0) >= c.target_rows_per_leaf * 0.9 and'),
  ('seconds of a month or a week', '2629746|2629800|2592000|30\.44|30\.43|86400|604800|31556952|7889238',
   'granularity_for_rate(s.rows / greatest(1.0, extract(epoch from s.last_ts - s.first_ts) / 2629746.0), $1)'),
  ('months in the rate window', '/\s*3\.0[^0-9]', 'granularity_for_rate(v_recent / 3.0, c.target_rows_per_leaf, true)'),
  ('the rate window', '''+90 days''+', 'and %I >= now() - interval ''90 days'''),
  ('a period''s step', 'when\s+''+week''+\s+then\s+interval', 'case %1$L when ''week'' then interval ''7 days'' when'),
  ('the premake horizon', 'premake_months\s*\+', 'date_trunc(''month'', now()) + make_interval(months => c.premake_months + 1)'),
  ('a comparison with the target',
   '(>=|<=|>|<)\s*[a-z_.]*target_rows_per_leaf|target_rows_per_leaf\s*(>=|<=|>|<|\*|/)|(rows\)?|count\(\*\))\s*>=\s*(\$[0-9]|%)',
   '$3 = ''literal'' or s.rows >= $1 or g.granularity is not null as own');
create temporary table bundle_functions as
select n.nspname || '.' || p.proname as fn, pg_catalog.pg_get_functiondef(p.oid) as def
from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'partition_mgmt', 'private', 'analytics') and p.prokind in ('f', 'p')
  and not (n.nspname = 'partition_mgmt' and p.proname in (select name from rule_functions))
  and not exists (select from pg_catalog.pg_depend d where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');
select cmp_ok((select count(*)::int from bundle_functions where fn like 'partition_mgmt.%'), '>', 100, 'the scan reads the bundle''s functions');
select is_empty(
  $$select f.fn, c.what from bundle_functions f join copies_of_the_rule c on f.def ~* c.pattern order by 1, 2$$,
  'no function outside the rule repeats its margin, month, window, period steps, horizon or target comparison');
-- the scan finds a copy: each pattern matches the copy of the rule it stands for (the code before
-- the rule had one place), and the rule's own functions match them too
select is_empty($$select what from copies_of_the_rule where copy !~* pattern$$, 'every pattern finds the copy it stands for');
select results_eq(
  $$select p.proname::text collate "default" from pg_catalog.pg_proc p
    where p.pronamespace = 'partition_mgmt'::regnamespace and p.proname in (select name from rule_functions)
      and exists (select from copies_of_the_rule c where pg_catalog.pg_get_functiondef(p.oid) ~* c.pattern) order by 1$$,
  $$values ('period_length'), ('period_seconds'), ('premake_horizon'), ('promotion_margin'), ('rate_window')$$,
  'the scan would see the rule''s own functions: they are set apart by name');

select * from finish();
rollback;
