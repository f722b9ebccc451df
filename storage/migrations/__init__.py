"""Alembic migrations of the truckcount schema, applied by ``open_database``."""
