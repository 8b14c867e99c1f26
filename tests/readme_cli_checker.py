"""The checker behind tests/test_readme_cli.py: command lines pulled out of the READMEs, parsed with the
CLI's own click parser (see that test's docstring for the rules)."""

from __future__ import annotations

import ast
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.core import TyperGroup

from conftest import REPO_ROOT
from radloop.app.cli import build_app

try:  # recent typer carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - an older typer on click itself
    from click.exceptions import UsageError

DOCS = ("README.md", "labeling/README.md", "labeling/LABEL_STUDIO.md")
#: top-level folders of the repository: inline paths starting with one of them must exist
REPO_DIRS = ("app", "core", "configs", "labeling", "retrieval", "ssl", "tests", ".streamlit")
#: variables the docs name as read by the tests only (README: "tests only")
TEST_ONLY_VARIABLES = {"RADLOOP_DATA", "RADLOOP_LS_VENV", "RADLOOP_TEST_DATABASE"}
#: Label Studio server settings (LABEL_STUDIO.md): read by the server, set by tests/ls_server.py
SERVER_VARIABLES = {"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED", "ML_BLOCK_LOCAL_IP", "SSRF_PROTECTION_ENABLED",
                    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"}
PACKAGE_DIRS = ("app", "core", "labeling", "retrieval", "ssl/src")

PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^<>]+>|\.\.\.|…)$")
PLACEHOLDER_PART = re.compile(r"\b[A-Z][A-Z0-9_]*[A-Z]\b|<[^<>]+>")  # NAME in configs/ssl/NAME.yaml
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "(", ")"}


# ---------------------------------------------------------------------------------------------- extraction

@dataclass(frozen=True)
class Snippet:
    file: str
    line: int
    text: str
    kind: str  # "inline" (inline code, whitespace joined) or "code" (a logical line of a fenced block)

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _snippets(file: str, markdown: str) -> list[Snippet]:
    lines = markdown.splitlines()
    snippets: list[Snippet] = []
    prose: list[tuple[int, str]] = []  # (line number, text) outside fenced blocks
    fence = None
    pending, pending_line = "", 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if fence is None and re.match(r"^(```|~~~)", stripped):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
                continue
            if not pending:
                pending_line = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            snippets.append(Snippet(file, pending_line, pending + stripped, "code"))
            pending = ""
            continue
        prose.append((number, line))
    text = "\n".join(line for _, line in prose)
    starts = list(itertools.accumulate([0] + [len(line) + 1 for _, line in prose]))
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        row = next(i for i in range(len(prose)) if starts[i + 1] > match.start())
        snippets.append(Snippet(file, prose[row][0], " ".join(match.group(1).split()), "inline"))
    return snippets


def _all_snippets() -> list[Snippet]:
    return [snippet for file in DOCS for snippet in _snippets(file, (REPO_ROOT / file).read_text())]


# ---------------------------------------------------------------------------------------------- the CLI

def _cli(relaxed: bool):
    """The real command tree; no parameter callbacks; ``relaxed``: nothing required."""
    root = typer.main.get_command(build_app())

    def strip(command):
        for param in command.params:
            param.callback = None
            if relaxed:
                param.required = False
        for sub in getattr(command, "commands", {}).values():
            strip(sub)

    strip(root)
    return root


def _all_options(command) -> set[str]:
    names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)
             if name.startswith("-")}
    for sub in getattr(command, "commands", {}).values():
        names |= _all_options(sub)
    return names


def _ast_of(relative: str) -> ast.Module:
    return ast.parse((REPO_ROOT / relative).read_text())


def _strategy_names() -> set[str]:
    """retrieval.strategies.STRATEGIES' keys, read from the source (importing retrieval loads FAISS)."""
    registry = next(node for node in ast.walk(_ast_of("retrieval/strategies.py"))
                    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "STRATEGIES")
    classes = {element.id for element in ast.walk(registry.value) if isinstance(element, ast.Name)} - {"cls"}
    names = {}
    for source in (REPO_ROOT / "retrieval").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and [getattr(t, "id", "") for t in statement.targets]
                            == ["name"] and isinstance(statement.value, ast.Constant)):
                        names[node.name] = statement.value.value
    assert set(names) == classes, f"strategy classes without a name: {classes - set(names)}"
    return set(names.values())


