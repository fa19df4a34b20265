-- Analytics (migration 20250102000100_analytics_infrastructure).
-- Covers:
--   * schema analytics closed to anon and authenticated; the metrics table has its unique group
--     index, analytics.mv_daily_metrics is a view over it, and neither can be read by
--     authenticated or anon; the statement triggers that record changed groups are on the table
--   * get_daily_metrics() is SECURITY DEFINER with search_path '', executable by authenticated
--     and service_role, not anon; refresh_daily_metrics() by service_role only
--   * refresh_daily_metrics() recomputes the changed groups when populated (and empties the list
--     of changed groups) and computes everything when the metrics were never populated;
--     get_daily_metrics() says so clearly meanwhile
--   * aggregates per company, program, site and UTC day (an evening in New York counts on
--     the next UTC day)
--   * get_daily_metrics() as A's user: only A's rows, nothing of B even with B's program id,
--     site and inclusive date filters; as a user without a company: nothing; a forged
--     "service_role" claim under the authenticated role changes nothing; service_role sees all
--   * clear errors, with the offending values, for p_end_date < p_start_date and a NULL program
--
-- Ids: companies ca.. (A) cb.. (B); users aa..01 (A) bb..01 (B) cc..01 (no company);
--      programs a1.. / b1..; sites a2..01, a2..02 / b2..01; submissions a3.. / b3..
begin;
select plan(34);

-- ---------------------------------------------------------------------------
-- Schema, view, privileges
-- ---------------------------------------------------------------------------
select has_schema('analytics', 'schema analytics exists');
select ok(not has_schema_privilege('anon', 'analytics', 'usage')
          and not has_schema_privilege('authenticated', 'analytics', 'usage'),
  'anon and authenticated have no usage on schema analytics');
select has_view('analytics', 'mv_daily_metrics', 'analytics.mv_daily_metrics exists (a view over analytics.daily_metrics)');
select has_index('analytics', 'daily_metrics', 'daily_metrics_group_idx',
  array['program_id', 'site_id', 'day', 'company_id'], 'group index on (program_id, site_id, day, company_id)');
select index_is_unique('analytics', 'daily_metrics', 'daily_metrics_group_idx', 'the group index is unique');
select ok(not has_table_privilege('authenticated', 'analytics.daily_metrics', 'select')
          and not has_table_privilege('anon', 'analytics.metrics_dirty', 'select'),
  'authenticated and anon have no SELECT on the metrics and the changed groups');
select is(array(select tgname::text from pg_trigger where tgrelid = 'public.petri_observations'::regclass and tgname like 'metrics\_changed\_%' order by 1),
  array['metrics_changed_delete', 'metrics_changed_insert', 'metrics_changed_update'],
  'the statement triggers that record changed groups are on public.petri_observations');
select ok(not has_table_privilege('authenticated', 'analytics.mv_daily_metrics', 'select')
          and not has_table_privilege('anon', 'analytics.mv_daily_metrics', 'select'),
  'authenticated and anon have no SELECT on the view');

select ok((select prosecdef and 'search_path=""' = any (proconfig) from pg_proc
           where oid = 'public.get_daily_metrics(uuid, date, date, uuid)'::regprocedure),
  'get_daily_metrics() is SECURITY DEFINER with search_path empty');
select ok(has_function_privilege('authenticated', 'public.get_daily_metrics(uuid, date, date, uuid)', 'execute')
          and has_function_privilege('service_role', 'public.get_daily_metrics(uuid, date, date, uuid)', 'execute')
          and not has_function_privilege('anon', 'public.get_daily_metrics(uuid, date, date, uuid)', 'execute'),
  'get_daily_metrics() is executable by authenticated and service_role, not anon');
select ok(has_function_privilege('service_role', 'analytics.refresh_daily_metrics()', 'execute')
          and not has_function_privilege('authenticated', 'analytics.refresh_daily_metrics()', 'execute')
          and not has_function_privilege('anon', 'analytics.refresh_daily_metrics()', 'execute'),
  'refresh_daily_metrics() is executable by service_role only');

