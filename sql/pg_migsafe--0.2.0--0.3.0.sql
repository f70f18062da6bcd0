-- pg_migsafe 0.2.0 -> 0.3.0 (ALTER EXTENSION pg_migsafe UPDATE TO '0.3.0').
-- The audit log loses nothing and the extension leaves no trace in user sessions: see
-- CHANGELOG.md. Tables and their rows are kept as they are; functions, views and
-- privileges become exactly those of a fresh 0.3.0 install
-- (tests/integration/test_upgrade.py compares the two, catalog by catalog).

-- Functions that are gone.
DROP FUNCTION migsafe._snapshot_part(bigint, jsonb);

-- Everything else as a fresh 0.3.0 install has it (drafted from pg_migsafe--0.3.0.sql
-- by tests/tools/upgrade_draft.py).

CREATE OR REPLACE FUNCTION "_check_objects"(
	"objects" TEXT[] /* Vec < Option < String > > */
) RETURNS TEXT[] /* Vec < String > */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_objects_wrapper';

REVOKE ALL ON migsafe.phase, migsafe.phase_use, migsafe.phase_event, migsafe.backup FROM PUBLIC;

CREATE OR REPLACE FUNCTION migsafe._state(p migsafe.phase) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN p.state IN ('active', 'pending') AND p.valid_until <= pg_catalog.clock_timestamp() THEN 'expired'
    WHEN p.state = 'active' AND p.for_role IS NULL AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_stat_activity a
            WHERE a.pid = p.session_pid AND a.backend_start = p.session_start) THEN 'ended'
    ELSE p.state END
$$;

CREATE OR REPLACE VIEW migsafe.phases AS
SELECT p.id, p.kind, p.name, migsafe._state(p) AS state, p.reason, p.objects,
       coalesce(p.for_role::text, 'own session (pid ' || p.session_pid || ')') AS scope,
       p.requested_by, p.requested_at, p.valid_until, p.skip_expand, p.keep_data,
       p.approved_by, p.approved_at, p.rejected_by, p.reject_reason, p.ended_at,
       (SELECT count(*) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements_approved,
       (SELECT array_agg(u.statement ORDER BY u.used_at) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements
  FROM migsafe.phase p;

GRANT SELECT ON migsafe.phases TO migsafe_admin, migsafe_approver, migsafe_auditor;

GRANT SELECT ON migsafe.phase, migsafe.phase_use, migsafe.phase_event, migsafe.backup TO migsafe_auditor;

CREATE OR REPLACE FUNCTION migsafe._holds_role(who name, target name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = $1) THEN false
    WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = $1) THEN true
    WHEN NOT pg_catalog.current_setting('migsafe.approvers_granted_by_superuser')::boolean
      THEN pg_catalog.pg_has_role($1, $2, 'MEMBER')
    ELSE EXISTS (
      WITH RECURSIVE held(roleid) AS (
        SELECT m.roleid FROM pg_catalog.pg_auth_members m
          JOIN pg_catalog.pg_roles g ON g.oid = m.grantor AND g.rolsuper
         WHERE m.member = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1)
        UNION
        SELECT m.roleid FROM held h
          JOIN pg_catalog.pg_auth_members m ON m.member = h.roleid
          JOIN pg_catalog.pg_roles g ON g.oid = m.grantor AND g.rolsuper
      )
      SELECT 1 FROM held h JOIN pg_catalog.pg_roles r ON r.oid = h.roleid WHERE r.rolname = $2)
  END
$$;

