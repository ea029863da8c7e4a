"""``python -m broadcaster serve | demo``."""

from broadcaster.cli import main

if __name__ == "__main__":
    main()
