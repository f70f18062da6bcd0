-- Declarative partitioning: CREATE ... PARTITION OF, ATTACH/DETACH PARTITION, default
-- partitions, indexes on partitioned tables. Format and labelling: docs/accuracy.md.

-- case: create-partition-no-default
-- label: safe
-- why: a new empty partition when there is no default partition: nothing is scanned, the parent lock is momentary
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: create-partition-with-populated-default
-- label: dangerous
-- why: with a populated default partition, PostgreSQL scans the default partition to prove no row belongs to the new one, under ACCESS EXCLUSIVE
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_default PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, date '2024-06-01' + (g % 30), 'late', NULL FROM generate_series(6001, 9000) g;
ANALYZE events_default;
-- migration:
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: create-default-partition
-- label: safe
-- why: a new, empty default partition: no existing rows need to move, nothing is scanned
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- case: attach-partition-without-check
-- label: dangerous
-- why: ATTACH PARTITION scans the populated table to check the bound, holding ACCESS EXCLUSIVE on it; the manual advises a matching CHECK first to skip the scan
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_2024_03 (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text);
INSERT INTO events_2024_03 SELECT g, date '2024-03-01' + (g % 31), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 5000) g;
ANALYZE events_2024_03;
-- migration:
ALTER TABLE events ATTACH PARTITION events_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: attach-partition-with-matching-check
-- label: safe
-- why: a validated CHECK matching the bound lets ATTACH skip the scan (the manual's recipe); the parent takes only SHARE UPDATE EXCLUSIVE
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_2024_03 (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text);
INSERT INTO events_2024_03 SELECT g, date '2024-03-01' + (g % 31), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 5000) g;
ANALYZE events_2024_03;
ALTER TABLE events_2024_03 ADD CONSTRAINT events_2024_03_range CHECK (created_at >= '2024-03-01' AND created_at < '2024-04-01');
-- migration:
ALTER TABLE events ATTACH PARTITION events_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: attach-partition-with-populated-default
-- label: dangerous
-- why: even with a matching CHECK, a populated default partition is scanned for rows that would belong to the new partition, under ACCESS EXCLUSIVE on the default
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_default PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, date '2024-06-01' + (g % 30), 'late', NULL FROM generate_series(6001, 9000) g;
ANALYZE events_default;
CREATE TABLE events_2024_03 (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text);
INSERT INTO events_2024_03 SELECT g, date '2024-03-01' + (g % 31), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 5000) g;
ANALYZE events_2024_03;
ALTER TABLE events_2024_03 ADD CONSTRAINT events_2024_03_range CHECK (created_at >= '2024-03-01' AND created_at < '2024-04-01');
-- migration:
ALTER TABLE events ATTACH PARTITION events_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: attach-empty-table
-- label: safe
-- why: attaching an empty, just-created table: the bound check scans nothing
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_2024_03 (LIKE events INCLUDING ALL);
-- migration:
ALTER TABLE events ATTACH PARTITION events_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: detach-partition
-- label: dangerous
-- why: DETACH PARTITION takes ACCESS EXCLUSIVE on the parent (every query on events blocks) and its rows disappear from the parent
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events DETACH PARTITION events_2024_01;

-- case: detach-partition-concurrently
-- label: safe
-- why: DETACH ... CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on the parent: queries on events continue (the usual archiving step, run alone)
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events DETACH PARTITION events_2024_01 CONCURRENTLY;

-- case: drop-partition
-- label: dangerous
-- why: dropping a partition deletes its rows
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
DROP TABLE events_2024_01;

-- case: truncate-partition
-- label: dangerous
-- why: truncating a partition deletes its rows
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
TRUNCATE events_2024_01;

-- case: create-index-concurrently-on-partitioned-parent
-- label: dangerous
-- why: PostgreSQL 15 cannot create an index CONCURRENTLY on a partitioned table: the statement fails
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind);

-- case: create-index-on-partitioned-parent
-- label: dangerous
-- why: a plain index on the partitioned table builds one index per partition, holding SHARE on each: writes blocked across the table
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE INDEX events_kind_idx ON events (kind);

-- case: create-index-on-only-parent
-- label: safe
-- why: CREATE INDEX ON ONLY the parent creates an invalid, empty index and recurses into no partition: momentary
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE INDEX events_kind_idx ON ONLY events (kind);

