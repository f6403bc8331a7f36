"""Built-in plugin module 'sinkhorn_gpu' (work in progress this session)."""
