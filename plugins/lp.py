"""Built-in plugin module 'lp' (work in progress this session)."""
