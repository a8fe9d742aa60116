"""Persistence: SQLModel tables, the async engine, CRUD functions and Alembic migrations."""
