"""Built-in plugin module 'coke' (work in progress this session)."""