-- ---------------------------------------------------------------------------
-- Test data
-- ---------------------------------------------------------------------------
insert into public.companies (company_id, name) values
  ('ca000000-0000-4000-8000-000000000000', 'Company A'),
  ('cb000000-0000-4000-8000-000000000000', 'Company B');
insert into auth.users (id, aud, role, email) values
  ('aa000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'a1@a.test'),
  ('bb000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'b1@b.test'),
  ('cc000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'nobody@c.test');
insert into public.users (id, email, company_id) values
  ('aa000000-0000-4000-8000-000000000001', 'a1@a.test', 'ca000000-0000-4000-8000-000000000000'),
  ('bb000000-0000-4000-8000-000000000001', 'b1@b.test', 'cb000000-0000-4000-8000-000000000000'),
  ('cc000000-0000-4000-8000-000000000001', 'nobody@c.test', null);
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('a1000000-0000-4000-8000-000000000000', 'Program A', '2025-01-01', '2025-12-31', 'ca000000-0000-4000-8000-000000000000'),
  ('b1000000-0000-4000-8000-000000000000', 'Program B', '2025-01-01', '2025-12-31', 'cb000000-0000-4000-8000-000000000000');
insert into public.sites (site_id, program_id, name) values
  ('a2000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000000', 'Site A1'),
  ('a2000000-0000-4000-8000-000000000002', 'a1000000-0000-4000-8000-000000000000', 'Site A2'),
  ('b2000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000000', 'Site B1');
insert into public.submissions (submission_id, site_id, program_id) values
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000000'),
  ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000000');
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at) values
  -- A1 on 2025-03-01 (UTC): 10 and 20
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000000', 'A1a', 10, '2025-03-01 10:00+00'),
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000000', 'A1b', 20, '2025-03-01 12:00+00'),
  -- A1, the evening of 2025-03-01 in New York = 2025-03-02 04:30 UTC
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000001', 'a1000000-0000-4000-8000-000000000000', 'A1c', 30, '2025-03-01 23:30-05'),
  -- A2 on 2025-03-05
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000002', 'a1000000-0000-4000-8000-000000000000', 'A2a', 40, '2025-03-05 08:00+00'),
  -- B1 on 2025-03-01 and 2025-03-02
  ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000000', 'B1a', 99, '2025-03-01 09:00+00'),
  ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000000', 'B1b', 98, '2025-03-02 09:00+00');

-- ---------------------------------------------------------------------------
-- Refresh and contents
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"role":"service_role"}', true);
set local role service_role;
select is(analytics.refresh_daily_metrics(), 'changed',
  'service_role recomputes the changed groups of the populated metrics');
reset role;
select is((select count(*)::int from analytics.metrics_dirty), 0, 'no changed group is left after the refresh');

select results_eq(
  $$select observation_count, avg_growth_index, min_growth_index, max_growth_index,
           round(stddev_growth_index, 4), last_observation_at
    from analytics.mv_daily_metrics
    where site_id = 'a2000000-0000-4000-8000-000000000001' and day = '2025-03-01'$$,
  $$values (2::bigint, 15::numeric, 10::numeric, 20::numeric, 7.0711::numeric, '2025-03-01 12:00+00'::timestamptz)$$,
  'one row per site and day with count, avg, min, max, stddev and last observation');
select results_eq(
  $$select company_id, day, observation_count from analytics.mv_daily_metrics
    where site_id = 'a2000000-0000-4000-8000-000000000001' order by day$$,
  $$values ('ca000000-0000-4000-8000-000000000000'::uuid, '2025-03-01'::date, 2::bigint),
           ('ca000000-0000-4000-8000-000000000000'::uuid, '2025-03-02'::date, 1::bigint)$$,
  'days are UTC days: 23:30 in New York on March 1 counts on March 2; rows carry the company');

-- ---------------------------------------------------------------------------
-- The view is not readable by API roles
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select throws_ok($$select * from analytics.mv_daily_metrics$$, '42501', null,
  'authenticated cannot select from the view');
select throws_ok($$select analytics.refresh_daily_metrics()$$, '42501', null,
  'authenticated cannot refresh the view');
reset role;
select set_config('request.jwt.claims', '', true);
set local role anon;
select throws_ok($$select * from analytics.mv_daily_metrics$$, '42501', null,
  'anon cannot select from the view');
select throws_ok($$select * from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000')$$, '42501', null,
  'anon cannot call get_daily_metrics()');
reset role;

-- ---------------------------------------------------------------------------
-- get_daily_metrics() as A's user
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select results_eq(
  $$select site_id, day, observation_count from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000')$$,
  $$values ('a2000000-0000-4000-8000-000000000001'::uuid, '2025-03-01'::date, 2::bigint),
           ('a2000000-0000-4000-8000-000000000001'::uuid, '2025-03-02'::date, 1::bigint),
           ('a2000000-0000-4000-8000-000000000002'::uuid, '2025-03-05'::date, 1::bigint)$$,
  'A gets the daily rows of its program, ordered by day');
select is_empty($$select * from public.get_daily_metrics('b1000000-0000-4000-8000-000000000000')$$,
  'A gets nothing when passing B''s program id');
select is_empty($$select * from public.get_daily_metrics('b1000000-0000-4000-8000-000000000000', null, null,
                  'b2000000-0000-4000-8000-000000000001')$$,
  'A gets nothing when passing B''s program and site ids');
select results_eq(
  $$select site_id, day from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000',
                                                      p_site_id => 'a2000000-0000-4000-8000-000000000002')$$,
  $$values ('a2000000-0000-4000-8000-000000000002'::uuid, '2025-03-05'::date)$$,
  'p_site_id filters to one site');
