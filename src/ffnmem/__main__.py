from ffnmem.cli import main

main()
