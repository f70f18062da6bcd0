-- Two-phase approval: tables, roles and functions (part of the extension script).
-- The tables are written only by these SECURITY DEFINER functions and by the hook;
-- DDL on them is refused by pg_migsafe's self-protection.

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'migsafe_admin') THEN
    CREATE ROLE migsafe_admin NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'migsafe_approver') THEN
    CREATE ROLE migsafe_approver NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'migsafe_auditor') THEN
    CREATE ROLE migsafe_auditor NOLOGIN;
  END IF;
END
$roles$;

CREATE TABLE migsafe.phase (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind          text        NOT NULL CHECK (kind IN ('expand', 'contract', 'rollback', 'standing')),
  name          text        NOT NULL CHECK (name <> ''),
  reason        text,
  objects       text[]      NOT NULL DEFAULT '{}',
  for_role      name,
  session_pid   int,
  session_start timestamptz,
  requested_by  name        NOT NULL,
  requested_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  valid_until   timestamptz NOT NULL,
  skip_expand   boolean     NOT NULL DEFAULT false,
  keep_data     boolean     NOT NULL DEFAULT true,
  state         text        NOT NULL CHECK (state IN ('pending', 'active', 'ended', 'rejected', 'used')),
  approved_by   name,
  approved_at   timestamptz,
  rejected_by   name,
  reject_reason text,
  ended_at      timestamptz,
  used_xid      xid8,
  -- A phase for a role that covers every transaction of the role until it ends or
  -- expires (a deploy of several migrations, each committed on its own), instead of
  -- being spent by the first transaction that uses it.
  deploy        boolean     NOT NULL DEFAULT false,
  -- A standing approval (kind 'standing', migsafe.grant_standing_approval()): the
  -- partitions it covers are those whose range ended at least this long ago.
  older_than    interval
);

CREATE TABLE migsafe.phase_use (
  phase_id  bigint      NOT NULL REFERENCES migsafe.phase (id),
  used_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  used_by   name        NOT NULL,
  rule_ids  text[]      NOT NULL,
  objects   text[]      NOT NULL,
  statement text        NOT NULL
);

CREATE TABLE migsafe.phase_event (
  phase_id bigint      NOT NULL REFERENCES migsafe.phase (id),
  at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  event    text        NOT NULL CHECK (event IN ('requested', 'approved', 'rejected', 'opened', 'ended', 'expired', 'used')),
  by_role  name        NOT NULL,
  detail   text
);

CREATE TABLE migsafe.backup (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  label       text        NOT NULL CHECK (label <> ''),
  location    text        NOT NULL CHECK (location <> ''),
  recorded_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  recorded_by name        NOT NULL
);

-- Work objects (src/work.rs, docs/tools.md): what a maintenance tool (pg_repack)
-- creates for one operation and drops when it is done. Recorded by the hook, as the
-- superuser, when the creating transaction commits; while the creating session runs,
-- sessions of the same role drop them without an approval.
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

REVOKE ALL ON migsafe.phase, migsafe.phase_use, migsafe.phase_event, migsafe.backup, migsafe.work_object FROM PUBLIC;

-- Every function of the extension runs with search_path = pg_catalog, pg_temp (pg_temp
-- last: a temporary table cannot stand in for a catalog, and functions and operators
-- are never looked up there), so no object of the caller's can replace one of
-- PostgreSQL's. See docs/security.md.

-- The state as of now: a time-boxed phase past its end is expired, a session phase
-- whose session is gone has ended. SECURITY DEFINER: whether another user's session
-- still runs (pg_stat_activity.backend_start) is hidden from approvers and auditors,
-- who read this through migsafe.phases; it tells them nothing else.
CREATE FUNCTION migsafe._state(p migsafe.phase) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN p.state IN ('active', 'pending') AND p.valid_until <= pg_catalog.clock_timestamp() THEN 'expired'
    WHEN p.state = 'active' AND p.for_role IS NULL AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_stat_activity a
            WHERE a.pid = p.session_pid AND a.backend_start = p.session_start) THEN 'ended'
    ELSE p.state END
$$;

CREATE VIEW migsafe.phases AS
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

GRANT SELECT ON migsafe.phases TO migsafe_admin, migsafe_approver, migsafe_auditor;
GRANT SELECT ON migsafe.phase, migsafe.phase_use, migsafe.phase_event, migsafe.backup, migsafe.work_object
  TO migsafe_auditor;

-- Does role `member` hold `role` in a way that counts for approvals? A superuser
-- holds every role. Otherwise a membership (direct or through other roles) counts;
-- with migsafe.approvers_granted_by_superuser = on (the default) only through grants
-- whose grantor is a superuser, so that a holder of CREATEROLE cannot make a second
-- login of its own an approver (docs/security.md).
CREATE FUNCTION migsafe._holds_role(who name, target name) RETURNS boolean
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

