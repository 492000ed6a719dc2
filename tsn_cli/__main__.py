"""`python -m tsn_cli` runs the CLI (this is what `paddle.distributed.launch -m tsn_cli` calls)."""

from tsn_cli.cli import main

if __name__ == "__main__":
    main()
