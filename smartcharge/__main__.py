"""`python -m smartcharge ...` is the same as the `smartcharge` console script."""

from smartcharge.cli import main

raise SystemExit(main())