CREATE OR REPLACE FUNCTION migsafe._require_primary(what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.pg_is_in_recovery() THEN
    RAISE EXCEPTION 'pg_migsafe: % writes, and this server is a standby (in recovery): run it on the primary', what
      USING ERRCODE = '25006',
            HINT = 'Phases, snapshots, backups, the recycle bin and rollbacks live on the primary and replicate to the standbys.';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._can_approve(r name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT migsafe._holds_role(r, 'migsafe_approver') OR migsafe._holds_role(r, 'migsafe_admin')
$$;

CREATE OR REPLACE FUNCTION migsafe._require_approver(action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT migsafe._can_approve(session_user) THEN
    RAISE EXCEPTION 'role "%" may not %', session_user, action
      USING ERRCODE = '42501',
            HINT = CASE WHEN pg_catalog.current_setting('migsafe.approvers_granted_by_superuser')::boolean
                        THEN 'A superuser or a member of migsafe_approver or migsafe_admin (granted by a superuser) may.'
                        ELSE 'A superuser or a member of migsafe_approver or migsafe_admin may.' END;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._backup_ok(window_ interval) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  last_backup timestamptz := (SELECT max(recorded_at) FROM migsafe.backup);
  last_archived timestamptz := (SELECT last_archived_time FROM pg_catalog.pg_stat_archiver);
BEGIN
  IF window_ IS NULL OR window_ <= interval '0' THEN
    RETURN NULL;
  END IF;
  IF last_backup >= clock_timestamp() - window_ OR last_archived >= clock_timestamp() - window_ THEN
    RETURN NULL;
  END IF;
  RETURN format('migsafe.require_backup_within = %s: the last recorded backup is %s and the last archived WAL is %s; '
                'record a backup with migsafe.record_backup(label, location) first',
                current_setting('migsafe.require_backup_within'),
                coalesce(last_backup::text, 'none'), coalesce(last_archived::text, 'none'));
END
$$;

CREATE OR REPLACE FUNCTION migsafe.begin_phase(
  kind text,
  name text,
  reason text DEFAULT NULL,
  objects text[] DEFAULT '{}',
  for_role name DEFAULT NULL,
  valid_for interval DEFAULT '1 hour',
  skip_expand boolean DEFAULT false,
  keep_data boolean DEFAULT true
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  caller name := session_user;
  p_id bigint;
  norm text[];
  min_age interval := current_setting('migsafe.min_expand_age')::interval;
  expand_end timestamptz;
  backup_problem text;
  initial_state text := 'active';
BEGIN
  PERFORM migsafe._require_primary('migsafe.begin_phase()');
  IF kind IS NULL OR kind NOT IN ('expand', 'contract') THEN
    RAISE EXCEPTION 'unknown phase kind "%"', coalesce(kind, 'NULL')
      USING ERRCODE = '22023',
            HINT = CASE WHEN kind = 'rollback' THEN 'A rollback is requested with migsafe.request_rollback(snapshot).'
                        ELSE 'The kind is ''expand'' or ''contract''.' END;
  END IF;
  -- The caller's rights first: nothing below runs for a caller who may not open it.
  IF kind = 'contract' THEN
    PERFORM migsafe._require_approver('open a contract phase');
  END IF;
  IF for_role IS NOT NULL THEN
    -- A phase for a role speaks for that role (an expand phase holds back its
    -- approved contract statements): approvers, or roles acting as it, open one.
    IF NOT migsafe._can_approve(caller) AND NOT EXISTS (
         SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = for_role AND pg_catalog.pg_has_role(caller, r.oid, 'USAGE')) THEN
      RAISE EXCEPTION 'role "%" may not open a phase for role "%"', caller, for_role
        USING ERRCODE = '42501', HINT = 'An approver, or a role that has the privileges of that role, may.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = for_role) THEN
      RAISE EXCEPTION 'role "%" does not exist', for_role USING ERRCODE = '42704';
    END IF;
  END IF;
  IF name IS NULL OR btrim(name) = '' THEN
    RAISE EXCEPTION 'a phase needs a name (the migration it belongs to)' USING ERRCODE = '22023';
  END IF;
  IF valid_for IS NULL OR valid_for <= interval '0' OR valid_for > interval '7 days' THEN
    RAISE EXCEPTION 'valid_for must be between 0 and 7 days, not %', coalesce(valid_for::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF kind = 'expand' AND cardinality(coalesce(objects, '{}')) > 0 THEN
    RAISE EXCEPTION 'an expand phase approves nothing, so it takes no objects' USING ERRCODE = '22023';
  END IF;
  norm := migsafe._check_objects(coalesce(objects, '{}'));
  IF kind = 'contract' THEN
    IF cardinality(norm) = 0 THEN
      RAISE EXCEPTION 'a contract phase must list the objects it approves (objects => ARRAY[...])'
        USING ERRCODE = '22023';
    END IF;
    IF NOT skip_expand THEN
      SELECT max(coalesce(p.ended_at, p.valid_until)) INTO expand_end
        FROM migsafe.phase p
       WHERE p.kind = 'expand' AND p.name = begin_phase.name
         AND migsafe._state(p) IN ('ended', 'expired', 'used');
      IF expand_end IS NULL THEN
        RAISE EXCEPTION 'contract phase "%" has no ended expand phase of the same name', name
          USING ERRCODE = '55000',
                HINT = 'Run the expand part first (migsafe.begin_phase(''expand'', ...) ... migsafe.end_phase()), or pass skip_expand => true for a contract without an expand part.';
      END IF;
      IF expand_end > clock_timestamp() - min_age THEN
        RAISE EXCEPTION 'the expand phase of "%" ended at %, less than migsafe.min_expand_age (%) ago', name, expand_end, min_age
          USING ERRCODE = '55000';
      END IF;
    END IF;
    backup_problem := migsafe._backup_ok(current_setting('migsafe.require_backup_within')::interval);
    IF backup_problem IS NOT NULL THEN
      RAISE EXCEPTION 'no recent backup: %', backup_problem USING ERRCODE = '55000';
    END IF;
    IF current_setting('migsafe.require_approval')::boolean THEN
      initial_state := 'pending';
    END IF;
  END IF;

  INSERT INTO migsafe.phase (kind, name, reason, objects, for_role, session_pid, session_start,
                             requested_by, valid_until, skip_expand, keep_data, state)
  SELECT kind, name, reason, norm, for_role,
         CASE WHEN for_role IS NULL THEN pg_backend_pid() END,
         CASE WHEN for_role IS NULL THEN (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()) END,
         caller, clock_timestamp() + valid_for, skip_expand, coalesce(keep_data, true), initial_state
  RETURNING id INTO p_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
  VALUES (p_id, 'requested', caller, reason);
  IF initial_state = 'active' THEN
    INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
    VALUES (p_id, 'opened', caller, CASE WHEN skip_expand THEN 'skip_expand' END);
  END IF;
  RETURN p_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.end_phase(phase_id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p migsafe.phase;
BEGIN
  PERFORM migsafe._require_primary('migsafe.end_phase()');
  IF phase_id IS NULL THEN
    SELECT * INTO p FROM migsafe.phase x
     WHERE x.for_role IS NULL AND x.session_pid = pg_backend_pid() AND migsafe._state(x) = 'active'
     ORDER BY x.id DESC LIMIT 1;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'this session has no active phase' USING ERRCODE = '55000';
    END IF;
  ELSE
    SELECT * INTO p FROM migsafe.phase x WHERE x.id = phase_id;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'phase % does not exist', phase_id USING ERRCODE = '22023';
    END IF;
    IF migsafe._state(p) NOT IN ('active', 'pending') THEN
      RAISE EXCEPTION 'phase % is %, not active', phase_id, migsafe._state(p) USING ERRCODE = '55000';
    END IF;
    IF p.requested_by <> session_user AND NOT migsafe._can_approve(session_user) THEN
      RAISE EXCEPTION 'only the requester or an approver can end phase %', phase_id USING ERRCODE = '42501';
    END IF;
  END IF;
  UPDATE migsafe.phase SET state = 'ended', ended_at = clock_timestamp() WHERE id = p.id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role) VALUES (p.id, 'ended', session_user);
  RETURN p.id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._pending_for_decision(phase_id bigint) RETURNS migsafe.phase
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p migsafe.phase;
BEGIN
  IF NOT migsafe._holds_role(session_user, 'migsafe_approver') THEN
    RAISE EXCEPTION 'role "%" is not a member of migsafe_approver', session_user
      USING ERRCODE = '42501',
            HINT = CASE WHEN current_setting('migsafe.approvers_granted_by_superuser')::boolean
                        THEN 'Only memberships granted by a superuser count (migsafe.approvers_granted_by_superuser).' END;
  END IF;
  SELECT * INTO p FROM migsafe.phase x WHERE x.id = phase_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'phase % does not exist', coalesce(phase_id::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF migsafe._state(p) <> 'pending' THEN
    RAISE EXCEPTION 'phase % is %, not pending', phase_id, migsafe._state(p) USING ERRCODE = '55000';
  END IF;
  RETURN p;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.approve(phase_id bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p migsafe.phase := migsafe._pending_for_decision(phase_id);
  backup_problem text;
BEGIN
  PERFORM migsafe._require_primary('migsafe.approve()');
  IF p.requested_by = session_user THEN
    RAISE EXCEPTION 'role "%" requested phase % and cannot approve it', session_user, phase_id
      USING ERRCODE = '42501', HINT = 'Another member of migsafe_approver must approve it (four eyes).';
  END IF;
  backup_problem := migsafe._backup_ok(current_setting('migsafe.require_backup_within')::interval);
  IF backup_problem IS NOT NULL THEN
    RAISE EXCEPTION 'no recent backup: %', backup_problem USING ERRCODE = '55000';
  END IF;
  UPDATE migsafe.phase SET state = 'active', approved_by = session_user, approved_at = clock_timestamp()
   WHERE id = phase_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role)
  VALUES (phase_id, 'approved', session_user), (phase_id, 'opened', session_user);
  RETURN phase_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.reject(phase_id bigint, reason text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p migsafe.phase := migsafe._pending_for_decision(phase_id);
BEGIN
  PERFORM migsafe._require_primary('migsafe.reject()');
  UPDATE migsafe.phase SET state = 'rejected', rejected_by = session_user, reject_reason = reject.reason
   WHERE id = phase_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) VALUES (phase_id, 'rejected', session_user, reject.reason);
  RETURN phase_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.current_phase()
RETURNS TABLE (id bigint, kind text, name text, objects text[], valid_until timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, p.valid_until FROM migsafe.phase p
   WHERE migsafe._state(p) = 'active'
     AND ((p.for_role IS NULL AND p.session_pid = pg_backend_pid())
          OR p.for_role = session_user OR p.for_role = current_user)
   ORDER BY p.id
$$;

CREATE OR REPLACE FUNCTION migsafe.record_backup(label text, location text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b_id bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.record_backup()');
  PERFORM migsafe._require_approver('record backups');
  IF label IS NULL OR btrim(label) = '' OR location IS NULL OR btrim(location) = '' THEN
    RAISE EXCEPTION 'a backup needs a label and a location' USING ERRCODE = '22023';
  END IF;
  INSERT INTO migsafe.backup (label, location, recorded_by) VALUES (label, location, session_user)
  RETURNING id INTO b_id;
  RETURN b_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._phases_for_session(session_role name, current_role_ name)
RETURNS TABLE (id bigint, kind text, name text, objects text[], for_role name)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, p.for_role FROM migsafe.phase p
   WHERE (p.state = 'active' OR (p.state = 'used' AND p.used_xid = pg_current_xact_id_if_assigned()))
     AND p.valid_until > clock_timestamp()
     AND ((p.for_role IS NULL AND p.session_pid = pg_backend_pid()
           AND p.session_start = (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()))
          OR p.for_role IN (session_role, current_role_))
   ORDER BY p.id
$$;

CREATE OR REPLACE FUNCTION migsafe._record_use(p_id bigint, by_role name, rule_ids text[], objs text[], stmt text)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO migsafe.phase_use (phase_id, used_by, rule_ids, objects, statement)
  VALUES (p_id, by_role, rule_ids, objs, stmt);
  WITH spent AS (
    UPDATE migsafe.phase SET state = 'used', used_xid = pg_current_xact_id(), ended_at = clock_timestamp()
     WHERE id = p_id AND for_role IS NOT NULL AND state = 'active'
    RETURNING id)
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
  SELECT id, 'used', by_role, 'spent by the transaction that ran it' FROM spent;
$$;

CREATE OR REPLACE FUNCTION migsafe.request_rollback(snapshot bigint, reason text DEFAULT NULL, valid_for interval DEFAULT '1 hour')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p_id bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.request_rollback()');
  PERFORM migsafe._require_approver('request a rollback');
  IF snapshot IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot must not be NULL' USING ERRCODE = '22004';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM migsafe.snapshot s WHERE s.id = snapshot) THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot % does not exist (see migsafe.snapshots)', snapshot USING ERRCODE = '42704';
  END IF;
  IF valid_for IS NULL OR valid_for <= interval '0' OR valid_for > interval '7 days' THEN
    RAISE EXCEPTION 'valid_for must be between 0 and 7 days, not %', coalesce(valid_for::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO migsafe.phase (kind, name, reason, objects, for_role, requested_by, valid_until, skip_expand, state)
  VALUES ('rollback', 'rollback to snapshot ' || snapshot, reason, '{}', session_user, session_user,
          clock_timestamp() + valid_for, true, 'pending')
  RETURNING id INTO p_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) VALUES (p_id, 'requested', session_user, reason);
  RETURN p_id;
END
$$;

REVOKE ALL ON FUNCTION migsafe._phases_for_session(name, name), migsafe._record_use(bigint, name, text[], text[], text),
  migsafe._can_approve(name), migsafe._holds_role(name, name), migsafe._require_approver(text),
  migsafe._backup_ok(interval), migsafe._pending_for_decision(bigint), migsafe._state(migsafe.phase),
  migsafe._check_objects(text[]), migsafe.request_rollback(bigint, text, interval) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe._state(migsafe.phase) TO migsafe_admin, migsafe_approver, migsafe_auditor;

GRANT EXECUTE ON FUNCTION migsafe.request_rollback(bigint, text, interval) TO migsafe_admin, migsafe_approver;

CREATE OR REPLACE FUNCTION "_diff_docs"(
	"before" json, /* Option < pgrx :: Json > */
	"after" json /* Option < pgrx :: Json > */
) RETURNS TABLE (
	"kind" TEXT,  /* String */
	"identity" TEXT,  /* String */
	"action" TEXT,  /* String */
	"before" jsonb,  /* Option < JsonB > */
	"after" jsonb,  /* Option < JsonB > */
	"loses_data" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'diff_docs_wrapper';

CREATE OR REPLACE FUNCTION "_holds_data"(
	"rel" oid, /* pg_sys :: Oid */
	"col" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'holds_data_wrapper';

CREATE OR REPLACE FUNCTION "_internal"(
	"sql" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'internal_exec_wrapper';

CREATE OR REPLACE FUNCTION "_is_audit_writer"() RETURNS bool /* bool */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'is_audit_writer_wrapper';

CREATE OR REPLACE FUNCTION "_live_doc"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'live_doc_wrapper';

CREATE OR REPLACE FUNCTION "_next_snapshot_id"() RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'next_snapshot_id_sql_wrapper';

CREATE OR REPLACE FUNCTION "_note_upgrade"(
	"from_version" TEXT, /* & str */
	"to_version" TEXT /* & str */
) RETURNS void
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'note_upgrade_wrapper';

CREATE OR REPLACE FUNCTION "_queue_phase_event"(
	"phase_id" bigint, /* i64 */
	"event" TEXT, /* & str */
	"by_role" TEXT, /* & str */
	"at" TEXT, /* & str */
	"detail" TEXT /* Option < & str > */
) RETURNS void
VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'queue_phase_event_wrapper';

CREATE OR REPLACE FUNCTION "_queue_spilled"() RETURNS bigint /* i64 */
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'queue_spilled_wrapper';

CREATE OR REPLACE FUNCTION "_queue_stats"() RETURNS TABLE (
	"queued" bigint,  /* i64 */
	"written" bigint,  /* i64 */
	"fallback" bigint,  /* i64 */
	"queue_records" bigint,  /* i64 */
	"queue_bytes" bigint,  /* i64 */
	"writers" INT,  /* i32 */
	"last_migration_end" timestamp with time zone,  /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"last_migration_duration_us" bigint  /* Option < i64 > */
)
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'queue_stats_wrapper';

CREATE OR REPLACE FUNCTION "_rollback_exec"(
	"sql" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_exec_wrapper';

CREATE OR REPLACE FUNCTION "_rollback_phase_id"() RETURNS bigint /* Option < i64 > */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_phase_id_wrapper';

CREATE OR REPLACE FUNCTION "_rollback_plan"(
	"snapshot" bigint /* Option < i64 > */
) RETURNS TABLE (
	"step" INT,  /* i32 */
	"sql" TEXT,  /* String */
	"kind" TEXT,  /* String */
	"identity" TEXT,  /* String */
	"operation" TEXT,  /* String */
	"drops_data" bool,  /* bool */
	"drops_table" TEXT,  /* Option < String > */
	"drops_column" TEXT,  /* Option < String > */
	"recreates_table" TEXT,  /* Option < String > */
	"recreates_column" TEXT,  /* Option < String > */
	"note" TEXT,  /* Option < String > */
	"executable" bool,  /* bool */
	"owner" TEXT  /* Option < String > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_plan_wrapper';

CREATE OR REPLACE FUNCTION "_rollback_plan_for"(
	"snapshot" bigint, /* Option < i64 > */
	"role" oid /* pg_sys :: Oid */
) RETURNS TABLE (
	"step" INT,  /* i32 */
	"sql" TEXT,  /* String */
	"kind" TEXT,  /* String */
	"identity" TEXT,  /* String */
	"operation" TEXT,  /* String */
	"drops_data" bool,  /* bool */
	"drops_table" TEXT,  /* Option < String > */
	"drops_column" TEXT,  /* Option < String > */
	"recreates_table" TEXT,  /* Option < String > */
	"recreates_column" TEXT,  /* Option < String > */
	"note" TEXT,  /* Option < String > */
	"executable" bool,  /* bool */
	"owner" TEXT  /* Option < String > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_plan_for_wrapper';

CREATE OR REPLACE FUNCTION "_run_as"(
	"role" oid, /* pg_sys :: Oid */
	"sql" TEXT, /* & str */
	"ddl" bool /* bool */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_as_wrapper';

CREATE OR REPLACE FUNCTION "_running_migrations"() RETURNS TABLE (
	"migration" TEXT,  /* String */
	"pid" INT,  /* i32 */
	"started_at" timestamp with time zone  /* Option < pgrx :: datum :: TimestampWithTimeZone > */
)
STRICT VOLATILE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'running_migrations_wrapper';

COMMENT ON TABLE migsafe.audit_log IS
  'pg_migsafe audit log: append-only, hash-chained (migsafe.verify_log()); see docs/audit.md';

REVOKE ALL ON migsafe.audit_log FROM PUBLIC;

GRANT SELECT ON migsafe.audit_log TO migsafe_auditor;

CREATE OR REPLACE FUNCTION migsafe._audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'MS004',
    MESSAGE = format('pg_migsafe: %s on migsafe.audit_log refused: the audit log is append-only', TG_OP),
    DETAIL = 'Rows are written only by the pg_migsafe audit writer and are never changed or removed; each row''s hash chains it to the one before.',
    HINT = 'Read the log through migsafe.statements, migsafe.migrations and migsafe.refusals; check it with migsafe.verify_log().';
END
$$;

CREATE OR REPLACE FUNCTION migsafe._audit_log_writer_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT migsafe._is_audit_writer() THEN
    RAISE EXCEPTION USING
      ERRCODE = 'MS004',
      MESSAGE = 'pg_migsafe: INSERT into migsafe.audit_log refused: only the pg_migsafe audit writer appends to the audit log',
      DETAIL = 'The log records what the server saw; rows written by sessions could claim anything.',
      HINT = 'Name a migration with migsafe.set_migration_name(); everything else is recorded automatically.';
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._phase_event_to_audit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM migsafe._queue_phase_event(NEW.phase_id, NEW.event, NEW.by_role::text,
                                     to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                                     NEW.detail);
  RETURN NULL;
END
$$;

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
       coalesce(r->'blockers', '[]')            AS blockers
  FROM migsafe.audit_log l, LATERAL (SELECT l.record::jsonb AS r) x
 WHERE l.kind = 'statement';

CREATE OR REPLACE VIEW migsafe.migrations AS
WITH s AS (
  SELECT l.seq, l.record::jsonb AS r FROM migsafe.audit_log l
   WHERE l.kind = 'migration_start'
), e AS (
  SELECT l.seq, l.record::jsonb AS r FROM migsafe.audit_log l
   WHERE l.kind = 'migration_end'
), running AS (
  SELECT migration FROM migsafe._running_migrations()
)
SELECT coalesce(s.r->>'migration', e.r->>'migration')                      AS migration,
       coalesce(e.r->>'name', s.r->>'name')                                AS name,
       coalesce(s.r->>'started_at', e.r->>'started_at')::timestamptz       AS started_at,
       (e.r->>'ended_at')::timestamptz                                     AS ended_at,
       (e.r->>'duration_us')::bigint                                       AS duration_us,
       coalesce((e.r->>'statements')::int,
                (SELECT count(*) FROM migsafe.audit_log x
                  WHERE x.migration = s.r->>'migration'
                    AND x.kind = 'statement')::int)                        AS statements,
       (e.r->>'refused')::int                                              AS refused,
       (e.r->>'failed')::int                                               AS failed,
       CASE WHEN e.r IS NOT NULL THEN e.r->>'outcome'
            WHEN s.r->>'migration' IN (SELECT migration FROM running) THEN 'running'
            ELSE 'never_finished' END                                      AS outcome,
       (e.r->>'over_budget')::boolean                                      AS over_budget,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(e.r->'drizzle_hashes', '[]'))) AS drizzle_hashes,
       (e.r->>'snapshot')::bigint                                          AS snapshot,
       coalesce(e.r->'phases', s.r->'phases', '[]')                        AS phases,
       (e.r->>'xid')::xid8                                                 AS xid,
       coalesce(s.r, e.r)->'session'->>'database'                          AS database,
       coalesce(s.r, e.r)->'session'->>'session_user'                      AS session_user,
       coalesce(s.r, e.r)->'session'->>'application_name'                  AS application_name,
       (coalesce(s.r, e.r)->'session'->>'client_addr')::inet               AS client_addr,
       (coalesce(s.r, e.r)->'session'->>'pid')::int                        AS pid,
       coalesce(s.seq, e.seq)                                              AS first_seq
  FROM s FULL JOIN e ON e.r->>'migration' = s.r->>'migration';

CREATE OR REPLACE VIEW migsafe.refusals AS
SELECT seq, migration, started_at, database, "session_user", "current_user", application_name,
       client_addr, pid, command_tag, statement, rule_ids, findings, sqlstate, error
  FROM migsafe.statements
 WHERE decision = 'refused';

CREATE OR REPLACE VIEW migsafe.events AS
SELECT l.seq, l.kind,
       (r->>'at')::timestamptz AS at,
       l.migration,
       r->>'level' AS level,
       (r->>'phase_id')::bigint AS phase_id,
       r->>'event' AS phase_event,
       r AS record
  FROM migsafe.audit_log l, LATERAL (SELECT l.record::jsonb AS r) x
 WHERE l.kind IN ('alert', 'phase_event', 'config', 'unstorable', 'upgrade');

CREATE OR REPLACE VIEW migsafe.duration_trends AS
SELECT date_trunc('day', started_at)::date                                          AS day,
       count(*)                                                                     AS migrations,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_us) / 1000)::numeric, 3) AS p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) / 1000)::numeric, 3) AS p95_ms,
       round((max(duration_us) / 1000.0)::numeric, 3)                               AS max_ms,
       count(*) FILTER (WHERE outcome <> 'committed')                               AS failures,
       count(*) FILTER (WHERE over_budget)                                          AS over_budget
  FROM migsafe.migrations
 WHERE outcome <> 'running'
 GROUP BY 1;

CREATE OR REPLACE VIEW migsafe.metrics AS
SELECT 'migsafe_statements_total' AS metric, 'decision=' || decision || ',outcome=' || outcome AS labels,
       count(*)::float8 AS value
  FROM migsafe.statements GROUP BY decision, outcome
UNION ALL
SELECT 'migsafe_migrations_total', 'outcome=' || outcome, count(*)::float8
  FROM migsafe.migrations GROUP BY outcome
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

REVOKE ALL ON migsafe.statements, migsafe.migrations, migsafe.refusals, migsafe.events,
              migsafe.duration_trends, migsafe.metrics FROM PUBLIC;

GRANT SELECT ON migsafe.statements, migsafe.migrations, migsafe.refusals, migsafe.events,
                migsafe.duration_trends, migsafe.metrics TO migsafe_auditor;

REVOKE ALL ON FUNCTION migsafe._queue_stats(), migsafe._queue_spilled(), migsafe._running_migrations() FROM PUBLIC;

REVOKE ALL ON FUNCTION migsafe._queue_phase_event(bigint, text, text, text, text) FROM PUBLIC;

REVOKE ALL ON FUNCTION migsafe._note_upgrade(text, text) FROM PUBLIC;

REVOKE ALL ON FUNCTION migsafe._audit_log_append_only(), migsafe._audit_log_writer_only(),
  migsafe._phase_event_to_audit() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe._queue_stats(), migsafe._queue_spilled(), migsafe._running_migrations() TO migsafe_auditor;

CREATE OR REPLACE FUNCTION migsafe._key(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '"'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.replace(a, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(b, '"', '""') OPERATOR(pg_catalog.||) '"'::pg_catalog.text
$$;

CREATE OR REPLACE FUNCTION migsafe._key(a text, b text, c text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '"'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.replace(a, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(b, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(c, '"', '""') OPERATOR(pg_catalog.||) '"'::pg_catalog.text
$$;

CREATE OR REPLACE FUNCTION migsafe._catalog(scope jsonb DEFAULT NULL) RETURNS json
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET jit = off SET work_mem = '64MB'
-- PL/pgSQL keeps the plans for the session; generic ones, so that the big query below
-- is planned once per session, not per automatic snapshot.
SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  everything boolean := scope IS NULL;
  model_nsps oid[];    -- every schema of the model
  whole oid[];         -- schemas read with everything in them
  nsp_ids oid[];       -- schemas whose own row is read
  rel_ids oid[];       -- tables, views, materialized views, sequences
  typ_ids oid[];       -- enums and domains
  fn_ids oid[];        -- functions and procedures
  doc json;
BEGIN
  model_nsps := ARRAY(
    SELECT n.oid FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'migsafe', 'migsafe_recycle')
       AND n.nspname !~ '^pg_(toast_)?temp_'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                         AND d.objid = n.oid AND d.objsubid = 0 AND d.deptype = 'e'));
  IF everything THEN
    whole := model_nsps;
    nsp_ids := model_nsps;
  ELSE
    whole := ARRAY(SELECT n.oid FROM pg_namespace n
                    WHERE n.oid = ANY (model_nsps)
                      AND n.nspname IN (SELECT jsonb_array_elements_text(coalesce(scope->'contents', '[]'))));
    nsp_ids := whole || ARRAY(SELECT n.oid FROM pg_namespace n
                    WHERE n.oid = ANY (model_nsps)
                      AND n.nspname IN (SELECT jsonb_array_elements_text(coalesce(scope->'schemas', '[]'))));
  END IF;
  -- Relations: whole schemas, and the named ones (an index lookup each).
  IF cardinality(whole) > 0 THEN
    rel_ids := ARRAY(SELECT c.oid FROM pg_class c
                      WHERE c.relnamespace = ANY (whole) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                        AND c.relpersistence <> 't');
  ELSE
    rel_ids := '{}';
  END IF;
  IF NOT everything THEN
    rel_ids := rel_ids || ARRAY(
      SELECT c.oid FROM jsonb_array_elements(coalesce(scope->'relations', '[]')) e
        JOIN pg_namespace n ON n.nspname = e->>0
        JOIN pg_class c ON c.relname = e->>1 AND c.relnamespace = n.oid
       WHERE n.oid = ANY (model_nsps) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relpersistence <> 't');
    -- with the sequences they own
    rel_ids := rel_ids || ARRAY(
      SELECT d.objid FROM pg_depend d
       WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (rel_ids) AND d.refobjsubid > 0
         AND d.classid = 'pg_class'::regclass AND d.deptype = 'a');
  END IF;
  -- Not extension members, not identity columns' sequences (part of their column).
  rel_ids := ARRAY(SELECT DISTINCT x FROM unnest(rel_ids) x
                    WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                        AND d.objid = x AND d.deptype IN ('e', 'i')));
  IF everything OR cardinality(whole) > 0 OR jsonb_array_length(coalesce(scope->'types', '[]')) > 0 THEN
  typ_ids := ARRAY(
    SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('e', 'd') AND n.oid = ANY (model_nsps)
       AND (n.oid = ANY (whole)
            OR (NOT everything AND (n.nspname, t.typname) IN (
                  SELECT e->>0, e->>1 FROM jsonb_array_elements(coalesce(scope->'types', '[]')) e)))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                         AND d.objid = t.oid AND d.deptype = 'e'));
  ELSE
    typ_ids := '{}';
  END IF;
  IF everything OR cardinality(whole) > 0 OR jsonb_array_length(coalesce(scope->'functions', '[]')) > 0 THEN
  fn_ids := ARRAY(
    SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.prokind IN ('f', 'p', 'w') AND n.oid = ANY (model_nsps)
       AND (n.oid = ANY (whole)
            OR (NOT everything AND (n.nspname, p.proname) IN (
                  SELECT e->>0, e->>1 FROM jsonb_array_elements(coalesce(scope->'functions', '[]')) e)))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                         AND d.objid = p.oid AND d.deptype = 'e'));
  ELSE
    fn_ids := '{}';
  END IF;
  IF everything THEN
    -- A full read is planned for its thousands of objects (hash joins), every time;
    -- the function's SET clause restores the setting when it returns.
    PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
  END IF;
  WITH
  nsp AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n WHERE n.oid = ANY (nsp_ids)
  ),
  rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relnamespace, n.nspname, c.relpersistence, c.relacl,
           c.relowner, c.relrowsecurity, c.relforcerowsecurity, c.relispartition, c.relispopulated
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = ANY (rel_ids)
  ),
  typ AS (
    SELECT t.oid, t.typname, t.typtype, t.typnamespace, n.nspname, t.typowner, t.typacl,
           t.typbasetype, t.typtypmod, t.typcollation, t.typnotnull, t.typdefaultbin, t.typdefault
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.oid = ANY (typ_ids)
  ),
  fn AS (
    SELECT p.oid, p.proname, p.prokind, n.nspname, p.proowner, p.proacl, p.prosrc
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = ANY (fn_ids)
  ),
  cols AS (
    -- json_agg over a composite type: names come from the type, no per-row key lookup.
    SELECT a.attrelid,
           json_agg((
             a.attname,
             a.attnum,
             format_type(a.atttypid, a.atttypmod),
             coalesce(bt.typname, t.typname),
             coalesce(bt.typcategory, t.typcategory),
             a.atttypmod,
             CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN
               CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace THEN quote_ident(co.collname)
                    ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END END,
             a.attnotnull,
             CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
             nullif(a.attidentity, ''),
             CASE WHEN a.attgenerated = 's' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
             a.attislocal,
             d.description,
             coalesce(a.attacl, '{}')::text[])::migsafe._column ORDER BY a.attnum) AS columns
      FROM pg_attribute a
      JOIN rel r ON r.oid = a.attrelid AND r.relkind IN ('r', 'p')
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      LEFT JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
     GROUP BY a.attrelid
  )
  SELECT json_build_object(
    'schemas', (
      SELECT json_agg(json_build_object(
               'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner), 'comment', d.description,
               'acl', coalesce(n.nspacl, acldefault('n', n.nspowner))::text[]))
        FROM nsp n LEFT JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass),
    'tables', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'persistence', r.relpersistence,
               'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
               'partition_bound', CASE WHEN r.relispartition THEN pg_get_expr(pc.relpartbound, r.oid) END,
               'inherits', (SELECT json_agg(migsafe._key(pn.nspname, p.relname) ORDER BY i.inhseqno)
                              FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                              JOIN pg_namespace pn ON pn.oid = p.relnamespace
                             WHERE i.inhrelid = r.oid),
               'rls_enabled', r.relrowsecurity, 'rls_forced', r.relforcerowsecurity,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('r', r.relowner))::text[],
               'columns', coalesce(cols.columns, '[]')))
        FROM rel r
        JOIN pg_class pc ON pc.oid = r.oid
        LEFT JOIN cols ON cols.attrelid = r.oid
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind IN ('r', 'p')),
    'constraints', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', k.conname,
               'kind', k.contype,
               'definition', pg_get_constraintdef(k.oid),
               'validated', k.convalidated, 'deferrable', k.condeferrable, 'deferred', k.condeferred,
               'references', CASE WHEN k.contype = 'f' THEN
                               (SELECT migsafe._key(fn_.nspname, f.relname) FROM pg_class f
                                  JOIN pg_namespace fn_ ON fn_.oid = f.relnamespace WHERE f.oid = k.confrelid) END,
               'local', k.conislocal,
               'comment', d.description))
        FROM pg_constraint k
        JOIN rel r ON r.oid = k.conrelid AND r.relkind IN ('r', 'p')
        LEFT JOIN pg_description d ON d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass
       WHERE k.contype IN ('p', 'u', 'c', 'f', 'x')),
    'indexes', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', ic.relname, 'table', migsafe._key(r.nspname, r.relname),
               -- An index that belongs to a constraint is described by the constraint
               -- (and created with it): deparsing it would only cost time.
               'definition', CASE WHEN NOT ck.owned THEN pg_get_indexdef(i.indexrelid) ELSE '' END,
               'valid', i.indisvalid, 'unique', i.indisunique,
               'constraint', ck.owned,
               'inherited', i.indexrelid IN (SELECT h.inhrelid FROM pg_inherits h),
               'comment', d.description))
        FROM pg_index i
        JOIN rel r ON r.oid = i.indrelid AND r.relkind IN ('r', 'p', 'm')
        JOIN pg_class ic ON ic.oid = i.indexrelid
        CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM pg_constraint k
                                             WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid
                                               AND k.contype IN ('p', 'u', 'x')) AS owned) ck
        LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0),
    'sequences', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'data_type', format_type(s.seqtypid, NULL),
               'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
               'cache', s.seqcache, 'cycle', s.seqcycle,
               'owned_by', (SELECT migsafe._key(tn.nspname, t.relname, a.attname)
                              FROM pg_depend o JOIN pg_class t ON t.oid = o.refobjid
                              JOIN pg_namespace tn ON tn.oid = t.relnamespace
                              JOIN pg_attribute a ON a.attrelid = o.refobjid AND a.attnum = o.refobjsubid
                             WHERE o.classid = 'pg_class'::regclass AND o.objid = r.oid AND o.objsubid = 0
                               AND o.refclassid = 'pg_class'::regclass AND o.deptype = 'a' AND o.refobjsubid > 0
                             LIMIT 1),
               'last_value', CASE WHEN has_sequence_privilege(r.oid, 'SELECT,USAGE')
                                  THEN pg_sequence_last_value(r.oid) END,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('s', r.relowner))::text[]))
        FROM rel r
        JOIN pg_sequence s ON s.seqrelid = r.oid
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind = 'S'),
    'views', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'materialized', r.relkind = 'm',
               'definition', pg_get_viewdef(r.oid),
               'depends_on', (SELECT json_agg(DISTINCT x.key) FROM (
                   SELECT migsafe._key(dn.nspname, dc.relname) AS key
                     FROM pg_rewrite rw
                     JOIN pg_depend dp ON dp.classid = 'pg_rewrite'::regclass AND dp.objid = rw.oid
                                      AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid <> r.oid
                     JOIN pg_class dc ON dc.oid = dp.refobjid
                     JOIN pg_namespace dn ON dn.oid = dc.relnamespace
                    WHERE rw.ev_class = r.oid
                   UNION
                   SELECT migsafe._key(pn.nspname, p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                     FROM pg_rewrite rw
                     JOIN pg_depend dp ON dp.classid = 'pg_rewrite'::regclass AND dp.objid = rw.oid
                                      AND dp.refclassid = 'pg_proc'::regclass
                     JOIN pg_proc p ON p.oid = dp.refobjid
                     JOIN pg_namespace pn ON pn.oid = p.pronamespace
                    WHERE rw.ev_class = r.oid
                      AND pn.nspname NOT IN ('pg_catalog', 'information_schema')) x),
               'has_data', CASE WHEN r.relkind = 'm' THEN r.relispopulated END,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('r', r.relowner))::text[]))
        FROM rel r
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind IN ('v', 'm')),
    'enums', (
      SELECT json_agg(json_build_object(
               'schema', t.nspname, 'name', t.typname, 'owner', pg_get_userbyid(t.typowner),
               'labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
               'comment', d.description,
               'acl', coalesce(t.typacl, acldefault('T', t.typowner))::text[]))
        FROM typ t
        LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass
       WHERE t.typtype = 'e'),
    'domains', (
      SELECT json_agg(json_build_object(
               'schema', t.nspname, 'name', t.typname, 'owner', pg_get_userbyid(t.typowner),
               'base_type', format_type(t.typbasetype, t.typtypmod),
               'collation', CASE WHEN t.typcollation <> bt.typcollation AND t.typcollation <> 0 THEN
                              (SELECT CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace THEN quote_ident(co.collname)
                                           ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
                                 FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                WHERE co.oid = t.typcollation) END,
               'not_null', t.typnotnull,
               'default', CASE WHEN t.typdefaultbin IS NOT NULL THEN pg_get_expr(t.typdefaultbin, 0) ELSE t.typdefault END,
               'checks', (SELECT json_agg(json_build_object('name', k.conname, 'definition', pg_get_constraintdef(k.oid),
                                                            'validated', k.convalidated) ORDER BY k.conname)
                            FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'),
               'comment', d.description,
               'acl', coalesce(t.typacl, acldefault('T', t.typowner))::text[]))
        FROM typ t
        JOIN pg_type bt ON bt.oid = t.typbasetype
        LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass
       WHERE t.typtype = 'd'),
    'functions', (
      SELECT json_agg(json_build_object(
               'schema', f.nspname, 'name', f.proname, 'kind', f.prokind, 'owner', pg_get_userbyid(f.proowner),
               'arguments', pg_get_function_identity_arguments(f.oid),
               'result', pg_get_function_result(f.oid),
               'definition', pg_get_functiondef(f.oid),
               'body_hash', md5(coalesce(f.prosrc, '')),
               'comment', d.description,
               'acl', coalesce(f.proacl, acldefault('f', f.proowner))::text[]))
        FROM fn f
        LEFT JOIN pg_description d ON d.objoid = f.oid AND d.classoid = 'pg_proc'::regclass),
    'triggers', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', tg.tgname,
               'definition', pg_get_triggerdef(tg.oid),
               'enabled', tg.tgenabled,
               'inherited', tg.tgparentid <> 0,
               'comment', d.description))
        FROM pg_trigger tg
        JOIN rel r ON r.oid = tg.tgrelid
        LEFT JOIN pg_description d ON d.objoid = tg.oid AND d.classoid = 'pg_trigger'::regclass
       WHERE NOT tg.tgisinternal),
    'policies', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', p.polname,
               'permissive', p.polpermissive,
               'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                        WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               'roles', ARRAY(SELECT CASE WHEN ro = 0 THEN 'public' ELSE pg_get_userbyid(ro)::text END
                                FROM unnest(p.polroles) ro ORDER BY 1),
               'using', pg_get_expr(p.polqual, p.polrelid),
               'with_check', pg_get_expr(p.polwithcheck, p.polrelid),
               'comment', d.description))
        FROM pg_policy p
        JOIN rel r ON r.oid = p.polrelid
        LEFT JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass)
  )
  INTO doc;
  RETURN doc;
