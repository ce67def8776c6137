import sys

from portrait_core.cli import main

sys.exit(main())
