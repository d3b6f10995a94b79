from optexp.cli import main

main()
