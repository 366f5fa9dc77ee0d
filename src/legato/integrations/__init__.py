"""Optional integrations, one module per extra (slack, ...), imported lazily."""
