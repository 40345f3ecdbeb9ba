from differad_cli.cli import main

main()
