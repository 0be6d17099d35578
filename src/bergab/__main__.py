"""``python -m bergab`` runs the command line."""

from bergab.cli import entrypoint

entrypoint()
