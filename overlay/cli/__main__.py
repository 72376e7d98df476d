"""`python -m overlay.cli`: the same command line as the `vouchnet` script."""
from overlay.cli import main

main()
