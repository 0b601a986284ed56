"""`python -m okx_async`: the okx-async command line."""

from okx_async.cli import main

raise SystemExit(main())
