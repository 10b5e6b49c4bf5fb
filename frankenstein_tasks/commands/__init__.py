"""Subcommands of the `frankenstein` CLI, one module each.

A command module defines `add_arguments(parser)` and `run(args) -> int`; its one-line help is in
`COMMANDS` of `frankenstein_tasks.cli`, and options several commands share are in `_options`. It stays
thin: it parses arguments and calls the library (`surgery`, `analysis`, `merge_configs`,
`frankenstein_tasks`), importing heavy packages (torch, transformers) inside `run` so that `--help`
is instant. To add a command, add a module here and one line to `COMMANDS` in `frankenstein_tasks.cli`.
"""
