"""`python -m retrainer ...`: see retrainer.cli."""
from retrainer.cli import main

raise SystemExit(main())
