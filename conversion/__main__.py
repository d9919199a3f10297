"""`python -m conversion ...`."""

from conversion.cli import main

raise SystemExit(main())
