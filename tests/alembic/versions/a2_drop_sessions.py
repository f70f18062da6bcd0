"""Contract, step 2: the table the old login flow used."""
from alembic import op

revision = "a2"
down_revision = "a1"


def upgrade():
    op.drop_table("sessions")