END
$fn$;

REVOKE ALL ON migsafe.snapshot, migsafe.snapshot_part FROM PUBLIC;

GRANT SELECT ON migsafe.snapshot TO migsafe_admin, migsafe_auditor;

CREATE OR REPLACE VIEW migsafe.snapshots AS
SELECT s.id, s.taken_at, s.label, s.kind, s.taken_by, s.complete,
       (SELECT count(*) FROM migsafe.snapshot_part p WHERE p.snapshot_id = s.id)::int AS parts,
       (SELECT pg_catalog.array_agg(DISTINCT x ORDER BY x)
          FROM migsafe.snapshot_part p,
               LATERAL (SELECT e->>0 || '.' || (e->>1) AS x FROM pg_catalog.jsonb_array_elements(coalesce(p.scope->'relations', '[]')) e
                        UNION ALL SELECT pg_catalog.jsonb_array_elements_text(coalesce(p.scope->'contents', '[]'))) o
         WHERE p.snapshot_id = s.id) AS covers,
       (SELECT sum(pg_catalog.pg_column_size(p.doc)) FROM migsafe.snapshot_part p WHERE p.snapshot_id = s.id)::bigint AS bytes
  FROM migsafe.snapshot s;

REVOKE ALL ON migsafe.snapshots FROM PUBLIC;

