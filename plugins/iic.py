"""Built-in plugin module 'iic' (work in progress this session)."""
