"""Contract, step 1: the column no deployed code reads any more."""
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.drop_column("users", "legacy_email")
