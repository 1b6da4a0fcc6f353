"""``python -m tcpcli``."""

from tcpcli.cli.main import main

if __name__ == "__main__":
    main()
