-- =============================================================================
-- Errors of the app's own calls after the swap: a row without a partition key (issue 12).
--
-- The partitioned table routes a row by its keys before it checks any constraint, so a row that
-- arrives without program_id, site_id or created_at lands in a DEFAULT partition and fails there,
-- naming a table the app has never heard of:
--   null value in column "program_id" of relation "gas_default" violates not-null constraint
-- (gasifier_observations.program_id was even nullable before the swap, so an app that still
-- leaves it out starts failing here). A trigger on the partitioned parent (cloned onto every leaf,
-- and onto every leaf attached later) fails such a row first, with the same SQLSTATE (23502) and
-- wording, but naming the table the app wrote, the key, and a HINT that says what to send. Its
-- WHEN clause costs a row with all its keys four null tests and no function call.
--
-- It fires before set_company_id_from_program (triggers of one kind fire in name order), whose
-- own message for a row with neither program nor site would name the leaf too.
--
-- A CHECK violation keeps PostgreSQL's message, which names the leaf that checked it, with its
-- SQLSTATE (23514) and the constraint's name unchanged: repeating every CHECK in a trigger would
-- cost every write a second evaluation of each constraint to reword one error.
-- =============================================================================

set lock_timeout = '5s';

-- -----------------------------------------------------------------------------
-- The trigger function, generated per managed table with its column names (a row trigger must
-- read NEW's fields by name).
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.install_require_keys(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_fn text := format('%s_require_keys', c.table_key);
  v_checks text := '';
  v_col text;
  v_default text;
  v_hint text;
begin
  foreach v_col in array array[c.id_column, c.program_column, c.site_column, c.time_column] loop
    select pg_catalog.pg_get_expr(d.adbin, d.adrelid) into v_default
    from pg_catalog.pg_attrdef d
    join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
    where d.adrelid = v_parent and a.attname = v_col;
    v_hint := case
      when v_col = c.program_column then
        format('format(%L, new.%I)',
          format('Send %s with the row: the program of its site (select %s from %s.sites where %s = %%L).',
                 c.program_column, 'program_id', c.source_schema, c.site_column), c.site_column)
      when v_default is not null then
        format('%L', format('Leave %s out of the row to take its default (%s), or send a value.', v_col, v_default))
      else
        format('%L', format('Send %s with the row.', v_col))
    end;
    v_checks := v_checks || format($c$
      if new.%1$I is null then
        raise exception 'null value in column "%1$s" of relation "%2$s" violates not-null constraint'
          using errcode = 'not_null_violation', schema = %3$L, table = %2$L, column = %1$L,
                detail = %4$L,
                hint = %5$s;
      end if;$c$,
      v_col, c.source_table, c.source_schema,
      case when v_col = c.id_column
        then format('%s is part of the primary key of %I.%I (%s, %s, %s, %s).',
                    v_col, c.source_schema, c.source_table, c.id_column, c.program_column, c.site_column, c.time_column)
        else format('%s is a partition key of %I.%I (partitioned by %s, %s, %s): a row without it belongs to no partition.',
                    v_col, c.source_schema, c.source_table, c.program_column, c.site_column, c.time_column)
      end,
      v_hint);
  end loop;
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql set search_path = ''
    as $body$
    begin%2$s
      return new;
    end
    $body$$f$, v_fn, v_checks);
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = v_parent and t.tgname = 'partition_mgmt_require_keys') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_require_keys before insert or update of %1$I, %2$I, %3$I, %4$I on %5$s for each row
       when (new.%1$I is null or new.%2$I is null or new.%3$I is null or new.%4$I is null)
       execute function partition_mgmt.%6$I()',
      c.id_column, c.program_column, c.site_column, c.time_column, v_parent, v_fn));
  end if;
end
$install$;
revoke all on function partition_mgmt.install_require_keys(text) from public;
comment on function partition_mgmt.install_require_keys(text) is
  'Puts the partition_mgmt_require_keys trigger on a managed table''s partitioned parent: a row without a partition key fails with 23502 naming the table the app wrote (not the DEFAULT leaf it was routed to), the key and what to send. Idempotent; run it for a table registered after this migration, once create_partitioned_table made its parent.';

select partition_mgmt.install_require_keys(m.table_key)
from partition_mgmt.managed_tables m
where m.parent is not null
order by m.table_key;
