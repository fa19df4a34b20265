-- Baseline app schema (migration 20250101000000): the legacy tables the plan assumes.
-- Covers: tables present, observation tables are ordinary (unpartitioned) tables keyed by
-- observation_id, gasifier program_id nullable as in the real app, users linked to auth.users.
begin;
select plan(12);

select has_table('public', 'companies', 'companies exists');
select has_table('public', 'users', 'users exists');
select has_table('public', 'pilot_programs', 'pilot_programs exists');
select has_table('public', 'sites', 'sites exists');
select has_table('public', 'submissions', 'submissions exists');
select has_table('public', 'petri_observations', 'petri_observations exists');
select has_table('public', 'gasifier_observations', 'gasifier_observations exists');
select is((select relkind::text from pg_class where oid = 'public.petri_observations'::regclass), 'r',
  'petri_observations starts as an ordinary table');
select col_is_pk('public', 'petri_observations', 'observation_id', 'petri observation_id is the primary key');
select col_is_null('public', 'gasifier_observations', 'program_id', 'gasifier program_id is nullable');
select col_not_null('public', 'sites', 'program_id', 'sites.program_id is NOT NULL');
select fk_ok('public', 'users', 'id', 'auth', 'users', 'id');

select * from finish();
rollback;
