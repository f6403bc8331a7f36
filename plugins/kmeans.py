"""Built-in plugin module 'kmeans' (work in progress this session)."""
