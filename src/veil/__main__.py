"""``python -m veil``: the same as the ``veil`` command."""

from veil.cli.main import main

raise SystemExit(main())
