-- pg_cron as hosted Supabase has it: created by the superuser in pg_catalog in the database
-- named by cron.database_name; postgres manages jobs through cron.schedule/unschedule/alter_job
-- and may only SELECT cron.job (plus purge run history). Run as supabase_admin in `postgres`.
\set ON_ERROR_STOP on
create extension if not exists pg_cron with schema pg_catalog;
grant usage on schema cron to postgres with grant option;
grant select on cron.job to postgres;
grant select, delete on cron.job_run_details to postgres;
grant execute on all functions in schema cron to postgres;
