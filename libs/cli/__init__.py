"""``aif``: the factory's command line (``python -m libs.cli`` or ``.venv/bin/aif``)."""
