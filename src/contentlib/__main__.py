from contentlib.cli import main

main()
