"""Print clarad(1), the manual page, built from the `clarad` command's own argparse parser.

    python packaging/manpage.py > clarad.1        (debian/rules does this at build time)

Commands, their arguments and options come from ``clarad.cli.build_parser()``, so the page cannot
drift from the command; the paragraphs around them say what the parser cannot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from clarad import __version__
from clarad.cli import build_parser
from clarad.config import Settings

COMMON = {"config", "state_dir", "json"}  # the options every command takes (cli.build_parser's `common`)
DESCRIPTION = """\
clarad brings NVIDIA Clara Deploy's Model Repository to one Linux host. It watches drop folders
under its state directory for Triton models, Clara pipeline definitions and job payloads, runs
Triton Inference Server instances (one GPU each, or on the CPU) and gives every job an exclusive
instance preloaded with the models its operators list, reusing the idle instance that already
holds most of them.

.B clarad run
is the daemon, as the clarad.service unit starts it. Every other command asks the running daemon
over its control socket, <state_dir>/run/clarad.sock, which clarad's user and the members of its
group may use. Exit status: 0 on success, 1 when the request was refused or failed (the reason
on standard error), 2 for bad usage."""

FILES = [
    ("/etc/clara/clarad.toml", "the settings; every key is documented there, with its default"),
    ("/var/lib/clara/inbox/", "drop folders: models/, pipelines/ and jobs/<pipeline>/"),
    ("/var/lib/clara/rejected/", "what was refused, with <name>.reason beside it"),
    ("/var/lib/clara/clarad.db", "the database of models, pipelines, jobs and child processes"),
    ("/lib/systemd/system/clarad.service", "the unit; change it with systemctl edit clarad"),
    ("/usr/share/doc/clarad/README.md", "the full documentation"),
]


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split())[len("usage: "):]


def options(parser: argparse.ArgumentParser, common: bool) -> list[str]:
    """.TP entries for the positionals and options of ``parser``: those every command takes
    (``common``), or its own."""
    lines = []
    for action in parser._actions:  # argparse keeps no public list of them
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or (action.dest in COMMON) != common:
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else " " + str(action.metavar or action.dest.upper())
            name = ", ".join(f"\\fB{roff(flag)}\\fR{roff(metavar)}" for flag in action.option_strings)
        else:
            name = f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
        choices = f"({', '.join(map(str, action.choices))})" if action.choices else ""
        text = " ".join(filter(None, [action.help, choices]))
        lines += [".TP", name, roff(text)]
    return lines


def commands(parser: argparse.ArgumentParser) -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(words, parser) of every command, in the order `clarad --help` lists them."""
    found: list[tuple[list[str], argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                nested = commands(sub)
                found += [([word, *words], leaf) for words, leaf in nested] if nested else [([word], sub)]
    return found


def page(parser: argparse.ArgumentParser) -> str:
    # The changelog's date in a package build (dpkg-buildpackage sets it), so two builds match.
    date = time.strftime("%Y-%m-%d", time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
    lines = [
        f'.TH CLARAD 1 "{date}" "clarad {__version__}" "User Commands"',
        ".SH NAME", "clarad \\- model repository and Triton scheduler for AI pipelines on one host",
        ".SH SYNOPSIS", "\\fBclarad\\fR \\fICOMMAND\\fR [\\fIARGUMENTS\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION", DESCRIPTION.replace("\n\n", "\n.PP\n"),
        ".SH COMMANDS",
    ]
    for words, sub in commands(parser):
        lines += [".SS " + roff(" ".join(["clarad", *words])), roff(sub.description or ""),
                  ".PP", f"\\fB{roff(usage(sub))}\\fR"]
        own = options(sub, common=False)
        lines += [".RS", *own, ".RE"] if own else []
    lines += [".SH COMMON OPTIONS", "Every command takes these.", *options(commands(parser)[0][1], common=True)]
    lines += [".SH ENVIRONMENT",
              ".TP", "\\fBCLARAD_CONFIG\\fR", "the settings file, in place of /etc/clara/clarad.toml",
              ".TP", "\\fBCLARAD_\\fIKEY\\fR",
              roff("overrides the setting KEY (e.g. CLARAD_STATE_DIR); keys: "
                   + ", ".join(sorted(Settings.model_fields)))]
    lines += [".SH FILES"]
    for path, what in FILES:
        lines += [".TP", f"\\fI{roff(path)}\\fR", roff(what)]
    lines += [".SH SEE ALSO", "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsystemd.exec\\fR(5)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page(build_parser()))