select results_eq(
  $$select day from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000', '2025-03-02', '2025-03-05')$$,
  $$values ('2025-03-02'::date), ('2025-03-05'::date)$$,
  'the date range is inclusive at both ends');
select throws_like(
  $$select * from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000', '2025-03-05', '2025-03-01')$$,
  '%p_end_date 2025-03-01 is before p_start_date 2025-03-05%',
  'p_end_date before p_start_date is rejected with both values in the message');
select throws_ok(
  $$select * from public.get_daily_metrics(null)$$, '22004', null,
  'a NULL program id is rejected');

-- a forged role claim does not turn a user into service_role: the SET ROLE decides
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"service_role"}', true);
select is_empty($$select * from public.get_daily_metrics('b1000000-0000-4000-8000-000000000000')$$,
  'a "service_role" claim under the authenticated role still sees nothing of B');
reset role;

-- ---------------------------------------------------------------------------
-- Other callers
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"bb000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select is(
  (select array_agg(observation_count order by day) from public.get_daily_metrics('b1000000-0000-4000-8000-000000000000')),
  array[1, 1]::bigint[], 'B gets its own program''s rows');
select is_empty($$select * from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000')$$,
  'B gets nothing of A''s program');
reset role;

select set_config('request.jwt.claims', '{"sub":"cc000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select is_empty($$select * from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000')$$,
  'a user without a company gets nothing');
reset role;

select set_config('request.jwt.claims', '{"role":"service_role"}', true);
set local role service_role;
select is((select count(*)::int from public.get_daily_metrics('b1000000-0000-4000-8000-000000000000')), 2,
  'service_role gets every company''s rows');
reset role;

-- ---------------------------------------------------------------------------
-- A view that was never populated
-- ---------------------------------------------------------------------------
update analytics.metrics_state set populated_at = null;
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select throws_like($$select * from public.get_daily_metrics('a1000000-0000-4000-8000-000000000000')$$,
  '%has not been populated yet%', 'get_daily_metrics() explains that the view is not populated yet');
reset role;
delete from analytics.daily_metrics;
select is(analytics.refresh_daily_metrics(), 'full', 'refresh_daily_metrics() computes everything when never populated');
select is((select count(*)::int from analytics.mv_daily_metrics
           where company_id in ('ca000000-0000-4000-8000-000000000000', 'cb000000-0000-4000-8000-000000000000')),
  5, 'after the full computation the view holds the 5 site-days again');

select * from finish();
rollback;
