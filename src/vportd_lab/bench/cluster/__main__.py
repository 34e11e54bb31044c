"""`python -m vportd_lab.bench.cluster`: run the cluster benchmark (see `run.main`)."""

import sys

from vportd_lab.bench.cluster.run import main

sys.exit(main())
