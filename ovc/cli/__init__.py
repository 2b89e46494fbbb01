"""The ``ovc`` command line: one Typer app (:mod:`ovc.cli.main`) with every command mounted.

ovc stage | bench | params                     pipeline, benchmarks, config   (ovc.cli.main)
ovc vocab | registry ls/upgrade | classify     registry and inference         (ovc.cli.commands)
ovc predict | serve | registry promote/...     collections, service, aliases  (ovc.cli.collections)
"""

from ovc.cli.main import app, main

__all__ = ["app", "main"]
