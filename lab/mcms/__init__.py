"""MCMS sample application: the source that goes into offline packages (MCMS_Setup_<version>.zip).

It runs from an unzipped release directory, never imported by the runbook suite:
``python <release>/mcms/web.py ...`` (portal + API) and
``python <release>/mcms/worker.py ...`` (worker service).
Standard library only, so a release runs on any Python 3.12 without installing anything.
"""
