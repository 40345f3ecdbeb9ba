from differad_cli.cli.app import main

main()
