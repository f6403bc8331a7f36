"""Built-in plugin module 'encoders' (work in progress this session)."""