GRANT SELECT ON migsafe.snapshots TO migsafe_admin, migsafe_approver, migsafe_auditor;

CREATE OR REPLACE FUNCTION migsafe.snapshot(label text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  new_id bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.snapshot()');
  PERFORM migsafe._require_approver('take snapshots');
  -- Ids come from pg_migsafe's counter (as the automatic snapshots' do), not from the
  -- identity sequence: see migsafe._next_snapshot_id().
  INSERT INTO migsafe.snapshot (id, label, kind, complete) OVERRIDING SYSTEM VALUE
  VALUES (migsafe._next_snapshot_id(), nullif(btrim(label), ''), 'manual', true)
  RETURNING id INTO new_id;
  INSERT INTO migsafe.snapshot_part (snapshot_id, part, scope, doc)
  VALUES (new_id, 1, NULL, migsafe._catalog(NULL));
  RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._snapshot_store(snapshot_id bigint, taken_at timestamptz, scopes jsonb[], docs jsonb[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sid bigint := snapshot_id;
BEGIN
  IF EXISTS (SELECT 1 FROM migsafe.snapshot s WHERE s.id = sid) THEN
    SELECT max(s.id) + 1 INTO sid FROM migsafe.snapshot s;
  END IF;
  INSERT INTO migsafe.snapshot (id, taken_at, kind, complete) OVERRIDING SYSTEM VALUE
  VALUES (sid, taken_at, 'auto', array_position(scopes, NULL) IS NOT NULL);
  INSERT INTO migsafe.snapshot_part (snapshot_id, part, scope, doc)
  SELECT sid, p.n, p.scope, p.doc FROM unnest(scopes, docs) WITH ORDINALITY AS p(scope, doc, n);
  RETURN sid;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.drop_snapshots(older_than interval) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.drop_snapshots()');
  IF NOT migsafe._holds_role(session_user, 'migsafe_admin') THEN
    RAISE EXCEPTION 'role "%" may not drop snapshots', session_user
      USING ERRCODE = '42501', HINT = 'A superuser or a member of migsafe_admin (granted by a superuser) does.';
  END IF;
  IF older_than IS NULL OR older_than < interval '0' THEN
    RAISE EXCEPTION 'older_than must be an interval of zero or more, not %', coalesce(older_than::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  DELETE FROM migsafe.snapshot s WHERE s.taken_at < clock_timestamp() - older_than;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

REVOKE ALL ON FUNCTION migsafe._catalog(jsonb),
  migsafe._snapshot_store(bigint, timestamptz, jsonb[], jsonb[]), migsafe._next_snapshot_id(),
  migsafe.snapshot(text), migsafe.drop_snapshots(interval) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe.snapshot(text) TO migsafe_admin, migsafe_approver;

GRANT EXECUTE ON FUNCTION migsafe.drop_snapshots(interval) TO migsafe_admin;

REVOKE ALL ON SCHEMA migsafe_recycle FROM PUBLIC;

REVOKE ALL ON migsafe.recycle FROM PUBLIC;

CREATE OR REPLACE VIEW migsafe.recycle_bin AS
SELECT r.id, r.kind,
       migsafe._key(r.schema_name, r.table_name) || coalesce('."' || pg_catalog.replace(r.column_name, '"', '""') || '"', '') AS object,
       r.column_type, 'migsafe_recycle.' || pg_catalog.quote_ident(r.stored_as) AS stored_as,
       r.row_count, r.bytes, r.dependents, r.phase_id, r.statement, r.dropped_at, r.dropped_by,
       CASE WHEN r.purged_at IS NOT NULL THEN 'purged'
            WHEN r.restored_at IS NOT NULL THEN 'restored'
            ELSE 'kept' END AS state,
       r.restored_at, r.restored_by, r.purged_at,
       CASE WHEN r.restored_at IS NULL AND r.purged_at IS NULL
                 AND pg_catalog.current_setting('migsafe.recycle_retention')::interval > interval '0'
            THEN r.dropped_at + pg_catalog.current_setting('migsafe.recycle_retention')::interval END AS purge_after
  FROM migsafe.recycle r;

REVOKE ALL ON migsafe.recycle_bin FROM PUBLIC;

GRANT SELECT ON migsafe.recycle_bin, migsafe.recycle TO migsafe_admin, migsafe_approver, migsafe_auditor;

CREATE OR REPLACE FUNCTION migsafe._dependents(rel oid)
RETURNS TABLE (kind text, oid oid, name text, sql text, level int, owner name, acl text[], on_table text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE views(oid, level) AS (
    SELECT DISTINCT rw.ev_class, 1
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refobjid = rel AND rw.ev_class <> rel
    UNION
    SELECT DISTINCT rw.ev_class, v.level + 1
      FROM views v
      JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.oid
                                 AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
      JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
     WHERE rw.ev_class <> v.oid AND v.level < 100
  )
  SELECT CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, c.oid,
         pg_catalog.format('%I.%I', n.nspname, c.relname),
         pg_catalog.format('CREATE %s %I.%I%s AS %s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                n.nspname, c.relname,
                -- reloptions as the server stored them: names and values it validated
                -- (check_option, security_barrier, storage parameters), never free text
                CASE WHEN c.reloptions IS NOT NULL
                     THEN ' WITH (' || pg_catalog.array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
                pg_catalog.rtrim(pg_catalog.pg_get_viewdef(c.oid), ';')),
         max(v.level), pg_catalog.pg_get_userbyid(c.relowner), coalesce(c.relacl, '{}')::text[], NULL
    FROM views v JOIN pg_catalog.pg_class c ON c.oid = v.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   GROUP BY c.oid, c.relkind, n.nspname, c.relname, c.reloptions, c.relowner, c.relacl
  UNION ALL
  SELECT 'foreign key', k.oid, pg_catalog.format('%I on %I.%I', k.conname, n.nspname, t.relname),
         pg_catalog.format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, t.relname, k.conname,
                           pg_catalog.pg_get_constraintdef(k.oid)),
         0, pg_catalog.pg_get_userbyid(t.relowner), NULL, pg_catalog.format('%I.%I', n.nspname, t.relname)
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class t ON t.oid = k.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
   WHERE k.contype = 'f' AND k.confrelid = rel AND k.conrelid <> rel
  UNION ALL
  SELECT 'other', d.objid, pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), NULL, 0, NULL, NULL, NULL
    FROM pg_catalog.pg_depend d
   WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = rel AND d.deptype = 'n'
     AND d.classid NOT IN ('pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_constraint'::pg_catalog.regclass,
                           'pg_catalog.pg_attrdef'::pg_catalog.regclass, 'pg_catalog.pg_trigger'::pg_catalog.regclass,
                           'pg_catalog.pg_policy'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass,
                           'pg_catalog.pg_statistic_ext'::pg_catalog.regclass)
     AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = rel))
     AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_depend o WHERE o.objid = d.objid AND o.refobjid = rel AND o.deptype IN ('a', 'i')))
