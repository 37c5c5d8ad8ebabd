from cohep.cli import main

main()
