import sys

from ris.cli import main

sys.exit(main())
