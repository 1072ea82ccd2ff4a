from clarad.cli import main

raise SystemExit(main())
