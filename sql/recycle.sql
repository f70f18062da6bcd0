-- The recycle bin: what approved DROP TABLE, DROP COLUMN and TRUNCATE statements
-- took away, kept in schema migsafe_recycle until migsafe.purge() or the retention
-- (migsafe.recycle_retention, purged by the audit worker) ends it.
-- The hook calls the _recycle_* functions; their own DDL runs through
-- migsafe._internal(), which the hook does not inspect. Everything that can fire code
-- a user wrote (triggers, constraints, index expressions, view queries, foreign-key
-- checks) runs as the owner of the object concerned, security-restricted, through
-- migsafe._run_as() (src/recycle.rs): rows are copied into the bin only from plain
-- tables, which run no user code when read.

CREATE SCHEMA migsafe_recycle;
REVOKE ALL ON SCHEMA migsafe_recycle FROM PUBLIC;

CREATE TABLE migsafe.recycle (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         text        NOT NULL CHECK (kind IN ('table', 'column', 'truncate')),
  schema_name  name        NOT NULL,
  table_name   name        NOT NULL,
  column_name  name,
  column_type  text,
  stored_as    name        NOT NULL,
  key_columns  name[]      NOT NULL DEFAULT '{}',
  renamed      jsonb       NOT NULL DEFAULT '{}',   -- stored name -> original name (indexes, sequences)
  dependents   jsonb       NOT NULL DEFAULT '[]',   -- [{kind, name, sql, level, owner, acl}] re-created by undrop
  row_count    bigint,
  bytes        bigint,
  phase_id     bigint,
  statement    text,
  dropped_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  dropped_by   name        NOT NULL DEFAULT session_user,
  restored_at  timestamptz,
  restored_by  name,
  purged_at    timestamptz
);
REVOKE ALL ON migsafe.recycle FROM PUBLIC;

CREATE VIEW migsafe.recycle_bin AS
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

-- Objects outside the table that depend on it: views (recursively), foreign keys of
-- other tables, and anything else (reported as 'other': the table is then not
-- recycled and the real DROP decides). With each, the role that owns it (views) or
-- owns the table it is on (foreign keys), and a view's privileges: undrop re-creates
-- them as that role, with those privileges and nothing more.
CREATE FUNCTION migsafe._dependents(rel oid)
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

-- The entries of one ACL item (aclitem text); none for an item naming a role that no
-- longer exists.
CREATE FUNCTION migsafe._acl_entries(item text)
RETURNS TABLE (privilege_type text, grantee oid, is_grantable boolean)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT a.privilege_type, a.grantee, a.is_grantable FROM aclexplode(ARRAY[item::aclitem]) a;
EXCEPTION WHEN OTHERS THEN
  RETURN;
END
$$;

-- Can the rows of a table be copied into the recycle bin without running code of the
-- user's? A plain table, or a partitioned one whose partitions are all plain tables
-- (a foreign partition would be read through its wrapper).
CREATE FUNCTION migsafe._copyable(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel)
           WHEN 'r' THEN true
           WHEN 'p' THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_tree(rel) t
                                       JOIN pg_catalog.pg_class c ON c.oid = t.relid
                                      WHERE t.isleaf AND c.relkind <> 'r')
           ELSE false END
$$;

-- Why a table cannot be moved to the recycle bin (NULL: it can).
CREATE FUNCTION migsafe._not_recyclable(rel oid, cascade boolean) RETURNS text
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

-- Moves a table into the recycle bin (the hook calls it for an approved DROP TABLE);
-- returns the recycle bin id.
-- (DateStyle and TimeZone pinned: a partition's bounds are stored as text for undrop,
-- and must read back the same whatever the dropping session's settings.)
CREATE FUNCTION migsafe._recycle_table(rel oid, cascade boolean, phase_id bigint, statement text) RETURNS bigint
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

-- The row key of a table: primary key, else a unique index on NOT NULL columns,
-- else every column (the whole row is the key).
CREATE FUNCTION migsafe._row_key(rel oid, except_column name) RETURNS name[]
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

-- May a copy of `bytes` go to the recycle bin? 1: yes; 0: no, and the contract phase
-- allows losing it (keep_data => false); -1: no, refuse the statement (the hook raises
-- MS001 with the limit in the message).
CREATE FUNCTION migsafe._keep_or_refuse(bytes bigint, phase_id bigint) RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE WHEN bytes <= pg_size_bytes(current_setting('migsafe.recycle_max_bytes')) THEN 1
              WHEN EXISTS (SELECT 1 FROM migsafe.phase p WHERE p.id = phase_id AND NOT p.keep_data) THEN 0
              ELSE -1 END
$$;

-- Keeps a column's values with the row key before an approved DROP COLUMN.
CREATE FUNCTION migsafe._recycle_column(rel oid, col name, phase_id bigint, statement text) RETURNS bigint
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

-- Keeps a table's rows before an approved TRUNCATE.
CREATE FUNCTION migsafe._recycle_truncate(rel oid, phase_id bigint, statement text) RETURNS bigint
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

-- Puts back what the recycle bin holds under `id`: a dropped table (name, data,
-- indexes, and with dependents => true the views and foreign keys that went with
-- it), a dropped column's values, or truncated rows. Returns what it did.
-- Moving and renaming run no code of the user's and run as the extension's owner;
-- writing rows back (triggers, constraints, index expressions fire) and re-creating
-- views and foreign keys run as the owner of the object, security-restricted
-- (migsafe._run_as), and a view gets back its owner and its privileges, no more.
CREATE FUNCTION migsafe.undrop(id bigint, dependents boolean DEFAULT true) RETURNS text
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

-- Drops what the recycle bin kept longer than `older_than` (default: the
-- migsafe.recycle_retention setting); returns how many entries were purged.
CREATE FUNCTION migsafe.purge(older_than interval DEFAULT NULL) RETURNS bigint
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
