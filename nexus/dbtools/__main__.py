import sys

from nexus.dbtools import main

raise SystemExit(main(sys.argv[1:]))
