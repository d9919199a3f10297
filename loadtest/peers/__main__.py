"""python -m loadtest.peers --help"""

from loadtest.peers.cli import main

raise SystemExit(main())
