from medstream.cli import main

main()
