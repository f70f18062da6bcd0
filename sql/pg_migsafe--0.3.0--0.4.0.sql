-- pg_migsafe 0.3.0 -> 0.4.0 (ALTER EXTENSION pg_migsafe UPDATE TO '0.4.0').
-- Classification v2, first part: see CHANGELOG.md. The change is in the library
-- (rules, the statement layer, the hooks); the SQL objects of 0.4.0 are exactly those
-- of 0.3.0 (tests/integration/test_upgrade.py compares an updated database with a
-- fresh install, catalog by catalog), so nothing is replayed here.

-- The upgrade itself goes into the audit log when this transaction commits.
SELECT migsafe._note_upgrade('0.3.0', '0.4.0');
