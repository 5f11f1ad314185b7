"""`python -m service run|api|migrate` (see service/cli.py)."""
from service.cli import main

main()