-- case: create-index-concurrently-on-partition
-- label: safe
-- why: CONCURRENTLY on one leaf partition: writes continue (the manual's recipe for partitioned indexes)
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE INDEX CONCURRENTLY events_2024_01_kind_idx ON events_2024_01 (kind);

-- case: alter-index-attach-partition
-- label: safe
-- why: ALTER INDEX ... ATTACH PARTITION adopts an existing partition index into the parent index: catalog change
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE INDEX events_kind_idx ON ONLY events (kind);
CREATE INDEX events_2024_01_kind_idx ON events_2024_01 (kind);
-- migration:
ALTER INDEX events_kind_idx ATTACH PARTITION events_2024_01_kind_idx;

-- case: add-column-to-partitioned-parent
-- label: safe
-- why: a nullable ADD COLUMN on the partitioned table is catalog-only on every partition
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events ADD COLUMN source text;

-- case: alter-type-on-partitioned-parent
-- label: dangerous
-- why: bigint -> integer on the parent rewrites every partition under ACCESS EXCLUSIVE and fails on overflow
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events ALTER COLUMN id TYPE integer;

-- case: set-not-null-on-partitioned-parent
-- label: dangerous
-- why: SET NOT NULL on the parent scans every partition under ACCESS EXCLUSIVE
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events ALTER COLUMN payload SET NOT NULL;

-- case: add-check-on-partitioned-parent
-- label: dangerous
-- why: ADD CHECK on the parent validates every partition under ACCESS EXCLUSIVE
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events ADD CONSTRAINT events_kind_nonempty CHECK (kind <> '');

-- case: add-check-not-valid-on-partition
-- label: safe
-- why: NOT VALID on a leaf partition: no scan (partitioned parents do not accept NOT VALID checks, leaves do)
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events_2024_01 ADD CONSTRAINT events_2024_01_kind_nonempty CHECK (kind <> '') NOT VALID;

-- case: list-partition-create
-- label: safe
-- why: a new list partition without a default partition: no scan
-- setup:
CREATE TABLE tenants_data (tenant text NOT NULL, id bigint NOT NULL, body text) PARTITION BY LIST (tenant);
CREATE TABLE tenants_data_acme PARTITION OF tenants_data FOR VALUES IN ('acme');
INSERT INTO tenants_data SELECT 'acme', g, 'row ' || g FROM generate_series(1, 5000) g;
ANALYZE tenants_data;
-- migration:
CREATE TABLE tenants_data_globex PARTITION OF tenants_data FOR VALUES IN ('globex');

-- case: multi-new-partition-and-its-index
-- label: safe
-- why: a new partition (no default partition) and an index on that empty partition, created in the same migration
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE INDEX events_2024_03_kind_idx ON events_2024_03 (kind);

-- case: multi-detach-concurrently-then-drop
-- label: dangerous
-- why: DETACH ... CONCURRENTLY cannot run inside a transaction block, so the migration fails; and the DROP would delete the partition's rows
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events DETACH PARTITION events_2024_01 CONCURRENTLY;
DROP TABLE events_2024_01;

-- case: multi-detach-then-rename-archive
-- label: dangerous
-- why: plain DETACH takes ACCESS EXCLUSIVE on the partitioned table and removes January's rows from it
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
-- migration:
ALTER TABLE events DETACH PARTITION events_2024_01;
ALTER TABLE events_2024_01 RENAME TO events_archive_2024_01;

-- case: multi-check-then-attach-same-migration
-- label: dangerous
-- why: adding the CHECK in the same migration as the ATTACH only moves the scan: the populated table is scanned under ACCESS EXCLUSIVE, as without the CHECK
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE TABLE events_2024_03 (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text);
INSERT INTO events_2024_03 SELECT g, date '2024-03-01' + (g % 31), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 5000) g;
ANALYZE events_2024_03;
-- migration:
ALTER TABLE events_2024_03 ADD CONSTRAINT events_2024_03_range CHECK (created_at >= '2024-03-01' AND created_at < '2024-04-01');
ALTER TABLE events ATTACH PARTITION events_2024_03 FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');

-- case: multi-partitioned-index-recipe
-- label: safe
-- why: index on ONLY the parent, then attach a partition index that already exists: no build on a populated table
-- setup:
CREATE TABLE events (id bigint NOT NULL, created_at date NOT NULL, kind text NOT NULL, payload text)
  PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 59), 'kind' || g % 5, 'payload ' || g FROM generate_series(1, 6000) g;
ANALYZE events;
CREATE INDEX events_2024_01_kind_idx ON events_2024_01 (kind);
CREATE INDEX events_2024_02_kind_idx ON events_2024_02 (kind);
-- migration:
CREATE INDEX events_kind_idx ON ONLY events (kind);
ALTER INDEX events_kind_idx ATTACH PARTITION events_2024_01_kind_idx;
ALTER INDEX events_kind_idx ATTACH PARTITION events_2024_02_kind_idx;
