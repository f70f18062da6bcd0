-- pg_migsafe 0.5.0 -> 0.6.0 (ALTER EXTENSION pg_migsafe UPDATE TO '0.6.0').
-- See CHANGELOG.md: standing approvals (migsafe.grant_standing_approval, a phase of
-- kind 'standing' with migsafe.phase.older_than) let a maintenance role drop, detach
-- or move old partitions of one table in every transaction; a partition dropped under
-- an approval goes to the recycle bin (detached first, attached again by undrop); the
-- phases view and current_phase() show no expiry as NULL; DDL that cannot get its
-- table lock is retried within migsafe.lock_retry_budget, and migsafe.statements
-- and migsafe.metrics show the tries.
-- Rows are kept as they are (tests/integration/test_upgrade.py compares an updated
-- database with a fresh install, catalog by catalog).

ALTER TABLE migsafe.phase DROP CONSTRAINT phase_kind_check;
ALTER TABLE migsafe.phase ADD CONSTRAINT phase_kind_check
  CHECK (kind IN ('expand', 'contract', 'rollback', 'standing'));
ALTER TABLE migsafe.phase ADD COLUMN older_than interval;

CREATE OR REPLACE FUNCTION "_standing_entry"(
	"parent" TEXT, /* & str */
	"partitions" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'standing_entry_sql_wrapper';

CREATE OR REPLACE VIEW migsafe.phases AS
SELECT p.id, p.kind, p.name, migsafe._state(p) AS state, p.reason, p.objects,
       coalesce(p.for_role::text, 'own session (pid ' || p.session_pid || ')') AS scope,
       p.requested_by, p.requested_at,
       -- NULL: no expiry (a standing approval stored with 'infinity', which some drivers cannot read)
       NULLIF(p.valid_until, 'infinity') AS valid_until, p.skip_expand, p.keep_data,
       p.approved_by, p.approved_at, p.rejected_by, p.reject_reason, p.ended_at,
       (SELECT count(*) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements_approved,
       (SELECT array_agg(u.statement ORDER BY u.used_at) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements,
       p.deploy, p.older_than
  FROM migsafe.phase p;

CREATE OR REPLACE FUNCTION migsafe.current_phase()
RETURNS TABLE (id bigint, kind text, name text, objects text[], valid_until timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, NULLIF(p.valid_until, 'infinity') FROM migsafe.phase p
   WHERE migsafe._state(p) = 'active'
     AND ((p.for_role IS NULL AND p.session_pid = pg_backend_pid())
          OR p.for_role = session_user OR p.for_role = current_user)
   ORDER BY p.id
$$;

CREATE OR REPLACE FUNCTION migsafe.grant_standing_approval(
  name text,
  for_role name,
  parent text,
  older_than interval,
  partitions text DEFAULT NULL,
  reason text DEFAULT NULL,
  valid_for interval DEFAULT NULL,
  keep_data boolean DEFAULT true
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  caller name := session_user;
  parts text[];
  rel oid;
  ident text;
  pt record;
  key_type oid;
  entry text;
  p_id bigint;
  initial_state text := 'active';
BEGIN
  PERFORM migsafe._require_primary('migsafe.grant_standing_approval()');
  -- The caller's right first: nothing below runs for a caller who may not grant one.
  PERFORM migsafe._require_approver('grant a standing approval');
  IF name IS NULL OR btrim(name) = '' THEN
    RAISE EXCEPTION 'pg_migsafe: a standing approval needs a name' USING ERRCODE = '22023';
  END IF;
  IF for_role IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: a standing approval is for one role (for_role => ...)' USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = for_role) THEN
    RAISE EXCEPTION 'role "%" does not exist', for_role USING ERRCODE = '42704';
  END IF;
  IF older_than IS NULL OR older_than <= interval '0' THEN
    RAISE EXCEPTION 'pg_migsafe: older_than must be a positive interval, not %', coalesce(older_than::text, 'NULL')
      USING ERRCODE = '22023', HINT = 'The retention: e.g. older_than => ''30 days'' covers partitions whose range ended 30 days ago or earlier.';
  END IF;
  IF valid_for IS NOT NULL AND valid_for <= interval '0' THEN
    RAISE EXCEPTION 'pg_migsafe: valid_for must be positive (or NULL: no expiry), not %', valid_for USING ERRCODE = '22023';
  END IF;
  IF keep_data IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: keep_data must not be NULL' USING ERRCODE = '22004';
  END IF;
  -- The partitioned table, schema-qualified (no search_path here), as the catalog has it.
  BEGIN
    parts := parse_ident(coalesce(parent, ''));
  EXCEPTION WHEN invalid_parameter_value THEN
    parts := NULL;
  END;
  IF cardinality(parts) IS DISTINCT FROM 2 THEN
    RAISE EXCEPTION 'pg_migsafe: parent must be a schema-qualified table name (e.g. public.events), not "%"', coalesce(parent, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  SELECT c.oid, format('%I.%I', n.nspname, c.relname) INTO rel, ident
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = parts[1] AND c.relname = parts[2];
  IF rel IS NULL THEN
    RAISE EXCEPTION 'table "%" does not exist', parent USING ERRCODE = '42P01';
  END IF;
  SELECT p.partstrat, p.partnatts, p.partattrs[0] AS attnum INTO pt
    FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = rel;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pg_migsafe: % is not a partitioned table', ident USING ERRCODE = '42809';
  END IF;
  SELECT a.atttypid INTO key_type FROM pg_catalog.pg_attribute a WHERE a.attrelid = rel AND a.attnum = pt.attnum;
  IF pt.partstrat <> 'r' OR pt.partnatts <> 1 OR pt.attnum = 0
     OR key_type NOT IN ('pg_catalog.date'::pg_catalog.regtype, 'pg_catalog.timestamp'::pg_catalog.regtype,
                         'pg_catalog.timestamptz'::pg_catalog.regtype) THEN
    RAISE EXCEPTION 'pg_migsafe: % is not partitioned by range on one date or timestamp column', ident
      USING ERRCODE = '22023',
            DETAIL = format('Partition key: %s.', pg_catalog.pg_get_partkeydef(rel)),
            HINT = 'A standing approval covers partitions by where their range ends in time.';
  END IF;
  entry := migsafe._standing_entry(ident, partitions);
  IF current_setting('migsafe.require_approval')::boolean THEN
    initial_state := 'pending';
  END IF;
  INSERT INTO migsafe.phase (kind, name, reason, objects, for_role, requested_by, valid_until,
                             skip_expand, keep_data, state, deploy, older_than)
  VALUES ('standing', name, reason, ARRAY[entry], for_role, caller,
          CASE WHEN valid_for IS NULL THEN 'infinity'::timestamptz ELSE clock_timestamp() + valid_for END,
          true, keep_data, initial_state, true, older_than)
  RETURNING id INTO p_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
  VALUES (p_id, 'requested', caller, reason);
  IF initial_state = 'active' THEN
    INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
    VALUES (p_id, 'opened', caller, format('standing: %s, older than %s', entry, older_than));
  END IF;
  RETURN p_id;
END
$$;

REVOKE ALL ON FUNCTION migsafe.grant_standing_approval(text, name, text, interval, text, text, interval, boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe.grant_standing_approval(text, name, text, interval, text, text, interval, boolean)
  TO migsafe_admin, migsafe_approver;

REVOKE ALL ON FUNCTION migsafe._standing_entry(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION migsafe._not_recyclable(rel oid, cascade boolean) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c pg_class;
  other text;
  empty boolean;
BEGIN
  SELECT * INTO c FROM pg_catalog.pg_class WHERE oid = rel;
  IF NOT FOUND THEN
    RETURN 'it does not exist';
  ELSIF c.relkind <> 'r' THEN
    RETURN 'it is not an ordinary table';
  ELSIF c.relpersistence = 't' THEN
    RETURN 'it is a temporary table';
  ELSIF c.relispartition AND EXISTS (
          SELECT 1 FROM pg_catalog.pg_partition_ancestors(rel) a
            JOIN pg_catalog.pg_constraint k ON k.confrelid = a.relid AND k.contype = 'f') THEN
    -- A partition is detached first (and attached again by undrop); with foreign keys
    -- pointing at its table, detaching would check or fail where the DROP does not.
    RETURN 'foreign keys reference its partitioned table';
  ELSIF (NOT c.relispartition AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = rel))
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = rel) THEN
    RETURN 'it takes part in inheritance';
  ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_depend WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND objid = rel AND deptype = 'e') THEN
    RETURN 'it belongs to an extension';
  END IF;
  -- A plain table (checked above): reading it runs no code of the user's.
  EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I.%I)', (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = c.relnamespace), c.relname)
    INTO empty;
  IF empty THEN
    RETURN 'it is empty: there is nothing to keep';
  END IF;
  SELECT string_agg(d.name, ', ') INTO other FROM migsafe._dependents(rel) d
   WHERE d.kind = 'other' OR NOT cascade;
  IF other IS NOT NULL THEN
    RETURN CASE WHEN cascade THEN 'other objects depend on it: ' ELSE 'objects depend on it: ' END || other;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._recycle_table(rel oid, cascade boolean, phase_id bigint, statement text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' AS $$
DECLARE
  c record;
  new_id bigint;
  stored name;
  deps jsonb := '[]';
  ren jsonb := '{}';
  d record;
  o record;
  n int := 0;
  why text := migsafe._not_recyclable(rel, cascade);
BEGIN
  IF why IS NOT NULL THEN
    RAISE EXCEPTION 'pg_migsafe: % cannot go to the recycle bin: %', rel::regclass, why USING ERRCODE = '55000';
  END IF;
  SELECT n_.nspname, cl.relname INTO c FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n_ ON n_.oid = cl.relnamespace WHERE cl.oid = rel;
  INSERT INTO migsafe.recycle (kind, schema_name, table_name, stored_as, phase_id, statement, row_count, bytes)
  VALUES ('table', c.nspname, c.relname, '-', phase_id, statement,
          (SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint END FROM pg_catalog.pg_class WHERE oid = rel), pg_total_relation_size(rel))
  RETURNING id INTO new_id;
  stored := 'r' || new_id || '_' || left(c.relname, 40);
  -- Dependents first (CASCADE only): remember them, then drop them.
  FOR d IN SELECT * FROM migsafe._dependents(rel) ORDER BY level DESC, name LOOP
    deps := deps || jsonb_strip_nulls(jsonb_build_object('kind', d.kind, 'name', d.name, 'sql', d.sql, 'level', d.level,
                                       'owner', d.owner, 'acl', to_jsonb(d.acl), 'table', d.on_table));
    IF d.kind = 'foreign key' THEN
      PERFORM migsafe._internal(format('ALTER TABLE %I.%I DROP CONSTRAINT %I',
        (SELECT n_.nspname FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
           JOIN pg_catalog.pg_namespace n_ ON n_.oid = t.relnamespace WHERE k.oid = d.oid),
        (SELECT t.relname FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON t.oid = k.conrelid WHERE k.oid = d.oid),
        (SELECT conname FROM pg_catalog.pg_constraint WHERE oid = d.oid)));
    ELSE
      PERFORM migsafe._internal(format('DROP %s IF EXISTS %s CASCADE', upper(d.kind), d.name));
    END IF;
  END LOOP;
  -- A partition leaves its table first, as the DROP would take it out (under the
  -- ACCESS EXCLUSIVE lock on the partitioned table that DROP takes too); undrop
  -- attaches it again with the same bounds, as the partitioned table's owner.
  FOR o IN SELECT p.oid AS parent, format('%I.%I', pn.nspname, p.relname) AS parent_name,
                  pg_catalog.pg_get_userbyid(p.relowner) AS owner,
                  pg_catalog.pg_get_expr(cl.relpartbound, cl.oid) AS bound
             FROM pg_catalog.pg_class cl
             JOIN pg_catalog.pg_inherits i ON i.inhrelid = cl.oid
             JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
             JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
            WHERE cl.oid = rel AND cl.relispartition LOOP
    deps := deps || jsonb_build_object('kind', 'partition of', 'name', o.parent_name, 'level', 0, 'owner', o.owner,
                                       'sql', format('ALTER TABLE %s ATTACH PARTITION %I.%I %s', o.parent_name, c.nspname, c.relname, o.bound));
    PERFORM migsafe._internal(format('ALTER TABLE %s DETACH PARTITION %I.%I', o.parent_name, c.nspname, c.relname));
  END LOOP;
  -- Its own foreign keys would keep constraining other tables: they go, and come back.
  FOR o IN SELECT k.conname, pg_get_constraintdef(k.oid) AS def FROM pg_catalog.pg_constraint k
            WHERE k.conrelid = rel AND k.contype = 'f' LOOP
    deps := deps || jsonb_build_object('kind', 'own foreign key', 'name', o.conname, 'sql', o.def, 'level', 0);
    PERFORM migsafe._internal(format('ALTER TABLE %I.%I DROP CONSTRAINT %I', c.nspname, c.relname, o.conname));
  END LOOP;
  -- Indexes and owned sequences travel with the table: give them unique names.
  FOR o IN SELECT cl.oid, cl.relname, cl.relkind FROM pg_catalog.pg_class cl
            WHERE cl.oid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = rel
                             UNION SELECT objid FROM pg_catalog.pg_depend WHERE refobjid = rel
                                      AND classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                      AND refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                      AND deptype IN ('a', 'i') AND refobjsubid > 0)
              AND cl.relkind IN ('i', 'S')
            ORDER BY cl.relname LOOP
    n := n + 1;
    ren := ren || jsonb_build_object('r' || new_id || '_' || n, o.relname);
    PERFORM migsafe._internal(format('ALTER %s %I.%I RENAME TO %I',
      CASE o.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END, c.nspname, o.relname, 'r' || new_id || '_' || n));
  END LOOP;
  PERFORM migsafe._internal(format('ALTER TABLE %I.%I RENAME TO %I', c.nspname, c.relname, stored));
  PERFORM migsafe._internal(format('ALTER TABLE %I.%I SET SCHEMA migsafe_recycle', c.nspname, stored));
  UPDATE migsafe.recycle SET stored_as = stored, renamed = ren, dependents = deps WHERE id = new_id;
  RETURN new_id;
END
$$;

-- Lock retries (migsafe.lock_retry_budget): the statements view shows each try,
-- the metrics count them.
CREATE OR REPLACE VIEW migsafe.statements AS
SELECT l.seq,
       r->>'migration'                          AS migration,
       (r->>'n')::int                           AS statement_no,
       (r->>'started_at')::timestamptz          AS started_at,
       (r->>'duration_us')::bigint              AS duration_us,
       (r->>'lock_wait_us')::bigint             AS lock_wait_us,
       r->'session'->>'database'                AS database,
       r->'session'->>'session_user'            AS session_user,
       r->'session'->>'current_user'            AS current_user,
       r->'session'->>'application_name'        AS application_name,
       (r->'session'->>'client_addr')::inet     AS client_addr,
       (r->'session'->>'pid')::int              AS pid,
       (r->>'xid')::xid8                        AS xid,
       r->>'command_tag'                        AS command_tag,
       r->>'statement'                          AS statement,
       (r->>'statement_truncated')::boolean     AS statement_truncated,
       (r->>'statement_bytes')::int             AS statement_bytes,
       (r->>'nesting')::int                     AS nesting,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(r->'objects', '[]'))) AS objects,
       ARRAY(SELECT f->>'rule' FROM jsonb_array_elements(coalesce(r->'findings', '[]')) f) AS rule_ids,
       coalesce(r->'findings', '[]')            AS findings,
       r->>'decision'                           AS decision,
       (r->>'phase_id')::bigint                 AS phase_id,
       r->>'outcome'                            AS outcome,
       r->>'sqlstate'                           AS sqlstate,
       r->>'error'                              AS error,
       (r->>'lock_timeout_ms')::int             AS lock_timeout_applied_ms,
       coalesce(r->'blockers', '[]')            AS blockers,
       coalesce((r->>'lock_attempts_total')::int, 0) AS lock_attempts,
       coalesce(r->'lock_attempts', '[]')       AS lock_attempt_log,
       coalesce((r->>'lock_retry_exhausted')::boolean, false) AS lock_retry_exhausted
  FROM migsafe.audit_log l, LATERAL (SELECT l.record::jsonb AS r) x
 WHERE l.kind = 'statement';

CREATE OR REPLACE VIEW migsafe.metrics AS
SELECT 'migsafe_statements_total' AS metric, 'decision=' || decision || ',outcome=' || outcome AS labels,
       count(*)::float8 AS value
  FROM migsafe.statements GROUP BY decision, outcome
UNION ALL
SELECT 'migsafe_migrations_total', 'outcome=' || outcome, count(*)::float8
  FROM migsafe.migrations GROUP BY outcome
UNION ALL
SELECT m.metric, '', m.value FROM
  (SELECT coalesce(sum(greatest(lock_attempts - 1, 0)), 0)::float8 AS retries,
          count(*) FILTER (WHERE lock_retry_exhausted)::float8 AS exhausted,
          coalesce(sum((SELECT sum(jsonb_array_length(coalesce(a->'ended', '[]')))
                          FROM jsonb_array_elements(lock_attempt_log) a)), 0)::float8 AS ended
     FROM migsafe.statements WHERE lock_attempts > 0) s,
  LATERAL (VALUES ('migsafe_lock_retries_total', s.retries),
                  ('migsafe_lock_retry_budget_exhausted_total', s.exhausted),
                  ('migsafe_lock_blockers_ended_total', s.ended)) AS m(metric, value)
UNION ALL
SELECT m.metric, '', m.value FROM migsafe._queue_stats() q,
  LATERAL (VALUES ('migsafe_queue_records', q.queue_records::float8),
                  ('migsafe_queue_bytes', q.queue_bytes::float8),
                  ('migsafe_queued_total', q.queued::float8),
                  ('migsafe_written_total', q.written::float8),
                  ('migsafe_dropped_total', q.fallback::float8),
                  ('migsafe_spilled_total', migsafe._queue_spilled()::float8),
                  ('migsafe_writers', q.writers::float8),
                  ('migsafe_last_migration_duration_seconds',
                   coalesce((SELECT duration_us FROM migsafe.migrations WHERE ended_at IS NOT NULL
                              ORDER BY ended_at DESC LIMIT 1), q.last_migration_duration_us) / 1e6)) AS m(metric, value);

-- The upgrade itself goes into the audit log when this transaction commits.
SELECT migsafe._note_upgrade('0.5.0', '0.6.0');
