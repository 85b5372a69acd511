"""``aif``: the factory's command line (``python -m aif.cli`` or ``.venv/bin/aif``)."""
