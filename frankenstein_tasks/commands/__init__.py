"""Subcommands of the `frankenstein` CLI, one module each.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. It stays
thin: it parses arguments and calls the library (`surgery`, `analysis`, `merge_configs`,
`frankenstein_tasks`), importing heavy packages (torch, transformers) inside `run` so that `--help`
is instant. To add a command, add a module here and one line to `COMMANDS` in `frankenstein_tasks.cli`.
"""
