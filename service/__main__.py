"""`python -m service run|api|migrate|keys ...`: an alias of the `learngene` command line (see service/cli.py)."""
from service.cli import main

main()
