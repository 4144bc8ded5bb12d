from pen_server.cli import command

raise SystemExit(command())
