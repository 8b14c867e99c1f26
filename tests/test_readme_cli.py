"""Every `radloop ...` command line the READMEs show parses against the real CLI, and what they name exists.

README.md, labeling/README.md and labeling/LABEL_STUDIO.md are what a newcomer follows.  Their command lines
(fenced code blocks and inline code) are parsed with the CLI's own click parser (``make_context``: options,
their values' types, required options; no command runs and no parameter callback is called).  Placeholders
(upper-case words such as FILE, DIR, N, URL; ``<...>``; ``...``) get a dummy value of the option's type.
Inline syntax: ``[...]`` optional (its options are checked), ``(a | b)`` one of, ``a | b | c`` at the top level
sibling subcommands (``round push | pull | status``), ``x|y`` inside one word alternative values.

Inline code that is only a command's name (``radloop ls connect-backend``) refers to it: only the command is
checked.  Inline code without the leading ``radloop`` (``round start --no-push``, ``serve-backend --auth``),
ending in ``...`` (``radloop ls export --report-text ...``) or in an option without its value (``radloop ls
init --report-text``) refers to a command's options: they are checked, required ones are not asked for.
Inline code of options only (``--allow-any-url``) must name an option some command has.  Lines of code
blocks are commands to copy: they are checked whole.  Shell words around radloop (``export``, ``srun``,
``torchrun ... -m radloop.app.cli``, ``&``, comments) are not.

Also checked: configs named (``configs/...``, ``*.yaml``) and repository paths exist, ``make`` targets and
variables exist in the Makefile, the environment variables named are read by radloop's code, the README's
command table lists every command, and its Command line section names the commands without ``--workspace``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.core import TyperGroup

from conftest import REPO_ROOT
from readme_cli_checker import (PACKAGE_DIRS, PLACEHOLDER_PART, REPO_DIRS, SERVER_VARIABLES, TEST_ONLY_VARIABLES,
                                Checker, _all_snippets, _cli, _shell_commands, _snippets, _strategy_names, _words,
                                cli_problems)


# ---------------------------------------------------------------------------------------------- tests

SNIPPETS = _all_snippets()


@pytest.fixture(scope="module")
def checker():
    return Checker()


def test_every_command_line_in_the_readmes_parses_against_the_cli(checker):
    problems = cli_problems(SNIPPETS, checker)
    assert not problems, "README command lines the CLI does not accept:\n" + "\n".join(problems)
    assert checker.commands_checked >= 60, f"only {checker.commands_checked} command lines found: extraction broke?"


@pytest.mark.parametrize(("line", "expected"), [
    ("`radloop round start --budget 5 --no-such-option`", "No such option: --no-such-option"),
    ("`radloop round strat --budget 5`", "no command 'radloop round strat'"),
    ("`radloop eval-reports --json`", "Missing option '--reports'"),
    ("`radloop round start --budget many`", "Invalid value for '--budget'"),
    ("`radloop round start --strategy best`", "'best': not a valid value"),
    ("`radloop pretrain --config configs/ssl/nothing.yaml`", "config 'configs/ssl/nothing.yaml' not found"),
    ("`round push | pull | finish --simulte`", "No such option: --simulte"),
    ("`radloop search (--image F | --case ID) [--kk 10]`", "No such option: --kk"),
    ("`radloop ls init --report-text redacted|all`", "'all': not a valid value"),
    ("`--allow-any-urls`", "no radloop command has --allow-any-urls"),
    ("```bash\n\nradloop ls connect-backend   # no --backend-url\n```", "Missing option '--backend-url'"),
    ("```bash\n\nsrun radloop pretrain \\\n  --config configs/ssl/NAME.yaml --sett x=1 &\n```",
     "No such option: --sett"),
    ("```bash\n\ntorchrun --nnodes 2 -m radloop.app.cli_ssl pretrain\n```",
     "radloop's command line is -m radloop.app.cli"),
])
def test_the_checker_reports_a_wrong_line_with_file_and_line(checker, line, expected):
    problems = cli_problems(_snippets("DOC.md", f"intro\n\n{line}\n"), checker)
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith("DOC.md:5: " if line.startswith("```") else "DOC.md:3: "), problems  # fence, blank


@pytest.mark.parametrize("line", [
    "`radloop ls connect-backend`", "`radloop bench ...`", "`radloop COMMAND --help`", "`serve-backend --auth`",
    "`radloop models list \\| set-current \\| rollback`", "`radloop ingest PATH... [--reports F]`",
    "`radloop demo --limit N`", "`make demo DATA=PATH`", "`lscpu | grep bf16`", "`radloop ls init --report-text`",
    "```bash\nexport RADLOOP_WORKSPACE=/data/radloop\n.venv/bin/radloop round finish &\n```",
])
def test_the_checker_accepts_references_and_placeholders(checker, line):
    assert cli_problems(_snippets("DOC.md", line), checker) == []


def _makefile():
    text = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))
    variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*[?:+]?=", text, re.M))
    return targets, variables


def test_make_targets_and_variables_named_exist():
    targets, variables = _makefile()
    problems = []
    for snippet in SNIPPETS:
        commands = _shell_commands(snippet.text) if snippet.kind == "code" else [_words(snippet.text)]
        for words in commands:
            if not words or words[0] != "make":
                continue
            for word in words[1:]:
                if word.startswith("-"):
                    continue
                if "=" in word:
                    if word.split("=", 1)[0] not in variables:
                        problems.append(f"{snippet.where()}: `{snippet.text}`: no variable {word.split('=')[0]}")
                elif word not in targets:
                    problems.append(f"{snippet.where()}: `{snippet.text}`: no Makefile target {word!r}")
    assert not problems, "\n".join(problems)
    assert {"demo", "test"} <= targets


def _sources(folders) -> dict[Path, str]:
    files = [path for folder in folders for path in (REPO_ROOT / folder).rglob("*.py")]
    return {path: path.read_text() for path in files}


def test_environment_variables_named_are_read_by_the_code():
    package = "\n".join(_sources(PACKAGE_DIRS).values())
    anywhere = package + "\n".join(_sources(["tests"]).values()) + (REPO_ROOT / "Makefile").read_text()
    names = {}
    for snippet in SNIPPETS:
        for match in re.finditer(r"\b((?:RADLOOP|LABEL_STUDIO)_[A-Z0-9_]*[A-Z0-9])\b"
                                 r"|\$\{?([A-Z][A-Z0-9]*_[A-Z0-9_]+)|\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)=", snippet.text):
            names.setdefault(next(group for group in match.groups() if group), snippet)
    assert {"RADLOOP_WORKSPACE", "LABEL_STUDIO_API_KEY", "RADLOOP_DATABASE_URL"} <= set(names)
    problems = []
    for name, snippet in sorted(names.items()):
        quoted = re.compile(rf"[\"']{name}[\"']|\b{name}\b(?=[^\n]*(environ|getenv|envvar))")
        if name.startswith("RADLOOP_") and name not in TEST_ONLY_VARIABLES:
            if not quoted.search(package):
                problems.append(f"{snippet.where()}: ${name} is not read by radloop's code ({', '.join(PACKAGE_DIRS)})")
        elif name in SERVER_VARIABLES or name in TEST_ONLY_VARIABLES:
            if not re.search(rf"\b{name}\b", anywhere):
                problems.append(f"{snippet.where()}: ${name} appears in no source, test or Makefile")
        elif not quoted.search(package):
            problems.append(f"{snippet.where()}: ${name} is not read by radloop's code ({', '.join(PACKAGE_DIRS)})")
    assert not problems, "\n".join(problems)


def test_configs_and_repository_paths_named_exist():
    shipped = {path.name for path in (REPO_ROOT / "configs").rglob("*.yaml")}
    problems = []
    for snippet in SNIPPETS:
        if snippet.kind != "inline":
            continue
        for word in _words(snippet.text):
            word = word.rstrip(".,;:")
            if re.fullmatch(r"[\w-]+\.ya?ml", word):
                if word not in shipped:
                    problems.append(f"{snippet.where()}: `{snippet.text}`: no configs/**/{word}")
            elif word.split("/", 1)[0] in REPO_DIRS and "/" in word:
                pattern = PLACEHOLDER_PART.sub("*", word)
                if not list(REPO_ROOT.glob(pattern.rstrip("/") or ".")):
                    problems.append(f"{snippet.where()}: `{snippet.text}`: {word} does not exist in the repository")
    assert not problems, "\n".join(problems)


def test_the_round_start_row_lists_every_strategy():
    """README's command table lists the strategies `round start --strategy` takes: all of them, no others."""
    row = next(line for line in (REPO_ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `radloop round start"))
    listed = re.findall(r"`(\w+)`", row.split("strategies:", 1)[1])
    assert set(listed) == _strategy_names(), (sorted(listed), sorted(_strategy_names()))


def _leaves(command, path=()):
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, {name for param in command.params for name in param.opts}


def test_the_command_table_names_every_command():
    """README's "Command line" table: one row per command, none left out (`radloop --help` has the rest)."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Command line")
    end = next(number for number in range(start + 1, len(lines)) if lines[number].startswith("## "))
    rows = {number + 1 for number in range(start, end) if lines[number].startswith("| `")}
    checker = Checker()
    assert rows and cli_problems([s for s in SNIPPETS if s.file == "README.md" and s.line in rows], checker) == []
    missing = [" ".join(path) for path, _ in _leaves(checker.strict) if path not in checker.seen]
    assert not missing, f"commands the README's command table does not list: {missing}"


def test_the_command_line_section_says_which_commands_lack_workspace_and_json():
    """"commands that print a summary take --json (`serve-backend` is a server; ... need no workspace)"."""
    section = (REPO_ROOT / "README.md").read_text().split("## Command line", 1)[1].split("| command")[0]
    section = " ".join(section.split())
    claim = re.search(r"\(`serve-backend` is a server; (.*?) need no workspace\)", section)
    assert claim, "README's Command line section no longer says which commands need no workspace"
    without_workspace = {" ".join(path) for path, options in _leaves(_cli(relaxed=False))
                         if "--workspace" not in options}
    without_json = {" ".join(path) for path, options in _leaves(_cli(relaxed=False)) if "--json" not in options}
    assert set(re.findall(r"`([a-z -]+)`", claim.group(1))) == without_workspace
    assert without_json == {"serve-backend"}

