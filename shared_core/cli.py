"""The `inferenceguard` command line.

Each subcommand lives in its own module, which defines `configure_parser(parser)` and
`run(args) -> int`. Modules are imported only when their subcommand runs, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("shared_core.demo", "Run the LangChain and LlamaIndex demo on the embedded defaults."),
    "chat": ("shared_core.chat_cli", "Chat in the terminal through the guard."),
    "train-cost-model": (
        "shared_core.cost_model_training",
        "Train the default cost model (and the judge) from packaged public data.",
    ),
    "collect-critic-data": (
        "shared_core.critic_data",
        "Sample responses and record hidden and safety states for critic training.",
    ),
    "train-critic": ("shared_core.critic_training", "Train a latent critic on collected data."),
    "eval-critic": (
        "shared_core.critic_eval",
        "Evaluate a critic and the search with and without it.",
    ),
    "bench": ("shared_core.bench", "Benchmark InferenceGuard against baselines."),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--log-level", default="INFO")
    _, rest = parser.parse_known_args(argv)
    command = next((a for a in rest if a in SUBCOMMANDS), None)

    full = build_parser(command)
    args = full.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the sub-parser of `command` gets its options (and its import)."""
    parser = argparse.ArgumentParser(
        prog="inferenceguard",
        description="Inference-time safe decoding for Hugging Face language models.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging level (default: INFO).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).configure_parser(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
