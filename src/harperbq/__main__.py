from harperbq.cli.main import main

main()
