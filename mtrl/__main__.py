import sys

from mtrl.cli import main

sys.exit(main())