$$;

CREATE OR REPLACE FUNCTION migsafe._acl_entries(item text)
RETURNS TABLE (privilege_type text, grantee oid, is_grantable boolean)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT a.privilege_type, a.grantee, a.is_grantable FROM aclexplode(ARRAY[item::aclitem]) a;
EXCEPTION WHEN OTHERS THEN
  RETURN;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._copyable(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel)
           WHEN 'r' THEN true
           WHEN 'p' THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_tree(rel) t
                                       JOIN pg_catalog.pg_class c ON c.oid = t.relid
                                      WHERE t.isleaf AND c.relkind <> 'r')
           ELSE false END
$$;

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
  ELSIF c.relispartition OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = rel OR inhparent = rel) THEN
    RETURN 'it takes part in inheritance or partitioning';
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

CREATE OR REPLACE FUNCTION migsafe._row_key(rel oid, except_column name) RETURNS name[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(
    (SELECT array_agg(a.attname ORDER BY k.ord)
       FROM (SELECT i.indkey, i.indisprimary FROM pg_catalog.pg_index i
              WHERE i.indrelid = rel AND i.indisunique AND i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(i.indkey::int2[]) x
                                 JOIN pg_catalog.pg_attribute a2 ON a2.attrelid = rel AND a2.attnum = x
                                WHERE NOT a2.attnotnull OR a2.attname = except_column)
              ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1) ix,
            pg_catalog.unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum),
    (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> except_column))
$$;

CREATE OR REPLACE FUNCTION migsafe._keep_or_refuse(bytes bigint, phase_id bigint) RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE WHEN bytes <= pg_size_bytes(current_setting('migsafe.recycle_max_bytes')) THEN 1
              WHEN EXISTS (SELECT 1 FROM migsafe.phase p WHERE p.id = phase_id AND NOT p.keep_data) THEN 0
              ELSE -1 END
$$;

