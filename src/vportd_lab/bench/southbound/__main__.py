"""`python -m vportd_lab.bench.southbound`: run the southbound benchmark (see `run.main`)."""

import sys

from vportd_lab.bench.southbound.run import main

sys.exit(main())
