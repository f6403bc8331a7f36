"""Built-in assignsolve plugins (installed as the package ``assignsolve_plugins``).

Each module is listed under ``[project.entry-points.assignsolve]`` in pyproject.toml and
loads exactly as a third-party plugin would.
"""
