"""Built-in plugin module 'sinkhorn_pot' (work in progress this session)."""
