"""Alembic's environment for the test project: online migrations only, one
transaction per revision, URL from MIGSAFE_ALEMBIC_URL."""
import os

from alembic import context
from sqlalchemy import create_engine


def run():
    engine = create_engine(os.environ["MIGSAFE_ALEMBIC_URL"])
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


run()
