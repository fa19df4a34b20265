-- Maintenance steps bounded by time as well as by locks (ddl_budget_exhausted and maintain_step, supabase/schemas/*_lock_budget.sql and *_maintenance.sql).
-- The run over several committed steps is in test/partitions/maintenance.test.ts.
-- Covers: ddl_budget_exhausted() is true once maintain_step's deadline has passed and remembers
-- it (budget_spent); without a deadline only the lock budget counts; maintain_step leaves no
-- deadline behind for the rest of the caller's transaction; step_seconds is bounded; premake_site
-- steps over existing periods without spending the budget (a spent budget still completes a site
-- whose periods exist, and stops before the first one to create);
-- refresh_would_time_out() is null without a statement_timeout, without an earlier refresh, or
-- when the last refresh fits in what is left, and otherwise says how long the last one took, what
-- is left and what to do; a refresh that would not fit is not started: logged as an error with
-- that message, which health() reports.
begin;
select plan(16);

-- the step deadline
select is(partition_mgmt.ddl_budget_exhausted(), false, 'no deadline, few locks: not exhausted');
select set_config('partition_mgmt.step_deadline', (clock_timestamp() + interval '1 hour')::text, true);
select is(partition_mgmt.ddl_budget_exhausted(), false, 'a deadline ahead: not exhausted');
select set_config('partition_mgmt.step_deadline', (clock_timestamp() - interval '1 second')::text, true);
select is(partition_mgmt.ddl_budget_exhausted(), true, 'a deadline passed: exhausted, as after a spent lock budget');
select is(partition_mgmt.budget_spent(), true, 'and remembered for the callers up the stack');
select set_config('partition_mgmt.step_deadline', '', true);
select set_config('partition_mgmt.budget_exhausted', '', true);

-- premake over existing periods (a literal tree: the site's periods are made when it is inserted)
update partition_mgmt.managed_tables set tree_shape = 'literal', premake_months = 1;
insert into public.companies (company_id, name) values ('c1100000-0000-4000-8000-000000000001', 'Budget Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('11a00001-0000-4000-8000-000000000001', 'Budget program', (date_trunc('month', now()) - interval '5 months')::date,
        (now() + interval '1 year')::date, 'c1100000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name) values ('11b00001-0000-4000-8000-000000000001', '11a00001-0000-4000-8000-000000000001', 'Budget site');
select cmp_ok((select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and level = 'period'
               and site_id = '11b00001-0000-4000-8000-000000000001'), '>=', 6, 'the site has its periods from the program''s start');
select set_config('partition_mgmt.step_deadline', (clock_timestamp() - interval '1 second')::text, true);
select is(partition_mgmt.premake_site('petri', '11a00001-0000-4000-8000-000000000001', '11b00001-0000-4000-8000-000000000001',
            date_trunc('month', now()) - interval '5 months', date_trunc('month', now()) + interval '1 month'), true,
  'a spent budget: the existing periods are stepped over, the site is complete');
select is(partition_mgmt.premake_site('petri', '11a00001-0000-4000-8000-000000000001', '11b00001-0000-4000-8000-000000000001',
            date_trunc('month', now()) - interval '5 months', date_trunc('month', now()) + interval '6 months'), false,
  'a spent budget: it stops before the first period to create');
select is((select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and level = 'period'
           and site_id = '11b00001-0000-4000-8000-000000000001' and range_start >= date_trunc('month', now()) + interval '2 months'), 0,
  'and creates nothing');
select set_config('partition_mgmt.step_deadline', '', true);
select set_config('partition_mgmt.budget_exhausted', '', true);

select partition_mgmt.maintain_step(gen_random_uuid(), 'petri', 'analyze');
select is(current_setting('partition_mgmt.step_deadline', true), '', 'maintain_step leaves no deadline behind it');
select throws_ok($$update partition_mgmt.maintenance_settings set step_seconds = 0$$, '23514', null, 'step_seconds below 1 s is refused');

-- the refresh against statement_timeout
delete from partition_mgmt.maintenance_log where action = 'refresh_metrics';
set local statement_timeout = '2s';
select is(partition_mgmt.refresh_would_time_out(), null, 'no earlier refresh: it may start');
insert into partition_mgmt.maintenance_log (run_id, started_at, finished_at, action, status)
values (gen_random_uuid(), now() - interval '1 day', now() - interval '1 day' + interval '0.5 s', 'refresh_metrics', 'ok');
select is(partition_mgmt.refresh_would_time_out(), null, 'the last refresh took 0.5 s, about 2 s are left: it may start');
insert into partition_mgmt.maintenance_log (run_id, started_at, finished_at, action, status)
values (gen_random_uuid(), now() - interval '1 hour', now() - interval '1 hour' + interval '95 s', 'refresh_metrics', 'ok');
select matches(partition_mgmt.refresh_would_time_out(),
  '^analytics\.mv_daily_metrics was not refreshed: the last refresh took 95\.0 s and [0-9.]+ s are left before statement_timeout \(2s\) ends this run\. Refresh it with select analytics\.refresh_daily_metrics\(\);',
  'the last refresh took 95 s, about 2 s are left: not started, with both figures and what to do');
select is(partition_mgmt.maintain_step(gen_random_uuid(), null, 'refresh_metrics'), false, 'the refresh step ends');
select results_eq($$select status, error ~ '^analytics\.mv_daily_metrics was not refreshed' from partition_mgmt.maintenance_log
                    where action = 'refresh_metrics' order by id desc limit 1$$,
  $$values ('error'::text, true)$$, 'logged as an error with the reason');
set local statement_timeout = 0;
select ok(exists (select from partition_mgmt.health() where finding = 'maintenance action failed' and detail ~ 'refresh_metrics .*was not refreshed'),
  'health() reports it');

select * from finish();
rollback;
