import sys

from lmlm.cli import main

sys.exit(main())
