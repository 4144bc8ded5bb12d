from pen_server.cli import main

raise SystemExit(main())
