"""How each runbook verb is done on a platform. Plain Python: no pytest import anywhere below this package.

One interface per verb (deploy, notify, probe), backends behind a name -> class registry, in the manner of
pytest-testinfra's backends. The embedded Lab is one backend; command (PowerShell/shell argv templates) another.
"""
