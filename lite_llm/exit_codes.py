"""Exit statuses of every ``lite-llm`` command: one table, in the spirit of pytest's.

A script can tell a verdict from a rejected input from a crash:

==== ================ ==========================================================================
code name             meaning
==== ================ ==========================================================================
0    OK               the command did its work; a check's verdict is positive (PASS, valid)
1    FAILED           a check ran and its verdict is negative (a case failed, a checkpoint is
                      NOT valid, a proof claim differs, generated files drifted)
2    REJECTED         the input was rejected (a spec error code such as ``E_CONFIG``, a missing
                      or unreadable file) or the command line is wrong
3    INTERNAL         an unexpected internal error: a bug in lite-llm (rerun with ``--debug`` for
                      the traceback)
5    NOTHING_RAN      the command selected nothing to run (no case matched, an empty vectors
                      directory)
130  INTERRUPTED      stopped by Ctrl-C
==== ================ ==========================================================================
"""
from __future__ import annotations

OK = 0            # success; a check's verdict is positive
FAILED = 1        # a check ran and its verdict is negative
REJECTED = 2      # input rejected (spec error code) or wrong usage
INTERNAL = 3      # unexpected internal error (a bug)
NOTHING_RAN = 5   # nothing was selected to run
INTERRUPTED = 130  # Ctrl-C

TABLE = (
    (OK, "OK", "success; a check's verdict is positive"),
    (FAILED, "FAILED", "a check ran and its verdict is negative (FAIL, NOT valid, drift)"),
    (REJECTED, "REJECTED", "input rejected (a spec error code, a bad file) or wrong usage"),
    (INTERNAL, "INTERNAL", "internal error: a bug in lite-llm (--debug shows the traceback)"),
    (NOTHING_RAN, "NOTHING_RAN", "nothing was selected to run"),
    (INTERRUPTED, "INTERRUPTED", "interrupted (Ctrl-C)"),
)


def epilog() -> str:
    """The table as the text ``--help`` prints under every command."""
    return "exit status:\n" + "\n".join(f"  {code:<4} {name:<12} {what}" for code, name, what in TABLE)