def _constant(relative: str, name: str):
    for node in ast.walk(_ast_of(relative)):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(target, "id", "") == name for target in targets):
                if isinstance(node.value, ast.Subscript):  # Literal["a", "b"]
                    return set(ast.literal_eval(node.value.slice))
                return set(ast.literal_eval(node.value))
    raise AssertionError(f"{name} not found in {relative}")


def _accelerators() -> set[str]:
    """The names ssl/src/pretrain.py's require_accelerator accepts (``if name not in (...)``)."""
    function = next(node for node in ast.walk(_ast_of("ssl/src/pretrain.py"))
                    if isinstance(node, ast.FunctionDef) and node.name == "require_accelerator")
    return next(set(ast.literal_eval(node.comparators[0])) for node in ast.walk(function)
                if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.NotIn))


def _value_checks():
    """(command path, option param name) -> (allowed values, split on commas?) for options the CLI types as str."""
    strategies = _strategy_names()
    report_text = _constant("labeling/ls_config.py", "REPORT_TEXT_MODES")
    pooling = _constant("ssl/src/settings.py", "PoolingName")
    accelerators = _accelerators()
    return {
        (("round", "start"), "strategy"): (strategies, False),
        (("demo",), "strategy"): (strategies, False),
        (("bench", "active-learning"), "strategies"): (strategies, True),
        (("bench", "selection"), "strategies"): (strategies, True),
        (("ls", "init"), "report_text"): (report_text, False),
        (("ls", "export"), "report_text"): (report_text, False),
        (("reexport-encoder",), "pooling"): (pooling, False),
        (("embed",), "accelerator"): (accelerators, False),
        (("serve-backend",), "auth"): (re.compile(r"basic:\S+|bearer"), False),
    }


# ---------------------------------------------------------------------------------------------- inline syntax

OPENING = {"]": "[", ")": "("}


def _split_brackets(tokens: list[str]) -> list[str]:
    """`[--auth` -> `[`, `--auth`; `ID)]` -> `ID`, `)`, `]` (a bracket the word itself opened stays)."""
    out = []
    for token in tokens:
        head, tail = [], []
        while len(token) > 1 and token[0] in "[(":
            head.append(token[0])
            token = token[1:]
        while len(token) > 1 and token[-1] in "])" and token.count(token[-1]) > token.count(OPENING[token[-1]]):
            tail.insert(0, token[-1])
            token = token[:-1]
        out += [*head, token, *tail]
    return out


def _alternatives(tokens: list[str]) -> list[list]:
    """Top-level alternatives, each a sequence of words and ('[' | '(', alternatives) groups."""
    position = 0

    def parse(end):
        nonlocal position
        alternatives = [[]]
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == end:
                return alternatives
            if token == "|":
                alternatives.append([])
            elif token in ("[", "("):
                alternatives[-1].append((token, parse("]" if token == "[" else ")")))
            else:
                alternatives[-1].append(token)
        if end is not None:
            raise ValueError(f"unclosed bracket (missing {end!r})")
        return alternatives

    return parse(None)


def _expand(sequence: list) -> list[list[str]]:
    """Every concrete word list of a sequence: optional groups are taken, (a | b) and x|y give one each."""
    choices = []
    for item in sequence:
        if isinstance(item, tuple):
            choices.append([words for alternative in item[1] for words in _expand(alternative)])
        elif "|" in item and not PLACEHOLDER.match(item):
            choices.append([[value] for value in item.split("|") if value])
        else:
            choices.append([[item]])
    return [[word for part in combination for word in part] for combination in itertools.product(*choices)]


