"""Versioned SQL migrations: NNNN_description.sql, applied in order, never edited once released."""
