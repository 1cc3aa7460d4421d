"""`python -m aeromamba`: the `aeromamba` command (`aeromamba.command`)."""

from aeromamba.command import main

raise SystemExit(main())