CREATE OR REPLACE FUNCTION migsafe._recycle_column(rel oid, col name, phase_id bigint, statement text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  keycols name[] := migsafe._row_key(rel, col);
  new_id bigint;
  stored name;
  est bigint;
  cnt bigint;
BEGIN
  SELECT n_.nspname, cl.relname, format_type(a.atttypid, a.atttypmod) AS typ INTO c
    FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n_ ON n_.oid = cl.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = cl.oid AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
   WHERE cl.oid = rel AND cl.relkind IN ('r', 'p');
  IF NOT FOUND THEN
    RETURN NULL;   -- the DROP itself reports what is wrong
  END IF;
  IF NOT migsafe._copyable(rel) THEN
    RAISE NOTICE 'pg_migsafe: the values of column % are not kept in the recycle bin: the table has partitions that are not plain tables', quote_ident(col);
    RETURN NULL;
  END IF;
  keycols := coalesce(keycols, '{}');
  EXECUTE format('SELECT count(t.%I), coalesce(sum(pg_column_size(t.%I)), 0) + coalesce(sum(pg_column_size((%s))), 0) FROM %I.%I t WHERE t.%I IS NOT NULL',
                 col, col, coalesce((SELECT string_agg(format('t.%I', k), ', ') FROM pg_catalog.unnest(keycols) k), 'NULL'),
                 c.nspname, c.relname, col)
    INTO cnt, est;
  IF cnt = 0 THEN
    RETURN NULL;   -- only NULLs: nothing to keep
  END IF;
  CASE migsafe._keep_or_refuse(est, phase_id)
    WHEN -1 THEN RETURN -1;
    WHEN 0 THEN RETURN NULL;
    ELSE NULL;
  END CASE;
  INSERT INTO migsafe.recycle (kind, schema_name, table_name, column_name, column_type, stored_as, key_columns,
                               phase_id, statement, row_count)
  VALUES ('column', c.nspname, c.relname, col, c.typ, '-', keycols, phase_id, statement, cnt)
  RETURNING id INTO new_id;
  stored := 'r' || new_id || '_' || left(c.relname, 30) || '_' || left(col, 20);
  PERFORM migsafe._internal(format('CREATE TABLE migsafe_recycle.%I AS SELECT %s %I FROM %I.%I WHERE %I IS NOT NULL',
          stored, (SELECT string_agg(quote_ident(k) || ',', ' ') FROM pg_catalog.unnest(keycols) k), col, c.nspname, c.relname, col));
  UPDATE migsafe.recycle SET stored_as = stored,
         bytes = pg_total_relation_size(format('migsafe_recycle.%I', stored)::regclass)
   WHERE id = new_id;
  RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._recycle_truncate(rel oid, phase_id bigint, statement text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  new_id bigint;
  stored name;
  cnt bigint;
  empty boolean;
BEGIN
  SELECT n_.nspname, cl.relname INTO c FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n_ ON n_.oid = cl.relnamespace
   WHERE cl.oid = rel AND cl.relkind IN ('r', 'p');
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF NOT migsafe._copyable(rel) THEN
    RAISE NOTICE 'pg_migsafe: the rows of %.% are not kept in the recycle bin: the table has partitions that are not plain tables',
      quote_ident(c.nspname), quote_ident(c.relname);
    RETURN NULL;
  END IF;
  EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I.%I)', c.nspname, c.relname) INTO empty;
  IF empty THEN
    RETURN NULL;
  END IF;
  CASE migsafe._keep_or_refuse(pg_total_relation_size(rel), phase_id)
    WHEN -1 THEN RETURN -1;
    WHEN 0 THEN RETURN NULL;
    ELSE NULL;
  END CASE;
  INSERT INTO migsafe.recycle (kind, schema_name, table_name, stored_as, phase_id, statement)
  VALUES ('truncate', c.nspname, c.relname, '-', phase_id, statement)
  RETURNING id INTO new_id;
  stored := 'r' || new_id || '_' || left(c.relname, 40);
  PERFORM migsafe._internal(format('CREATE TABLE migsafe_recycle.%I AS SELECT * FROM %I.%I', stored, c.nspname, c.relname));
  EXECUTE format('SELECT count(*) FROM migsafe_recycle.%I', stored) INTO cnt;
  UPDATE migsafe.recycle SET stored_as = stored, row_count = cnt,
         bytes = pg_total_relation_size(format('migsafe_recycle.%I', stored)::regclass)
   WHERE id = new_id;
  RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.undrop(id bigint, dependents boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r migsafe.recycle;
  target regclass;
  target_owner oid;
  k text;
  d jsonb;
  done text[] := '{}';
  failed text[] := '{}';
  cols text;
  n bigint;
  dep_owner oid;
  g record;
BEGIN
  PERFORM migsafe._require_primary('migsafe.undrop()');
  PERFORM migsafe._require_approver('restore from the recycle bin');
  IF id IS NULL OR dependents IS NULL THEN
    RAISE EXCEPTION 'id and dependents must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT * INTO r FROM migsafe.recycle x WHERE x.id = undrop.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'recycle bin entry % does not exist (see migsafe.recycle_bin)', id USING ERRCODE = '42704';
  ELSIF r.purged_at IS NOT NULL THEN
    RAISE EXCEPTION 'recycle bin entry % was purged at %: its data is gone', id, r.purged_at USING ERRCODE = '55000';
  ELSIF r.restored_at IS NOT NULL THEN
    RAISE EXCEPTION 'recycle bin entry % was already restored at % by %', id, r.restored_at, r.restored_by USING ERRCODE = '55000';
  END IF;
  IF r.kind = 'table' THEN
    IF to_regclass(format('%I.%I', r.schema_name, r.table_name)) IS NOT NULL THEN
      RAISE EXCEPTION 'cannot restore table %.%: a relation of that name exists', quote_ident(r.schema_name), quote_ident(r.table_name)
        USING ERRCODE = '42P07', HINT = 'Rename or drop the new relation first.';
    END IF;
    FOR k IN SELECT v FROM jsonb_each_text(r.renamed) e(kk, v) LOOP
      IF to_regclass(format('%I.%I', r.schema_name, k)) IS NOT NULL THEN
        RAISE EXCEPTION 'cannot restore table %.%: its index or sequence % would clash with an existing relation',
          quote_ident(r.schema_name), quote_ident(r.table_name), quote_ident(k)
          USING ERRCODE = '42P07', HINT = 'Rename or drop the new relation first.';
      END IF;
    END LOOP;
    PERFORM migsafe._internal(format('ALTER TABLE migsafe_recycle.%I SET SCHEMA %I', r.stored_as, r.schema_name));
    PERFORM migsafe._internal(format('ALTER TABLE %I.%I RENAME TO %I', r.schema_name, r.stored_as, r.table_name));
    FOR k, d IN SELECT kk, to_jsonb(v) FROM jsonb_each_text(r.renamed) e(kk, v) LOOP
      PERFORM migsafe._internal(format('ALTER %s %I.%I RENAME TO %I',
        CASE (SELECT relkind FROM pg_class WHERE oid = format('%I.%I', r.schema_name, k)::regclass) WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END,
        r.schema_name, k, d #>> '{}'));
    END LOOP;
    target := format('%I.%I', r.schema_name, r.table_name)::regclass;
    target_owner := (SELECT relowner FROM pg_class WHERE oid = target);
    IF dependents THEN
      FOR d IN SELECT e FROM jsonb_array_elements(r.dependents) e ORDER BY (e->>'kind') LIKE '%foreign key', (e->>'level')::int LOOP
        BEGIN
          IF d->>'kind' = 'own foreign key' THEN
            PERFORM migsafe._run_as(target_owner,
              format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', r.schema_name, r.table_name, d->>'name', d->>'sql'), true);
          ELSIF d->>'kind' = 'foreign key' THEN
            -- as the owner of the referencing table, whoever owns it now (entries
            -- from 0.1.0 name that table only in their statement)
            dep_owner := (SELECT t.relowner FROM pg_class t
                           WHERE t.oid = to_regclass(coalesce(d->>'table',
                                           substring(d->>'sql' FROM '^ALTER TABLE (.*) ADD CONSTRAINT '))));
            IF dep_owner IS NULL THEN
              RAISE EXCEPTION 'the table it belongs to no longer exists';
            END IF;
            PERFORM migsafe._run_as(dep_owner, d->>'sql', true);
          ELSE
            -- as the role that owned it; if that role is gone, not at all (anyone else
            -- would lend the view rights its author never had). Entries from 0.1.0
            -- record no owner: the table's.
            dep_owner := CASE WHEN d ? 'owner' THEN to_regrole(quote_ident(d->>'owner')) ELSE target_owner END;
            IF dep_owner IS NULL THEN
              RAISE EXCEPTION 'its owner % no longer exists', quote_ident(d->>'owner');
            END IF;
            PERFORM migsafe._run_as(dep_owner, d->>'sql', true);
            -- the view's privileges as they were; nothing else
            FOR g IN SELECT a.privilege_type, a.grantee, a.is_grantable
                       FROM jsonb_array_elements_text(coalesce(d->'acl', '[]')) x(item),
                            LATERAL migsafe._acl_entries(x.item) a
                      WHERE a.grantee <> dep_owner LOOP
              PERFORM migsafe._run_as(dep_owner,
                format('GRANT %s ON %s TO %s%s', g.privilege_type, d->>'name',
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), true);
            END LOOP;
          END IF;
          done := done || (d->>'kind' || ' ' || (d->>'name'));
        EXCEPTION WHEN OTHERS THEN
          failed := failed || (d->>'kind' || ' ' || (d->>'name') || ': ' || SQLERRM);
        END;
      END LOOP;
    END IF;
  ELSE
    target := to_regclass(format('%I.%I', r.schema_name, r.table_name));
    IF target IS NULL THEN
      RAISE EXCEPTION 'cannot restore into %.%: the table does not exist', quote_ident(r.schema_name), quote_ident(r.table_name)
        USING ERRCODE = '42P01';
    END IF;
    target_owner := (SELECT relowner FROM pg_class WHERE oid = target);
    -- The rows go back as the table's owner (its triggers and constraints run as for
    -- any write of the owner's), reading the kept copy through a grant that lasts
    -- only for this transaction's statement.
    PERFORM migsafe._internal(format('GRANT USAGE ON SCHEMA migsafe_recycle TO %I', pg_get_userbyid(target_owner)));
    PERFORM migsafe._internal(format('GRANT SELECT ON migsafe_recycle.%I TO %I', r.stored_as, pg_get_userbyid(target_owner)));
    IF r.kind = 'column' THEN
      IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = target AND attname = r.column_name AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'cannot restore column %: the table has a column of that name', r.column_name
          USING ERRCODE = '42701', HINT = 'Drop or rename that column first.';
      END IF;
      IF cardinality(r.key_columns) = 0 THEN
        RAISE EXCEPTION 'cannot restore column %: the table had no other column to match its rows by', r.column_name
          USING ERRCODE = '55000', HINT = format('The values are in migsafe_recycle.%I.', r.stored_as);
      END IF;
      -- as the owner: a domain's default and checks are evaluated for every row
      PERFORM migsafe._run_as(target_owner,
        format('ALTER TABLE %I.%I ADD COLUMN %I %s', r.schema_name, r.table_name, r.column_name, r.column_type), true);
      n := migsafe._run_as(target_owner,
        format('UPDATE %I.%I t SET %I = s.%I FROM migsafe_recycle.%I s WHERE %s',
               r.schema_name, r.table_name, r.column_name, r.column_name, r.stored_as,
               (SELECT string_agg(format('t.%I IS NOT DISTINCT FROM s.%I', kc, kc), ' AND ') FROM unnest(r.key_columns) kc)),
        false);
      done := done || format('%s of %s rows matched by %s', n, r.row_count, array_to_string(r.key_columns, ', '));
    ELSE
      SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
       WHERE a.attrelid = format('migsafe_recycle.%I', r.stored_as)::regclass AND a.attnum > 0 AND NOT a.attisdropped
         AND EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = target AND b.attname = a.attname
                       AND b.attnum > 0 AND NOT b.attisdropped AND b.attgenerated = '');
      n := migsafe._run_as(target_owner,
        format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM migsafe_recycle.%I',
               r.schema_name, r.table_name, cols, cols, r.stored_as),
        false);
      done := done || format('%s rows', n);
    END IF;
    PERFORM migsafe._internal(format('REVOKE SELECT ON migsafe_recycle.%I FROM %I', r.stored_as, pg_get_userbyid(target_owner)));
    PERFORM migsafe._internal(format('REVOKE USAGE ON SCHEMA migsafe_recycle FROM %I', pg_get_userbyid(target_owner)));
    PERFORM migsafe._internal(format('DROP TABLE migsafe_recycle.%I', r.stored_as));
  END IF;
  UPDATE migsafe.recycle x SET restored_at = clock_timestamp(), restored_by = session_user WHERE x.id = r.id;
  RETURN format('restored %s %s', CASE r.kind WHEN 'truncate' THEN 'the rows of' ELSE r.kind END,
                migsafe._key(r.schema_name, r.table_name) || coalesce('."' || replace(r.column_name, '"', '""') || '"', ''))
    || CASE WHEN cardinality(done) > 0 THEN '; ' || array_to_string(done, '; ') ELSE '' END
    || CASE WHEN cardinality(failed) > 0 THEN '; NOT restored: ' || array_to_string(failed, '; ') ELSE '' END;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.purge(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  age interval := coalesce(older_than, current_setting('migsafe.recycle_retention')::interval);
  r record;
  n bigint := 0;
BEGIN
  PERFORM migsafe._require_primary('migsafe.purge()');
  IF NOT migsafe._is_audit_writer() AND NOT migsafe._holds_role(session_user, 'migsafe_admin') THEN
    RAISE EXCEPTION 'role "%" may not purge the recycle bin', session_user
      USING ERRCODE = '42501', HINT = 'A superuser or a member of migsafe_admin (granted by a superuser) purges.';
  END IF;
  IF age < interval '0' THEN
    RAISE EXCEPTION 'older_than must not be negative, not %', age USING ERRCODE = '22023';
  END IF;
  FOR r IN SELECT * FROM migsafe.recycle x
            WHERE x.purged_at IS NULL AND x.restored_at IS NULL AND x.dropped_at <= clock_timestamp() - age
            ORDER BY x.id FOR UPDATE LOOP
    PERFORM migsafe._internal(format('DROP TABLE IF EXISTS migsafe_recycle.%I CASCADE', r.stored_as));
    UPDATE migsafe.recycle x SET purged_at = clock_timestamp() WHERE x.id = r.id;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

REVOKE ALL ON FUNCTION migsafe._dependents(oid), migsafe._not_recyclable(oid, boolean),
  migsafe._recycle_table(oid, boolean, bigint, text), migsafe._row_key(oid, name),
  migsafe._keep_or_refuse(bigint, bigint), migsafe._recycle_column(oid, name, bigint, text),
  migsafe._recycle_truncate(oid, bigint, text), migsafe.undrop(bigint, boolean), migsafe.purge(interval) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe.undrop(bigint, boolean) TO migsafe_admin, migsafe_approver;

GRANT EXECUTE ON FUNCTION migsafe.purge(interval) TO migsafe_admin;

CREATE OR REPLACE FUNCTION "_set_rollback_phase"(
	"id" bigint, /* Option < i64 > */
	"statements" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"owners" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"dry" bool DEFAULT false /* bool */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_rollback_approval_wrapper';

CREATE OR REPLACE FUNCTION "_split"(
	"sql" TEXT /* & str */
) RETURNS TABLE (
	"n" INT,  /* i32 */
	"statement" TEXT,  /* String */
	"runnable" bool,  /* bool */
	"why" TEXT  /* Option < String > */
)
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'split_wrapper';

CREATE OR REPLACE FUNCTION "check"(
	"sql" TEXT /* & str */
) RETURNS TABLE (
	"statement_no" INT,  /* i32 */
	"statement" TEXT,  /* String */
	"rule_id" TEXT,  /* String */
	"severity" TEXT,  /* String */
	"object" TEXT,  /* Option < String > */
	"lock_mode" TEXT,  /* Option < String > */
	"rewrites" bool,  /* bool */
	"data_loss" bool,  /* bool */
	"message" TEXT,  /* String */
	"hint" TEXT,  /* Option < String > */
	"decision" TEXT  /* String */
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_wrapper';

CREATE OR REPLACE FUNCTION "diff"(
	"from_snapshot" bigint, /* Option < i64 > */
	"to_snapshot" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"kind" TEXT,  /* String */
	"identity" TEXT,  /* String */
	"action" TEXT,  /* String */
	"before" jsonb,  /* Option < JsonB > */
	"after" jsonb,  /* Option < JsonB > */
	"loses_data" bool  /* bool */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'diff_wrapper';

CREATE OR REPLACE FUNCTION "rollback_sql"(
	"snapshot" bigint /* Option < i64 > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rollback_sql_wrapper';

CREATE OR REPLACE FUNCTION migsafe.verify(snapshot bigint DEFAULT NULL)
RETURNS TABLE (check_name text, object text, status text, detail text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sid bigint := snapshot;
  r record;
  mx numeric;
  nxt numeric;
  fails int := 0;
  warns int := 0;
  changes int := 0;
BEGIN
  IF sid IS NULL THEN
    SELECT max(s.id) INTO sid FROM migsafe.snapshots s;
  ELSIF NOT EXISTS (SELECT 1 FROM migsafe.snapshots s WHERE s.id = sid) THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot % does not exist (see migsafe.snapshots)', sid USING ERRCODE = '42704';
  END IF;
  IF sid IS NOT NULL THEN
    FOR r IN SELECT * FROM migsafe.diff(sid) LOOP
      changes := changes + 1;
      check_name := 'changed since snapshot ' || sid; object := r.identity; status := 'info';
      detail := r.kind || ' ' || r.action || CASE WHEN r.loses_data THEN ' (loses data)' ELSE '' END;
      RETURN NEXT;
    END LOOP;
  END IF;
  FOR r IN SELECT i.indexrelid::regclass::text AS idx, i.indrelid::regclass::text AS tbl
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_(toast_)?temp_' ORDER BY 1 LOOP
    fails := fails + 1;
    check_name := 'invalid index'; object := r.idx; status := 'fail';
    detail := format('index on %s is not valid (a failed or running CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY %s; then build it again', r.tbl, r.idx);
    RETURN NEXT;
  END LOOP;
  FOR r IN SELECT k.conname, coalesce(k.conrelid::regclass::text, k.contypid::regtype::text) AS tbl, k.contypid <> 0 AS dom
             FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
            WHERE NOT k.convalidated AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migsafe')
            ORDER BY 2, 1 LOOP
    warns := warns + 1;
    check_name := 'constraint not validated'; object := format('%I on %s', r.conname, r.tbl); status := 'warn';
    detail := format('NOT VALID: existing rows were never checked; ALTER %s %s VALIDATE CONSTRAINT %I',
                     CASE WHEN r.dom THEN 'DOMAIN' ELSE 'TABLE' END, r.tbl, r.conname);
    RETURN NEXT;
  END LOOP;
  FOR r IN SELECT s.seqrelid, s.seqrelid::regclass::text AS seq, d.refobjid AS tbl_oid,
                  format('%I.%I', tn.nspname, t.relname) AS tbl, a.attname,
                  s.seqincrement, s.seqstart, ps.last_value,
                  has_column_privilege(d.refobjid, a.attnum, 'SELECT')
                    AND has_sequence_privilege(s.seqrelid, 'SELECT, USAGE') AS readable,
                  -- reading the table runs no code of its owner's (no row-level
                  -- security policy, no foreign partition)
                  NOT t.relrowsecurity
                    AND (t.relkind = 'r' OR (t.relkind = 'p' AND NOT EXISTS (
                          SELECT 1 FROM pg_partition_tree(t.oid) pt JOIN pg_class lc ON lc.oid = pt.relid
                           WHERE pt.isleaf AND lc.relkind <> 'r'))) AS plain
             FROM pg_sequence s
             JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             JOIN pg_class t ON t.oid = d.refobjid
             JOIN pg_namespace tn ON tn.oid = t.relnamespace
             JOIN pg_class c ON c.oid = s.seqrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = c.relname
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'migsafe', 'migsafe_recycle')
              AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
            ORDER BY 2 LOOP
    IF NOT r.readable THEN
      check_name := 'sequence not checked'; object := r.seq; status := 'info';
      detail := format('no privilege to read %s or %s.%I', r.seq, r.tbl, r.attname);
      RETURN NEXT;
      CONTINUE;
    ELSIF NOT r.plain THEN
      check_name := 'sequence not checked'; object := r.seq; status := 'info';
      detail := format('reading %s would run code of its owner''s (row-level security or a foreign partition)', r.tbl);
      RETURN NEXT;
      CONTINUE;
    END IF;
    EXECUTE format('SELECT max(%I)::numeric FROM %s', r.attname, r.tbl) INTO mx;
    nxt := CASE WHEN r.last_value IS NULL THEN r.seqstart ELSE r.last_value + r.seqincrement END;
    IF mx IS NOT NULL AND r.seqincrement > 0 AND mx >= nxt THEN
      fails := fails + 1;
      check_name := 'sequence behind its column'; object := r.seq; status := 'fail';
      detail := format('next value %s, but %s.%I already holds %s: inserts will collide; SELECT setval(%L, %s)',
                       nxt, r.tbl, r.attname, mx, r.seq, mx);
      RETURN NEXT;
    END IF;
  END LOOP;
  check_name := 'summary'; object := NULL;
  status := CASE WHEN fails > 0 THEN 'fail' ELSE 'pass' END;
  detail := format('%s failed, %s warnings, %s', fails, warns,
                   CASE WHEN sid IS NULL THEN 'no snapshot to compare with'
                        ELSE format('%s changes since snapshot %s', changes, sid) END);
  RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.verify_ok(snapshot bigint DEFAULT NULL, strict boolean DEFAULT false) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT NOT EXISTS (SELECT 1 FROM migsafe.verify(snapshot) v
                      WHERE v.status = 'fail' OR (coalesce(strict, false) AND v.status = 'warn'))
$$;

CREATE OR REPLACE FUNCTION migsafe._rollback_check(snapshot bigint, dry_run boolean) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  req bigint;
BEGIN
  PERFORM migsafe._require_approver('roll back the schema');
  IF snapshot IS NULL OR dry_run IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot and dry_run must not be NULL' USING ERRCODE = '22004';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM migsafe.snapshot s WHERE s.id = snapshot) THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot % does not exist (see migsafe.snapshots)', snapshot USING ERRCODE = '42704';
  END IF;
  IF dry_run OR NOT current_setting('migsafe.require_approval')::boolean THEN
    RETURN NULL;
  END IF;
  SELECT p.id INTO req FROM migsafe.phase p
   WHERE p.kind = 'rollback' AND p.name = 'rollback to snapshot ' || snapshot
     AND p.requested_by = session_user AND p.approved_by IS NOT NULL AND p.approved_by <> session_user
     AND migsafe._state(p) = 'active'
   ORDER BY p.id DESC LIMIT 1;
  IF req IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: rollback to snapshot % needs the approval of a second approver (migsafe.require_approval is on)', snapshot
      USING ERRCODE = '55000',
            DETAIL = 'A rollback drops what was created since the snapshot: four eyes apply to it as to a contract phase.',
            HINT = format('SELECT migsafe.request_rollback(%s, reason => ''<ticket>''); a different member of migsafe_approver runs SELECT migsafe.approve(<id>); then run the rollback again.', snapshot);
  END IF;
  RETURN req;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._rollback_approve(snapshot bigint, dry_run boolean, force boolean)
RETURNS TABLE (step int, sql text, kind text, identity text, operation text, drops_table text,
               drops_column text, recreates_table text, recreates_column text, note text,
               executable boolean, loses_data boolean, owner text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  req bigint := migsafe._rollback_check(snapshot, dry_run);
  me oid := (SELECT r.oid FROM pg_roles r WHERE r.rolname = session_user);
  plan record;
  rel regclass;
  readable boolean;
  losses text[] := '{}';
  approved text[] := '{}';
  owners text[] := '{}';
  p_id bigint;
  holds boolean;
BEGIN
  IF force IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: force must not be NULL' USING ERRCODE = '22004';
  END IF;
  FOR plan IN SELECT * FROM migsafe._rollback_plan_for(snapshot, me) ORDER BY 1 LOOP
    rel := CASE WHEN plan.executable AND plan.drops_data AND plan.drops_table IS NOT NULL
                THEN to_regclass(plan.drops_table) END;
    -- Whether it holds data is read as the table's owner, and told only to a caller
    -- who may read it: for anyone else it is assumed to (force => true drops it).
    readable := rel IS NOT NULL AND CASE WHEN plan.drops_column IS NULL
                  THEN has_table_privilege(me, rel, 'SELECT')
                  ELSE has_column_privilege(me, rel, plan.drops_column, 'SELECT') END;
    holds := rel IS NOT NULL AND (NOT readable OR migsafe._holds_data(rel, plan.drops_column));
    IF holds THEN
      losses := losses || (CASE WHEN plan.drops_column IS NULL THEN 'table ' || plan.drops_table
                                ELSE 'column ' || plan.drops_table || '."' || replace(plan.drops_column, '"', '""') || '"' END
                           || CASE WHEN readable THEN '' ELSE ' (not readable by you: assumed to hold data)' END);
    END IF;
    step := plan.step; sql := plan.sql; kind := plan.kind; identity := plan.identity; operation := plan.operation;
    drops_table := plan.drops_table; drops_column := plan.drops_column; recreates_table := plan.recreates_table;
    recreates_column := plan.recreates_column; note := plan.note; executable := plan.executable; loses_data := holds;
    owner := plan.owner;
    IF plan.executable THEN
      approved := approved || plan.sql;
      owners := owners || plan.owner;
    END IF;
    RETURN NEXT;
  END LOOP;
  IF cardinality(losses) > 0 AND NOT force AND NOT dry_run THEN
    RAISE EXCEPTION 'pg_migsafe: rollback to snapshot % refused: it would drop data added since the snapshot (%)',
      snapshot, array_to_string(losses, ', ')
      USING ERRCODE = 'MS005',
            DETAIL = 'Objects created after the snapshot hold data now: ' || array_to_string(losses, '; ') || '.',
            HINT = format('Review with SELECT * FROM migsafe.rollback(%s); pass force => true to drop them (approved drops of tables still go to the recycle bin).', snapshot);
  END IF;
  IF req IS NOT NULL THEN
    p_id := req;
    UPDATE migsafe.phase SET state = 'used', used_xid = pg_current_xact_id(), ended_at = clock_timestamp() WHERE id = req;
    INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) VALUES (req, 'used', session_user, 'snapshot ' || snapshot);
  ELSE
    INSERT INTO migsafe.phase (kind, name, reason, objects, session_pid, session_start, requested_by, valid_until, state,
                               approved_by, approved_at)
    VALUES ('rollback', 'rollback to snapshot ' || snapshot,
            CASE WHEN dry_run THEN 'migsafe.rollback() dry run' ELSE 'migsafe.rollback()' END, '{}', pg_backend_pid(),
            (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()),
            session_user, clock_timestamp() + interval '1 day', 'active', session_user, clock_timestamp())
    RETURNING id INTO p_id;
    INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) VALUES (p_id, 'opened', session_user, 'snapshot ' || snapshot);
  END IF;
  -- (The rows are returned when this function ends: the phase is open before the
  -- caller runs any of them.)
  PERFORM migsafe._set_rollback_phase(p_id, approved, owners, dry_run);
END
$$;

CREATE OR REPLACE FUNCTION migsafe._rollback_end() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p_id bigint := migsafe._rollback_phase_id();
  n int;
BEGIN
  PERFORM migsafe._set_rollback_phase(NULL, NULL, NULL, false);
  IF p_id IS NOT NULL THEN
    UPDATE migsafe.phase SET state = 'ended', ended_at = clock_timestamp() WHERE id = p_id AND state = 'active';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
      INSERT INTO migsafe.phase_event (phase_id, event, by_role) VALUES (p_id, 'ended', session_user);
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION migsafe._rollback_run(snapshot bigint, dry_run boolean, force boolean) RETURNS SETOF migsafe.rollback_step
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p record;
  rid bigint;
  n int := 0;
  remaining int;
  reordered int;
  taken_at timestamptz;
  s migsafe.rollback_step;
BEGIN
  -- Nothing happens for a caller who may not roll back.
  PERFORM migsafe._rollback_check(snapshot, dry_run);
  SELECT s_.taken_at INTO taken_at FROM migsafe.snapshots s_ WHERE s_.id = snapshot;
  -- 1. Whatever the recycle bin kept since the snapshot comes back with its data.
  -- (Planning reads the live catalog: only when the bin holds something newer.)
  FOR p IN SELECT * FROM migsafe._rollback_plan(snapshot)
            WHERE recreates_table IS NOT NULL
              AND EXISTS (SELECT 1 FROM migsafe.recycle r WHERE r.kind IN ('table', 'column') AND r.restored_at IS NULL
                             AND r.purged_at IS NULL AND r.dropped_at >= taken_at)
            ORDER BY step LOOP
    SELECT r.id INTO rid FROM migsafe.recycle r
     WHERE r.restored_at IS NULL AND r.purged_at IS NULL AND r.dropped_at >= taken_at
       AND migsafe._key(r.schema_name, r.table_name) = p.recreates_table
       AND ((p.recreates_column IS NULL AND r.kind = 'table') OR r.column_name = p.recreates_column AND r.kind = 'column')
       -- The snapshot's object, not a namesake: a table in the bin comes back only if it
       -- belongs to the role that owned the snapshot's table, a column only into a table
       -- of that role (the snapshot records owners since 0.2.0).
       AND p.owner IS NOT NULL
       AND p.owner = CASE r.kind
             WHEN 'table' THEN (SELECT pg_get_userbyid(c.relowner) FROM pg_class c
                                  JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = 'migsafe_recycle' AND c.relname = r.stored_as)
             ELSE (SELECT pg_get_userbyid(c.relowner) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = r.schema_name AND c.relname = r.table_name) END
     ORDER BY r.id LIMIT 1;   -- the first drop after the snapshot took the snapshot's object
    IF rid IS NOT NULL THEN
      n := n + 1;
      s := (n, 'restore', coalesce(p.recreates_table || '."' || replace(p.recreates_column, '"', '""') || '"', p.recreates_table),
            format('SELECT migsafe.undrop(%s, dependents => false)', rid), 'done',
            migsafe.undrop(rid, false) || ' (recycle bin id ' || rid || ')');
      RETURN NEXT s;
    END IF;
  END LOOP;
  -- 2. The plan for what is left, approved statement by statement.
  FOR p IN SELECT * FROM migsafe._rollback_approve(snapshot, dry_run, force) a ORDER BY a.step LOOP
    n := n + 1;
    IF NOT p.executable THEN
      s := (n, p.operation, p.identity, p.sql, CASE p.operation WHEN 'note' THEN 'note' ELSE 'cannot revert' END, p.note);
    ELSE
      -- as the role that owns what the step creates or changes (src/recycle.rs)
      PERFORM migsafe._rollback_exec(p.sql);
      s := (n, p.operation, p.identity, p.sql, CASE WHEN p.loses_data AND dry_run THEN 'would lose data' ELSE 'done' END,
            concat_ws('; ',
              CASE WHEN p.loses_data AND dry_run THEN 'holds data added since the snapshot: needs force => true' END,
              CASE WHEN p.recreates_table IS NOT NULL THEN 'comes back empty: the recycle bin holds no copy' END,
              p.note));
    END IF;
    RETURN NEXT s;
  END LOOP;
  PERFORM migsafe._rollback_end();
  SELECT count(*) FILTER (WHERE d.kind <> 'column order'), count(*) FILTER (WHERE d.kind = 'column order')
    INTO remaining, reordered FROM migsafe.diff(snapshot) d;
  n := n + 1;
  s := (n, 'check', NULL, format('SELECT * FROM migsafe.diff(%s)', snapshot),
        CASE WHEN remaining = 0 THEN 'ok' ELSE 'differences remain' END,
        CASE WHEN remaining = 0 THEN 'the schema matches the snapshot'
                                     || CASE WHEN reordered > 0
                                             THEN ' (re-created columns are at the end of their table)' ELSE '' END
             ELSE remaining || ' differences remain: see migsafe.diff(' || snapshot || ')' END);
  RETURN NEXT s;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.rollback(snapshot bigint, dry_run boolean DEFAULT true, force boolean DEFAULT false)
RETURNS SETOF migsafe.rollback_step
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  steps migsafe.rollback_step[] := '{}';
  s migsafe.rollback_step;
BEGIN
  IF snapshot IS NULL OR dry_run IS NULL OR force IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot, dry_run and force must not be NULL' USING ERRCODE = '22004';
  END IF;
  IF NOT dry_run THEN
    PERFORM migsafe._require_primary('migsafe.rollback(dry_run => false)');
  END IF;
  PERFORM migsafe._rollback_check(snapshot, dry_run);
  IF NOT dry_run THEN
    RETURN QUERY SELECT * FROM migsafe._rollback_run(snapshot, false, force);
    RETURN;
  END IF;
  -- Dry run: the same steps, really executed, then rolled back.
  BEGIN
    steps := ARRAY(SELECT r FROM migsafe._rollback_run(snapshot, true, force) r);
    RAISE EXCEPTION USING ERRCODE = 'MS0DR';
  EXCEPTION
    WHEN SQLSTATE 'MS0DR' THEN NULL;
    WHEN OTHERS THEN
      steps := steps || (coalesce(cardinality(steps), 0) + 1, 'error', NULL, NULL, 'would fail',
                         SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')')::migsafe.rollback_step;
  END;
  FOREACH s IN ARRAY steps LOOP
    IF s.status = 'done' THEN
      s.status := 'would run';
    ELSIF s.action = 'check' THEN
      s.status := 'would be ' || s.status;
    END IF;
    RETURN NEXT s;
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION migsafe.dry_run(sql text) RETURNS SETOF migsafe.dry_run_step
LANGUAGE plpgsql AS $$
DECLARE
  st record;
  res migsafe.dry_run_step[] := '{}';
  r migsafe.dry_run_step;
  before_doc text;
  after_doc text;
  files jsonb;
  locks_before text[];
  t0 timestamptz;
  err text;
  failed boolean := false;
  n int := 0;
  findings jsonb;
  changes jsonb;
BEGIN
  IF sql IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: sql must not be NULL' USING ERRCODE = '22004';
  END IF;
  before_doc := migsafe._live_doc();
  BEGIN
    FOR st IN SELECT * FROM migsafe._split(sql) LOOP
      n := n + 1;
      SELECT jsonb_agg(jsonb_build_object('rule_id', c.rule_id, 'severity', c.severity, 'object', c.object,
                                          'lock_mode', c.lock_mode, 'rewrites', c.rewrites, 'data_loss', c.data_loss,
                                          'message', c.message, 'decision', c.decision))
        INTO findings FROM migsafe.check(st.statement) c WHERE c.rule_id <> 'safe';
      r := (n, st.statement, NULL, coalesce(findings, '[]'), '{}', '{}', NULL, NULL, NULL);
      IF failed THEN
        r.outcome := 'not run';
        r.detail := 'an earlier statement failed; a real run would stop there';
      ELSIF NOT st.runnable THEN
        r.outcome := 'not run';
        r.detail := st.why;
      ELSE
        SELECT jsonb_object_agg(c.oid::text, c.relfilenode) INTO files
          FROM pg_class c WHERE c.relkind IN ('r', 'm', 'p', 'i', 'S', 't') AND c.oid >= 16384;
        locks_before := ARRAY(SELECT l.relation::text || '/' || l.mode FROM pg_locks l
                               WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation >= 16384);
        t0 := clock_timestamp();
        err := NULL;
        BEGIN
          EXECUTE st.statement;
        EXCEPTION WHEN OTHERS THEN
          err := SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')';
          r.outcome := CASE WHEN SQLSTATE = 'MS001' THEN 'refused' ELSE 'error' END;
        END;
        r.duration_ms := round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 3);
        IF err IS NOT NULL THEN
          failed := true;
          r.detail := err;
        ELSE
          r.outcome := 'ok';
          r.locks := ARRAY(SELECT DISTINCT c.oid::regclass::text || ': ' || l.mode
                             FROM pg_locks l
                             JOIN pg_class c ON c.oid = l.relation
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation >= 16384
                              AND c.relkind IN ('r', 'p', 'm', 'v', 'S', 'i', 'I', 'f')
                              AND n.nspname NOT IN ('migsafe', 'migsafe_recycle', 'pg_toast')
                              AND l.relation::text || '/' || l.mode <> ALL (locks_before)
                            ORDER BY 1);
          r.rewritten := ARRAY(SELECT c.oid::regclass::text FROM pg_class c
                                WHERE files ? c.oid::text AND (files ->> c.oid::text)::oid <> c.relfilenode
                                  AND c.relkind IN ('r', 'm', 'p')
                                ORDER BY 1);
        END IF;
      END IF;
      res := res || r;
    END LOOP;
    after_doc := migsafe._live_doc();
    SELECT jsonb_agg(jsonb_build_object('kind', d.kind, 'identity', d.identity, 'action', d.action,
                                        'before', d.before, 'after', d.after, 'loses_data', d.loses_data))
      INTO changes FROM migsafe._diff_docs(before_doc::json, after_doc::json) d;
    RAISE EXCEPTION USING ERRCODE = 'MS0DR';
  EXCEPTION WHEN SQLSTATE 'MS0DR' THEN NULL;
  END;
  FOREACH r IN ARRAY res LOOP
    RETURN NEXT r;
  END LOOP;
  r := (n + 1, NULL, CASE WHEN failed THEN 'would fail' ELSE 'would succeed' END, NULL, NULL, NULL, NULL,
        format('%s statements; everything was rolled back; %s schema changes (see changes)', n, coalesce(jsonb_array_length(changes), 0)),
        coalesce(changes, '[]'));
  RETURN NEXT r;
END
$$;

REVOKE ALL ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean),
  migsafe._rollback_check(bigint, boolean), migsafe._rollback_approve(bigint, boolean, boolean),
  migsafe._rollback_end(), migsafe._rollback_run(bigint, boolean, boolean),
  migsafe.rollback(bigint, boolean, boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean)
  TO migsafe_admin, migsafe_approver, migsafe_auditor;

GRANT EXECUTE ON FUNCTION migsafe.rollback(bigint, boolean, boolean), migsafe._rollback_run(bigint, boolean, boolean),
  migsafe._rollback_check(bigint, boolean), migsafe._rollback_approve(bigint, boolean, boolean), migsafe._rollback_end(),
  migsafe._rollback_exec(text)
  TO migsafe_admin, migsafe_approver;

REVOKE ALL ON FUNCTION migsafe.diff(bigint, bigint), migsafe.rollback_sql(bigint), migsafe._rollback_plan(bigint),
  migsafe._rollback_plan_for(bigint, oid), migsafe._internal(text), migsafe._run_as(oid, text, boolean),
  migsafe._holds_data(oid, text), migsafe._set_rollback_phase(bigint, text[], text[], boolean), migsafe._rollback_phase_id(),
  migsafe._rollback_exec(text),
  migsafe._dependents(oid), migsafe._acl_entries(text), migsafe._copyable(oid), migsafe._catalog(jsonb),
  migsafe._snapshot_store(bigint, timestamptz, jsonb[], jsonb[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION migsafe.diff(bigint, bigint), migsafe.rollback_sql(bigint)
  TO migsafe_admin, migsafe_approver, migsafe_auditor;

GRANT EXECUTE ON FUNCTION migsafe._rollback_plan(bigint) TO migsafe_admin, migsafe_approver;

CREATE OR REPLACE FUNCTION "rules"() RETURNS TABLE (
	"id" TEXT,  /* String */
	"severity" TEXT,  /* String */
	"self_protection" bool,  /* bool */
	"check_only" bool,  /* bool */
	"lock_mode" TEXT,  /* String */
	"table_work" TEXT,  /* String */
	"rewrites" bool,  /* bool */
	"data_loss" bool,  /* bool */
	"title" TEXT,  /* String */
	"message" TEXT,  /* String */
	"safe_alternative" TEXT,  /* String */
	"setup_sql" TEXT,  /* String */
	"bad_example" TEXT,  /* String */
	"good_example" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rules_wrapper';

CREATE OR REPLACE FUNCTION "set_migration_name"(
	"name" TEXT /* & str */
) RETURNS void
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_migration_name_wrapper';

CREATE OR REPLACE FUNCTION "verify_log"() RETURNS TABLE (
	"ok" bool,  /* bool */
	"rows_checked" bigint,  /* i64 */
	"last_seq" bigint,  /* Option < i64 > */
	"broken_seq" bigint,  /* Option < i64 > */
	"reason" TEXT  /* String */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_log_wrapper';

COMMENT ON SCHEMA migsafe IS 'pg_migsafe: safe schema migrations, enforced in the server';

GRANT USAGE ON SCHEMA migsafe TO PUBLIC;


-- The upgrade itself goes into the audit log when this transaction commits.
SELECT migsafe._note_upgrade('0.2.0', '0.3.0');
