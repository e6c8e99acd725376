import sys

from homecluster.cli.main import main

sys.exit(main())
