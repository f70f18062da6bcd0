-- pg_migsafe 0.4.0 -> 0.5.0 (ALTER EXTENSION pg_migsafe UPDATE TO '0.5.0').
-- See CHANGELOG.md: migsafe.dry_run() runs a CONCURRENTLY statement in its plain form
-- (new helper migsafe._in_transaction_form); a phase for a role can cover a whole
-- deploy (migsafe.phase.deploy, begin_phase(..., deploy => true)), and a refusal says
-- when a phase was spent by an earlier transaction (migsafe._spent_phases_for_session);
-- maintenance tools' work objects are recorded (migsafe.work_object).
-- Rows are kept as they are (tests/integration/test_upgrade.py compares an updated
-- database with a fresh install, catalog by catalog).

-- Phases that cover a deploy: existing phases keep their behaviour.
ALTER TABLE migsafe.phase ADD COLUMN deploy boolean NOT NULL DEFAULT false;

-- Work objects of maintenance tools (pg_repack).
CREATE TABLE migsafe.work_object (
  classid       oid         NOT NULL,
  objid         oid         NOT NULL,
  identity      text        NOT NULL,
  created_by    name        NOT NULL,
  session_pid   int         NOT NULL,
  session_start timestamptz NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (classid, objid)
);
REVOKE ALL ON migsafe.work_object FROM PUBLIC;
GRANT SELECT ON migsafe.work_object TO migsafe_auditor;

CREATE OR REPLACE FUNCTION "_in_transaction_form"(
	"statement" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
STRICT STABLE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'in_transaction_form_wrapper';

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
  cmm text;
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
      ELSIF NOT st.runnable AND migsafe._in_transaction_form(st.statement) IS NULL THEN
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
          IF st.runnable THEN
            EXECUTE st.statement;
          ELSE
            -- CONCURRENTLY cannot run in the dry run's transaction: its plain form makes
            -- the same change, so that the statements after it are judged as if it had
            -- run. The guard's warnings about the plain form are not the migration's.
            cmm := current_setting('client_min_messages');
            PERFORM set_config('client_min_messages', 'error', true);
            EXECUTE migsafe._in_transaction_form(st.statement);
            PERFORM set_config('client_min_messages', cmm, true);
          END IF;
        EXCEPTION WHEN OTHERS THEN
          err := SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')';
          r.outcome := CASE WHEN SQLSTATE = 'MS001' THEN 'refused' ELSE 'error' END;
        END;
        r.duration_ms := round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 3);
        IF err IS NOT NULL THEN
          failed := true;
          r.detail := err;
        ELSIF NOT st.runnable THEN
          r.outcome := 'ok';
          r.detail := st.why || '. Replayed here without CONCURRENTLY, so that the statements after it see its effect; '
                      'a real run takes none of the plain form''s locks and its duration differs';
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

-- begin_phase() gains deploy; the rest as a fresh 0.5.0 install has it (drafted from
-- pg_migsafe--0.5.0.sql by tests/tools/upgrade_draft.py).
DROP FUNCTION migsafe.begin_phase(text, text, text, text[], name, interval, boolean, boolean);

CREATE OR REPLACE FUNCTION migsafe.begin_phase(
  kind text,
  name text,
  reason text DEFAULT NULL,
  objects text[] DEFAULT '{}',
  for_role name DEFAULT NULL,
  valid_for interval DEFAULT '1 hour',
  skip_expand boolean DEFAULT false,
  keep_data boolean DEFAULT true,
  deploy boolean DEFAULT false
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
  IF deploy IS NULL OR (deploy AND for_role IS NULL) THEN
    RAISE EXCEPTION 'deploy => true is for a phase opened for a role (for_role => ...)'
      USING ERRCODE = '22023',
            HINT = 'A phase of your own session covers every transaction of the session already.';
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
                             requested_by, valid_until, skip_expand, keep_data, state, deploy)
  SELECT kind, name, reason, norm, for_role,
         CASE WHEN for_role IS NULL THEN pg_backend_pid() END,
         CASE WHEN for_role IS NULL THEN (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()) END,
         caller, clock_timestamp() + valid_for, skip_expand, coalesce(keep_data, true), initial_state,
         begin_phase.deploy
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

CREATE OR REPLACE FUNCTION migsafe._spent_phases_for_session(session_role name, current_role_ name)
RETURNS TABLE (id bigint, kind text, name text, objects text[], ended_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, p.ended_at FROM migsafe.phase p
   WHERE p.state = 'used' AND p.used_xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
     AND p.valid_until > clock_timestamp()
     AND p.for_role IN (session_role, current_role_)
   ORDER BY p.id DESC
   LIMIT 20
$$;

REVOKE ALL ON FUNCTION migsafe._spent_phases_for_session(name, name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION migsafe._record_use(p_id bigint, by_role name, rule_ids text[], objs text[], stmt text)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO migsafe.phase_use (phase_id, used_by, rule_ids, objects, statement)
  VALUES (p_id, by_role, rule_ids, objs, stmt);
  WITH spent AS (
    UPDATE migsafe.phase SET state = 'used', used_xid = pg_current_xact_id(), ended_at = clock_timestamp()
     WHERE id = p_id AND for_role IS NOT NULL AND state = 'active' AND NOT deploy
    RETURNING id)
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail)
  SELECT id, 'used', by_role, 'spent by the transaction that ran it' FROM spent;
$$;

CREATE OR REPLACE VIEW migsafe.phases AS
SELECT p.id, p.kind, p.name, migsafe._state(p) AS state, p.reason, p.objects,
       coalesce(p.for_role::text, 'own session (pid ' || p.session_pid || ')') AS scope,
       p.requested_by, p.requested_at, p.valid_until, p.skip_expand, p.keep_data,
       p.approved_by, p.approved_at, p.rejected_by, p.reject_reason, p.ended_at,
       (SELECT count(*) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements_approved,
       (SELECT array_agg(u.statement ORDER BY u.used_at) FROM migsafe.phase_use u WHERE u.phase_id = p.id) AS statements,
       p.deploy
  FROM migsafe.phase p;

-- The upgrade itself goes into the audit log when this transaction commits.
SELECT migsafe._note_upgrade('0.4.0', '0.5.0');
