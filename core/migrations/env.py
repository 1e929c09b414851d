"""Alembic environment: migrations run on the connection the Store hands over."""

from alembic import context

from crmkpi import models

target_metadata = models.SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