-- Raises 25006 on a standby: the functions that write (phases, snapshots, backups,
-- the recycle bin, rollbacks) run on the primary. Their readers (check, diff, verify,
-- the views) work on a standby.
CREATE FUNCTION migsafe._require_primary(what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.pg_is_in_recovery() THEN
    RAISE EXCEPTION 'pg_migsafe: % writes, and this server is a standby (in recovery): run it on the primary', what
      USING ERRCODE = '25006',
            HINT = 'Phases, snapshots, backups, the recycle bin and rollbacks live on the primary and replicate to the standbys.';
  END IF;
END
$$;

CREATE FUNCTION migsafe._can_approve(r name) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT migsafe._holds_role(r, 'migsafe_approver') OR migsafe._holds_role(r, 'migsafe_admin')
$$;

-- Raises 42501 unless the session user may approve (see _can_approve): the one check
-- behind contract phases, backups, rollbacks and restores from the recycle bin.
CREATE FUNCTION migsafe._require_approver(action text) RETURNS void
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

CREATE FUNCTION migsafe._backup_ok(window_ interval) RETURNS text
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

CREATE FUNCTION migsafe.begin_phase(
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

CREATE FUNCTION migsafe.end_phase(phase_id bigint DEFAULT NULL) RETURNS bigint
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

-- The pending phase an approver decides on, locked; errors for anything else.
CREATE FUNCTION migsafe._pending_for_decision(phase_id bigint) RETURNS migsafe.phase
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

CREATE FUNCTION migsafe.approve(phase_id bigint) RETURNS bigint
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

CREATE FUNCTION migsafe.reject(phase_id bigint, reason text DEFAULT NULL) RETURNS bigint
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

CREATE FUNCTION migsafe.current_phase()
RETURNS TABLE (id bigint, kind text, name text, objects text[], valid_until timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, NULLIF(p.valid_until, 'infinity') FROM migsafe.phase p
   WHERE migsafe._state(p) = 'active'
     AND ((p.for_role IS NULL AND p.session_pid = pg_backend_pid())
          OR p.for_role = session_user OR p.for_role = current_user)
   ORDER BY p.id
$$;

CREATE FUNCTION migsafe.record_backup(label text, location text) RETURNS bigint
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

-- Used by the hook (as the extension's owner) to find the phases that may approve a
-- statement of this session: its own session phases, and phases for its roles.
CREATE FUNCTION migsafe._phases_for_session(session_role name, current_role_ name)
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

-- Used by the hook (as the extension's owner) when it refuses a statement: the phases
-- for the session's roles that an earlier transaction spent while they were still
-- valid, so that the refusal can say a phase was there and is spent.
CREATE FUNCTION migsafe._spent_phases_for_session(session_role name, current_role_ name)
RETURNS TABLE (id bigint, kind text, name text, objects text[], ended_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id, p.kind, p.name, p.objects, p.ended_at FROM migsafe.phase p
   WHERE p.state = 'used' AND p.used_xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
     AND p.valid_until > clock_timestamp()
     AND p.for_role IN (session_role, current_role_)
   ORDER BY p.id DESC
   LIMIT 20
$$;

-- Records that a phase approved a statement. A phase for a role is used up by the
-- transaction that ran approved statements: if it commits, the phase is spent; if it
-- rolls back, so does this update. A deploy phase is not: it covers every transaction
-- of its role until it ends or expires.
CREATE FUNCTION migsafe._record_use(p_id bigint, by_role name, rule_ids text[], objs text[], stmt text)
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

-- A rollback that needs a second approver (migsafe.require_approval = on): the
-- request, approved with migsafe.approve(id) by a different approver, lets the
-- requester's migsafe.rollback(snapshot, dry_run => false) run (see rollback.sql).
CREATE FUNCTION migsafe.request_rollback(snapshot bigint, reason text DEFAULT NULL, valid_for interval DEFAULT '1 hour')
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

-- Standing approvals (docs/tools.md): a maintenance role (pg_partman's retention)
-- may drop or detach the partitions of one partitioned table whose range ended at
-- least `older_than` ago, every day, without a phase per run. Granted by an approver
-- (and, with migsafe.require_approval, approved by a second one: migsafe.approve(id));
-- no expiry unless valid_for says; revoked with migsafe.end_phase(id); every statement
-- it approves is in migsafe.phase_use and the audit log.
CREATE FUNCTION migsafe.grant_standing_approval(
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

REVOKE ALL ON FUNCTION migsafe._spent_phases_for_session(name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION migsafe._phases_for_session(name, name), migsafe._record_use(bigint, name, text[], text[], text),
  migsafe._can_approve(name), migsafe._holds_role(name, name), migsafe._require_approver(text),
  migsafe._backup_ok(interval), migsafe._pending_for_decision(bigint), migsafe._state(migsafe.phase),
  migsafe._check_objects(text[]), migsafe.request_rollback(bigint, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe._state(migsafe.phase) TO migsafe_admin, migsafe_approver, migsafe_auditor;
GRANT EXECUTE ON FUNCTION migsafe.request_rollback(bigint, text, interval) TO migsafe_admin, migsafe_approver;