def _words(text: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return [word[:-3] if len(word) > 3 and word.endswith("...") else word for word in words]


# ---------------------------------------------------------------------------------------------- checking

class Checker:
    def __init__(self):
        self.strict = _cli(relaxed=False)
        self.relaxed = _cli(relaxed=True)
        self.options = _all_options(self.strict)
        self.values = _value_checks()
        self.commands_checked = 0
        self.seen: set[tuple[str, ...]] = set()  # command paths the lines checked name

    def resolve(self, words: list[str]):
        """(command path, command, remaining words, problem)."""
        command, path = self.strict, []
        while isinstance(command, TyperGroup) and words and not words[0].startswith("-"):
            word = words[0]
            if word not in command.commands:
                if PLACEHOLDER.match(word):  # `radloop COMMAND --help`
                    return path, None, [], None
                known = ", ".join(command.commands)
                return path, None, words, f"no command {' '.join(['radloop', *path, word])!r} (there: {known})"
            command, path, words = command.commands[word], [*path, word], words[1:]
        return path, command, words, None

    def check(self, words: list[str], mode: str) -> list[str]:
        """Problems of one concrete command line (the words after `radloop`).

        mode: "code" (checked whole), "inline" (a name alone refers to the command), "partial" (options
        mentioned: required ones not asked for, a trailing option without its value is fine)."""
        path, command, rest, problem = self.resolve(words)
        if problem:
            return [problem]
        if command is None:
            return []
        self.commands_checked += 1
        self.seen.add(tuple(path))
        name = " ".join(["radloop", *path])
        if "--help" in rest:
            return []
        if isinstance(command, TyperGroup):
            if not rest and mode != "code" or rest in (["..."], ["…"]):
                return []
            if not rest:
                return [f"{name!r} needs a subcommand ({', '.join(command.commands)})"]
            return [f"{name!r} takes a subcommand, not {rest[0]!r} ({', '.join(command.commands)})"]
        if not rest and mode != "code":
            return []
        options = {opt: param for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        arguments = [param for param in command.params if param.param_type_name == "argument"]
        args, placeholders, problems = [], set(), []
        expects_value = None
        for word in rest:
            if expects_value is not None:
                if PLACEHOLDER.match(word):
                    word = self.dummy(expects_value)
                    placeholders.add(len(args))
                expects_value = None
            elif word.startswith("-") and word != "-":
                option = options.get(word.split("=", 1)[0])
                if option is not None and not option.is_flag and not option.count and "=" not in word:
                    expects_value = option
            elif PLACEHOLDER.match(word):
                word = self.dummy(arguments[0] if arguments else None)
                placeholders.add(len(args))
            args.append(word)
        if expects_value is not None and mode != "code":  # `ls init --report-text`: names the option
            args.append(self.dummy(expects_value))
            placeholders.add(len(args) - 1)
            mode = "partial"
        if mode == "inline" and rest[-1] in ("...", "…"):  # `radloop ls export --report-text ...`: elided
            mode = "partial"
        tree = self.relaxed if mode == "partial" else self.strict
        leaf = tree
        for part in path:
            leaf = leaf.commands[part]
        try:
            leaf.make_context(name, list(args), resilient_parsing=False)
        except UsageError as error:  # NoSuchOption, BadParameter, MissingParameter, BadOptionUsage
            problems.append(f"{name}: {error.format_message()}")
        problems += self.check_values(tuple(path), options, args, placeholders)
        return problems

    @staticmethod
    def dummy(param) -> str:
        minimum = getattr(param, "min", None)
        return str(minimum) if minimum is not None else "1"

    def check_values(self, path, options, args, placeholders) -> list[str]:
        problems = []
        for index, word in enumerate(args):
            if not word.startswith("--") or word not in options and word.split("=", 1)[0] not in options:
                continue
            if "=" in word:
                word, value, value_index = *word.split("=", 1), index
            elif index + 1 < len(args):
                value, value_index = args[index + 1], index + 1
            else:
                continue
            param = options[word]
            if param.is_flag or value_index in placeholders:
                continue
            allowed = self.values.get((path, param.name))
            if allowed is not None:
                choices, comma_separated = allowed
                for item in (value.split(",") if comma_separated else [value]):
                    valid = choices.fullmatch(item) if isinstance(choices, re.Pattern) else item in choices
                    if not valid:
                        valid = choices.pattern if isinstance(choices, re.Pattern) else ", ".join(sorted(choices))
                        problems.append(f"radloop {' '.join(path)} {word} {item!r}: not a valid value ({valid})")
            if param.name in ("config", "train_config"):
                problems += _config_problems(value)
        return problems


def _config_problems(value: str) -> list[str]:
    """A --config value resolves as core.config.find_config does from the repository root."""
    relative = Path(value)
    candidates = [relative] if relative.parts[:1] == ("configs",) else [relative, Path("configs") / relative]
    for candidate in candidates:
        if PLACEHOLDER_PART.search(str(candidate)):
            pattern = PLACEHOLDER_PART.sub("*", str(candidate))
            if list(REPO_ROOT.glob(pattern)):
                return []
        elif (REPO_ROOT / candidate).is_file():
            return []
    return [f"config {value!r} not found (looked in {', '.join(str(c) for c in candidates)})"]


def _radloop_words(words: list[str]) -> tuple[list[str] | None, str | None]:
    """(the words after `radloop` or `-m radloop.app.cli` in a shell command, or None: no radloop there; a problem)."""
    assignments = 0
    while assignments < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[assignments]):
        assignments += 1
    for index, word in enumerate(words):
        # `radloop` anywhere (`srun radloop ...`), a path to it only as the command (`.venv/bin/radloop ...`)
        if word == "radloop" or index == assignments and word.endswith("/radloop"):
            return words[index + 1:], None
        if word == "-m" and index + 1 < len(words) and words[index + 1].startswith("radloop"):
            if words[index + 1] != "radloop.app.cli":
                return None, f"-m {words[index + 1]}: radloop's command line is -m radloop.app.cli"
            return words[index + 2:], None
    return None, None


def _shell_commands(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return [line.split("#", 1)[0].split()]
    commands, current = [], []
    for token in tokens:
        if token in SHELL_OPERATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [*commands, current]


def cli_problems(snippets: list[Snippet], checker: Checker) -> list[str]:
    problems = []
    top_level = set(checker.strict.commands)
    for snippet in snippets:
        found = []  # (words after `radloop`, mode)
        if snippet.kind == "code":
            for words in _shell_commands(snippet.text):
                after, problem = _radloop_words(words)
                if problem:
                    problems.append(f"{snippet.where()}: `{snippet.text}`: {problem}")
                elif after is not None:
                    found.append((after, "code"))
        else:
            words = _words(snippet.text.replace("\\|", "|"))
            if not words:
                continue
            if words[0] in ("radloop", ".venv/bin/radloop") or words[1:2] == ["radloop"]:  # `srun radloop ...`
                found.append((_radloop_words(words)[0], "inline"))
            elif words[0] in top_level and len(words) > 1:
                found.append((words, "partial"))
            elif words[0].startswith("--"):
                for word in words:
                    option = word.split("=", 1)[0]
                    if option.startswith("--") and option not in checker.options:
                        problems.append(f"{snippet.where()}: `{snippet.text}`: no radloop command has {option}")
        for after, mode in found:
            if mode == "code":  # shell words, no doc syntax
                alternatives = [after]
            else:
                try:
                    alternatives = _alternatives(_split_brackets(after))
                except ValueError as error:
                    problems.append(f"{snippet.where()}: `{snippet.text}`: {error}")
                    continue
            first_path = None
            for number, alternative in enumerate(alternatives):
                for variant in (_expand(alternative) if mode != "code" else [alternative]):
                    if number and first_path:  # `index build [...] | info`: a sibling of the first subcommand
                        variant = [*first_path[:-1], *variant]
                    if number == 0 and first_path is None:
                        first_path = checker.resolve(variant)[0]
                    for problem in checker.check(variant, mode):
                        problems.append(f"{snippet.where()}: `{snippet.text}`: {problem}")
    return list(dict.fromkeys(problems))  # variants of one line (`(a | b)`) often share a problem
