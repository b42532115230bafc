import sys

from lrdist_jax.cli import main

sys.exit(main())
