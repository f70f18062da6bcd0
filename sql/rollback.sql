-- Verify, roll back and dry-run: built from the Rust helpers in src/snapshot.rs
-- (_rollback_plan, _diff_docs, _live_doc, _split) and the recycle bin.
--
-- Who does what: verify() and the rollback's DDL run with the caller's rights (a
-- rollback changes only what its caller may change); the checks and the approval of
-- exactly the statements of the server-computed plan are SECURITY DEFINER functions
-- that check the caller's right first.

CREATE TYPE migsafe.rollback_step AS (
  step    int,
  action  text,
  object  text,
  sql     text,
  status  text,
  detail  text
);

CREATE TYPE migsafe.dry_run_step AS (
  step        int,
  statement   text,
  outcome     text,
  findings    jsonb,
  locks       text[],
  rewritten   text[],
  duration_ms numeric,
  detail      text,
  changes     jsonb
);

-- Post-migration checks; see docs/rollback.md. Status: ok, info, warn, fail.
-- Runs with the caller's rights: it shows nothing the caller could not read (a
-- sequence is compared with its column only where the caller may read both).
CREATE FUNCTION migsafe.verify(snapshot bigint DEFAULT NULL)
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

-- A deploy gate: true when verify() fails nothing (and, with strict, warns of nothing).
CREATE FUNCTION migsafe.verify_ok(snapshot bigint DEFAULT NULL, strict boolean DEFAULT false) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT NOT EXISTS (SELECT 1 FROM migsafe.verify(snapshot) v
                      WHERE v.status = 'fail' OR (coalesce(strict, false) AND v.status = 'warn'))
$$;

-- May this session roll back to `snapshot` now? An approver; with
-- migsafe.require_approval (four eyes) and not a dry run, only with a rollback request
-- of its own that a different approver approved. Returns that request (or NULL).
CREATE FUNCTION migsafe._rollback_check(snapshot bigint, dry_run boolean) RETURNS bigint
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

-- The rollback plan for `snapshot`, computed here, and the phase that approves exactly
-- its statements for the current (sub)transaction (for a dry run: work that must be
-- rolled back). Refuses (MS005) to drop data added since the snapshot without force.
-- Calling it directly gives no more than migsafe.rollback() does.
CREATE FUNCTION migsafe._rollback_approve(snapshot bigint, dry_run boolean, force boolean)
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

-- Ends the rollback phase of this session's (sub)transaction.
CREATE FUNCTION migsafe._rollback_end() RETURNS void
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

CREATE FUNCTION migsafe._rollback_run(snapshot bigint, dry_run boolean, force boolean) RETURNS SETOF migsafe.rollback_step
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

-- Takes the live schema back to a snapshot; see docs/rollback.md.
CREATE FUNCTION migsafe.rollback(snapshot bigint, dry_run boolean DEFAULT true, force boolean DEFAULT false)
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

-- Runs a migration in a transaction that is always rolled back; see docs/rollback.md.
-- No SET search_path: the statements run with the caller's, as in a real run.
CREATE FUNCTION migsafe.dry_run(sql text) RETURNS SETOF migsafe.dry_run_step
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

REVOKE ALL ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean),
  migsafe._rollback_check(bigint, boolean), migsafe._rollback_approve(bigint, boolean, boolean),
  migsafe._rollback_end(), migsafe._rollback_run(bigint, boolean, boolean),
  migsafe.rollback(bigint, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean)
  TO migsafe_admin, migsafe_approver, migsafe_auditor;
-- rollback() runs as its caller; the helpers it calls check the caller themselves.
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
