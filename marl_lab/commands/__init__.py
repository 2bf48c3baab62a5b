"""One module per `marl-gym` subcommand: `add_arguments(parser)`, `run(args) -> int | None` and a docstring
(the subcommand's ``--help`` description); `marl_lab.cli.register` names it."""
