"""``python -m ovc.cli ...`` = ``ovc ...``."""

from ovc.cli.main import app

app()
