"""`python -m optexp.report`: the optexp-report command."""

from optexp.report import main

main()
