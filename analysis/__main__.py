"""Command line: ``sgdsim-analysis summary OUT.h5 [--json]`` and ``report OUT.h5 -o DIR``
(``python -m sgdsim.analysis`` is the same program).

Exit codes: 0 success; 2 bad input (usage, unreadable or incomplete run file, an output directory
that already has a report without ``--overwrite``) with one line on stderr starting ``error:``;
1 internal failure.
"""

from __future__ import annotations

import argparse
import os
import sys


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump: SPEC 1
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sgdsim-analysis", description="Estimates, theory and figures from sgdsim run files.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    summary = commands.add_parser("summary", help="print estimates with 95%% intervals and theory",
                                  description="Print each sweep point's estimates with standard "
                                              "errors and 95% intervals beside the theory.")
    summary.add_argument("run_file", metavar="OUT.h5")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report = commands.add_parser("report", help="write index.html and PNG figures",
                                 description="Write an HTML report with PNG figures into DIR "
                                             "(its parent directory must exist).")
    report.add_argument("run_file", metavar="OUT.h5")
    report.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the report")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report in DIR")
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    from ._read import RunFileError, open_run

    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run = open_run(args.run_file)
        if args.command == "summary":
            from ._summary import format_table, summarize, to_json

            summary = summarize(run)
            print(to_json(summary) if args.json else format_table(summary))
        else:
            from ._report import write_report

            index = os.path.join(args.output, "index.html")
            if os.path.exists(args.output) and not os.path.isdir(args.output):
                print(f"error: {args.output}: exists and is not a directory", file=sys.stderr)
                return 2
            parent = os.path.dirname(os.path.abspath(args.output))
            if not os.path.isdir(parent):
                print(f"error: {args.output}: parent directory {parent} does not exist",
                      file=sys.stderr)
                return 2
            if os.path.exists(index) and not args.overwrite:
                print(f"error: {args.output}: already holds a report (index.html); use --overwrite",
                      file=sys.stderr)
                return 2
            path = write_report(run, args.output)
            print(path)
    except RunFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `sgdsim-analysis summary OUT.h5 | head`: the reader left; nothing is wrong.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # internal failure: one line, exit 1
        print(f"error: internal failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("SGDSIM_DEBUG"):
            raise
        return 1
    return 0


def entry():
    """The ``sgdsim-analysis`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
