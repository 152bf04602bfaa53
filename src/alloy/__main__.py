"""``python -m alloy`` runs the ``alloy`` command."""

from ._cli import main

raise SystemExit(main())
