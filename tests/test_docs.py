"""The docs check: README.md and docs/*.md say nothing the code would refuse. Nothing here trains,
evaluates or reads data; the whole check takes seconds.

**Commands.** Every command line in a fenced block of README.md and docs/*.md whose fence has no
language (or ``sh``, ``bash``, ``shell``, ``console``) is checked without running it:

* ``heatmapnet ...`` (also ``python -m heatmapnet``, ``torchrun ... -m heatmapnet``,
  ``venv/bin/heatmapnet``): the subcommand exists, every option is spelt as the parser spells it
  (in full: argparse's abbreviations do not count), argparse accepts the line
  (:func:`heatmapnet.commands.build_parser`, or :func:`heatmapnet.deploy.cli.build_parser` for
  ``predict`` on an ONNX model, routed as :mod:`heatmapnet.cli` routes it), the config loads with
  its ``--set`` overrides (:func:`heatmapnet.config.load_config`: a misspelt key or a value of the
  wrong type fails), ``train``'s pretrain stage resolves (:func:`heatmapnet.stages.stage_config`)
  and ``ablate``'s design or ``--arms`` exist;
* ``python -m heatmapnet.deploy ...``: the deploy parser, as above;
* ``python tools/NAME.py ...``: the script exists and its own parser accepts the line (the script
  runs as ``__main__`` with ``ArgumentParser.parse_args`` cut short, so nothing after it runs;
  ``tools/train_*.py`` hand over to ``heatmapnet train`` and get its config check too).

Every other line of such a block must be a command of a known program (:data:`OTHER_PROGRAMS`),
so a command cannot hide from the check; a line that begins with spaces, or follows one ending in
``\\``, continues the command above it; ``#`` starts a comment, and a blank or comment-only line
ends a command (as in a shell); ``&&`` and ``;`` separate commands.

Synopsis conventions (a usage line rather than a runnable one):

* ``[ ... ]`` marks an optional part: the brackets are dropped and what they hold is checked;
* ``...`` alone means "more of the same" and is dropped, except right after an option that still
  needs its value, where it stands for that value (``--boxes ...``);
* a value with ``...`` in it is elided (``data.train.ann_file=...``, ``--checkpoint .../best.pt``),
  and so is an override's placeholder value (``train.seed=S``): the key must still exist in the
  config; an option keeps its name check;
* a placeholder in capitals (:data:`PLACEHOLDERS`, also as the start of a path: ``DIR/best.pt``)
  stands for a value: argparse gets one its option accepts (a choice, a number), a ``CONFIG``
  positional the default config, and ``KEY=VALUE`` is no override;
* ``a|b`` inside a word is a choice: every alternative is checked as its own command line;
* a config given as a path under ``runs/`` (a run's own ``config.yaml``, which no checkout has) has
  its overrides checked on the default config, i.e. against the schema.

Fences with a language other than a shell's: ``text`` (output, not checked), ``python`` (run:
the Python API examples), ``yaml`` (a config fragment: merged onto the schema, so its keys are
checked). Any other language is an error.

**Links.** Every relative link or image of README.md and docs/*.md names an existing file, and a
``#fragment`` one of the headings of the page it points at (GitHub's anchors).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple
from unittest import mock

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

COMMAND_FENCES = {"", "sh", "bash", "shell", "console"}
OTHER_FENCES = {"text", "python", "yaml"}
#: placeholders in capitals that stand for a value in a synopsis line
PLACEHOLDERS = {"CONFIG", "COMMAND", "DIR", "EVAL_DIR", "RUN", "PT", "PATH", "N", "S", "INPUT", "IMAGE", "NAME",
                "NAMES", "X,Y,W,H", "KEY=VALUE"}
#: programs a command block may hold besides heatmapnet's: (first word's basename, ``-m`` module or None)
OTHER_PROGRAMS = {("pip", None), ("python", "pytest"), ("python", "venv"), ("python", "pip")}
#: a fenced block: its language and its body
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Command:
    """One command line of a doc: where it is, which program runs it, its words after the program."""

    where: str  # file:line
    program: str  # "heatmapnet", "deploy" or "tools/NAME.py"
    words: List[str]
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def fenced_blocks(text: str) -> Iterator[Tuple[str, int, str]]:
    """(language, line number of the block's first line, body) of every fenced block."""
    for match in _FENCE.finditer(text):
        yield match.group(1).strip().lower(), text.count("\n", 0, match.start(2)) + 1, match.group(2)


def logical_lines(body: str, first_line: int) -> Iterator[Tuple[int, str]]:
    """A block's command lines, each with its first line's number: continuations (after a trailing
    backslash, or a line that begins with spaces) joined to the line they continue; a blank or
    comment-only line ends a command and is dropped."""
    current: Optional[List] = None
    for number, line in enumerate(body.splitlines(), first_line):
        if not line.strip() or line.lstrip().startswith("#"):  # ends a command, as in a shell
            if current is not None:
                yield current[0], current[1].rstrip("\\").rstrip()
                current = None
            continue
        if current is not None and (current[1].endswith("\\") or line[:1].isspace()):
            current[1] = current[1].rstrip("\\").rstrip() + " " + line.strip()
            continue
        if current is not None:
            yield current[0], current[1]
        current = [number, line.strip()]
    if current is not None:
        yield current[0], current[1]


def split_commands(words: List[str]) -> Iterator[List[str]]:
    """The commands of one line, split at ``&&``, ``||``, ``;`` and pipes."""
    command: List[str] = []
    for word in words:
        if word in ("&&", "||", ";", "|"):
            if command:
                yield command
            command = []
        else:
            command.append(word)
    if command:
        yield command


def classify(words: List[str]) -> Tuple[Optional[str], List[str]]:
    """(program, its words) for a heatmapnet command; (None, []) for a known other program;
    raises ValueError for anything else."""
    words = list(words)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value before the program
        words.pop(0)
    if not words:
        raise ValueError("an empty command")
    first = Path(words[0]).name
    if first == "heatmapnet":
        return "heatmapnet", words[1:]
    if re.fullmatch(r"python[0-9.]*|torchrun", first):
        rest = words[1:]
        for index, word in enumerate(rest):
            if word == "-m" and index + 1 < len(rest):
                module = rest[index + 1]
                if module in ("heatmapnet", "heatmapnet.cli"):
                    return "heatmapnet", rest[index + 2:]
                if module == "heatmapnet.deploy":
                    return "deploy", rest[index + 2:]
                if ("python", module) in OTHER_PROGRAMS:
                    return None, []
                raise ValueError(f"python -m {module}: not a program the docs check knows")
            if word.endswith(".py"):
                if not word.startswith("tools/"):
                    raise ValueError(f"{word}: only scripts in tools/ are checked")
                return word, rest[index + 1:]
            if not word.startswith("-"):
                break
        raise ValueError(f"{' '.join(words[:3])}: neither -m heatmapnet... nor a tools/ script")
    if (first, None) in OTHER_PROGRAMS:
        return None, []
    others = sorted(f"{name} -m {module}" if module else name for name, module in OTHER_PROGRAMS)
    raise ValueError(f"{first}: not a program the docs check knows (heatmapnet, python -m heatmapnet..., "
                     f"python tools/..., or {others})")


def extract_commands(text: str, name: str) -> Tuple[List[Command], List[str]]:
    """The heatmapnet commands of a markdown text, and the problems found while reading it."""
    commands, problems = [], []
    for language, first_line, body in fenced_blocks(text):
        if language in OTHER_FENCES:
            continue
        if language not in COMMAND_FENCES:
            problems.append(f"{name}:{first_line - 1}: fence language {language!r} is neither a shell's "
                            f"{sorted(COMMAND_FENCES)} nor one of {sorted(OTHER_FENCES)}")
            continue
        for number, line in logical_lines(body, first_line):
            where = f"{name}:{number}"
            try:
                words = shlex.split(line, comments=True)
            except ValueError as error:
                problems.append(f"{where}: cannot split {line!r}: {error}")
                continue
            for part in split_commands(words):
                try:
                    program, rest = classify(part)
                except ValueError as error:
                    problems.append(f"{where}: {error}: {line}")
                    continue
                if program is not None:
                    commands.append(Command(where, program, rest, line))
    return commands, problems


# --- checking one command -------------------------------------------------------------------------

def is_placeholder(word: str) -> bool:
    head = word.split("/", 1)[0]
    return head in PLACEHOLDERS


def is_elided(word: str) -> bool:
    return "..." in word


def is_option(word: str) -> bool:
    return word.startswith("-") and not re.fullmatch(r"-[0-9.eE+-]+", word) and word != "-"


def alternatives(words: List[str]) -> List[List[str]]:
    """``[a|b]`` brackets dropped; every combination of the ``a|b`` choices, one word list each."""
    stripped = []
    for word in words:
        while True:
            if len(word) >= 2 and word.startswith("[") and word.endswith("]"):  # [--quick], [CONFIG], [...]
                word = word[1:-1]
            elif word.startswith("[") and word.count("[") > word.count("]"):  # [--out DIR]: its first word
                word = word[1:]
            elif word.endswith("]") and word.count("]") > word.count("["):  # ... and its last
                word = word[:-1]
            else:  # data.input_size=[96,128] keeps its brackets
                break
        if word:
            stripped.append(word.split("|") if "|" in word and not word.startswith("{") else [word])
    return [list(choice) for choice in itertools.product(*stripped)]


def subcommand(parser: argparse.ArgumentParser, words: Sequence[str]):
    """(the parser the words after the subcommand go to, their index) for a parser with
    subcommands; (parser, 0) without; (None, index) for an unknown subcommand."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return parser, 0
    for index, word in enumerate(words):
        if is_option(word):
            continue
        return actions[0].choices.get(word), index + 1
    return None, len(words)


def _nargs(action: argparse.Action) -> float:
    if action.nargs is None or action.nargs == "?":
        return 1
    if action.nargs in ("+", "*"):
        return float("inf")
    return int(action.nargs) if isinstance(action.nargs, int) else 0


def _stand_in(action: Optional[argparse.Action], word: str) -> str:
    """A value ``action`` accepts, for a placeholder or an elided value."""
    if action is None:  # a positional
        if word.split("/", 1)[0] == "CONFIG":
            from heatmapnet.config import DEFAULT_CONFIG

            return DEFAULT_CONFIG
        return word
    if action.dest == "set":
        return word  # overrides are sorted out by the config check
    if action.choices:
        return str(list(action.choices)[0])
    if action.type is not None and action.type is not str:
        for candidate in ("1", "0.5", "0,0,10,10"):
            try:
                action.type(candidate)
                return candidate
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                continue
    return word


def parse_words(parser: argparse.ArgumentParser, words: List[str]) -> Tuple[Optional[argparse.Namespace], List[str]]:
    """Check the option names of ``words`` against ``parser`` (descending into its subcommand),
    put stand-ins for placeholders, and parse: (namespace or None, problems)."""
    sub, start = subcommand(parser, words)
    if sub is None:
        known = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices
        given = next((w for w in words if not is_option(w)), None)
        return None, [f"unknown subcommand {given!r}; {parser.prog} has {sorted(known)}"]
    problems = []
    for word in words[:start]:
        if is_option(word) and word.split("=", 1)[0] not in parser._option_string_actions:
            problems.append(f"unknown option {word!r} of {parser.prog}")
    argv = list(words[:start])
    action, left, taken = None, 0, 0
    for word in words[start:]:
        if is_option(word):
            name = word.split("=", 1)[0]
            action = sub._option_string_actions.get(name)
            if action is None:
                problems.append(f"unknown option {name!r} of {sub.prog} (valid: "
                                f"{sorted(o for o in sub._option_string_actions if o.startswith('--'))})")
                left, taken = 0, 0
            else:
                left, taken = (0 if "=" in word else _nargs(action)), 0
            argv.append(word)
            continue
        if word == "...":
            if action is not None and left and not taken:  # the elided value of an option
                argv.append(_stand_in(action, "..."))
                left, taken = left - 1, taken + 1
            continue  # "more of the same"
        owner = action if left else None
        if left:
            left, taken = left - 1, taken + 1
        argv.append(_stand_in(owner, word) if is_placeholder(word) or is_elided(word) else word)
    if problems:
        return None, problems
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv), []
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()
        return None, [f"argparse refuses {shlex.join(argv)}: {message[-1] if message else 'exit'}"]


def _has_key(config, key: str) -> bool:
    from omegaconf import OmegaConf

    missing = object()
    return OmegaConf.select(config, key, default=missing, throw_on_missing=False) is not missing


def check_config(args: argparse.Namespace, command: str) -> List[str]:
    """The config a parsed command line names, with its overrides: loads, and train's pretrain
    stage and ablate's arms resolve."""
    from heatmapnet.config import DEFAULT_CONFIG, load_config
    from heatmapnet.errors import UserError

    name = getattr(args, "config", None)
    if name is None or name.startswith("runs/"):
        names = [DEFAULT_CONFIG]
        if command == "ablate" and name is None:
            from heatmapnet.ablate.arms import BUILTIN_SETTINGS

            names = list(BUILTIN_SETTINGS)
    else:
        names = [name]
    overrides, elided = [], []
    for override in getattr(args, "set", None) or []:
        if is_placeholder(override):
            continue
        key, _, value = override.partition("=")
        if is_elided(value) or value in PLACEHOLDERS:  # train.seed=S, data.train.ann_file=...
            elided.append(key)
        else:
            overrides.append(override)
    problems = []
    for config_name in names:
        try:
            config = load_config(config_name, overrides)
        except UserError as error:
            problems.append(f"config {config_name!r} with {overrides}: {error}")
            continue
        problems += [f"config {config_name!r}: no key {key!r} (an override with an elided value)"
                     for key in elided if not _has_key(config, key)]
        if command == "train":
            from heatmapnet.stages import stage_config

            out = getattr(args, "out", None) or f"runs/{Path(config_name).stem}"
            try:
                stage_config(config, out)
            except UserError as error:
                problems.append(f"config {config_name!r}: pretrain stage: {error}")
    if command == "ablate" and (args.design or args.arms):
        from heatmapnet.ablate.arms import resolve_design

        arms = [arm for arm in args.arms or [] if not is_placeholder(arm)] or None
        try:
            resolve_design(args.design, arms)
        except UserError as error:
            problems.append(f"ablate: {error}")
    return problems


class _Parsed(Exception):
    """Raised in place of ``ArgumentParser.parse_args`` when a tool script is checked."""

    def __init__(self, parser: argparse.ArgumentParser, argv: List[str]):
        super().__init__(parser.prog)
        self.parser, self.argv = parser, argv


def tool_parser(script: str, words: List[str]) -> Tuple[Optional[argparse.ArgumentParser], List[str], List[str]]:
    """Run ``tools/NAME.py words`` as ``__main__`` until it parses its arguments: (its parser, the
    argv it parses, problems)."""
    path = REPO / script
    if not path.is_file():
        return None, [], [f"{script}: no such script"]

    def stop(self, args=None, namespace=None):
        raise _Parsed(self, list(sys.argv[1:] if args is None else args))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop), \
            mock.patch.object(sys, "argv", [str(path), *words]):
        try:
            runpy.run_path(str(path), run_name="__main__")
        except _Parsed as parsed:
            return parsed.parser, parsed.argv, []
        except SystemExit as stopped:
            return None, [], [f"{script} exited ({stopped.code}) before parsing its arguments"]
    return None, [], [f"{script} never parsed its arguments"]


def check_command(command: Command) -> List[str]:
    """Every problem of one documented command line (empty: it is sound)."""
    from heatmapnet.cli import wants_onnx
    from heatmapnet.commands import build_parser
    from heatmapnet.deploy.cli import build_parser as deploy_parser

    problems = []
    for words in alternatives(command.words):
        if command.program == "heatmapnet":
            parser = deploy_parser() if wants_onnx(words) else build_parser()
            argv = [w for w in words if w != "--debug"] if wants_onnx(words) else words
        elif command.program == "deploy":
            parser, argv = deploy_parser(), words
        else:
            parser, argv, found = tool_parser(command.program, words)
            if parser is None:
                problems += found
                continue
        args, found = parse_words(parser, argv)
        problems += found
        if args is not None and hasattr(args, "set"):
            problems += check_config(args, getattr(args, "command", None) or "")
    return [f"{command}\n    {problem}" for problem in dict.fromkeys(problems)]


# --- commands in the prose ------------------------------------------------------------------------

_SPAN = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)")


def inline_commands(text: str, name: str) -> List[Command]:
    """The command lines quoted in the prose (a code span that starts with a program and has at
    least one option): most spans that name a command are mentions (`heatmapnet eval`), not lines."""
    body = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found = []
    for match in _SPAN.finditer(body):
        span = " ".join(match.group(1).split())
        if not re.match(r"(heatmapnet|python -m heatmapnet(\.deploy)?|python tools/\S+\.py) ", span):
            continue
        try:
            program, words = classify(shlex.split(span))
        except ValueError:
            continue
        if program is not None and any(is_option(word) for word in words):
            found.append(Command(f"{name}:{body.count(chr(10), 0, match.start()) + 1}", program, words, span))
    return found


def check_inline_command(command: Command) -> List[str]:
    """A command quoted in the prose may leave out what a full line needs (``--out``, inputs); its
    option names must exist, and its config must load with its ``--set`` overrides."""
    from heatmapnet.commands import build_parser
    from heatmapnet.config import DEFAULT_CONFIG, resolve_config_path
    from heatmapnet.deploy.cli import build_parser as deploy_parser
    from heatmapnet.errors import UserError

    problems = []
    for words in alternatives(command.words):
        parser = deploy_parser() if command.program == "deploy" else build_parser()
        sub, start = subcommand(parser, words)
        if sub is None:
            given = next((w for w in words if not is_option(w)), "")
            if not is_placeholder(given.rstrip(":")):
                problems.append(f"unknown subcommand {given!r}")
            continue
        values, action = {}, None  # option dest -> the values given to it
        for word in words[start:]:
            if is_option(word):
                action = sub._option_string_actions.get(word.split("=", 1)[0])
                if action is None:
                    problems.append(f"unknown option {word.split('=', 1)[0]!r} of {sub.prog}")
                elif _nargs(action):
                    values.setdefault(action.dest, [])
            elif action is not None and _nargs(action) and word != "...":
                values[action.dest].append(word)
                if action.choices and not is_placeholder(word) and word not in action.choices:
                    problems.append(f"{action.option_strings[0]} {word}: not one of {list(action.choices)}")
        overrides = values.get("set", [])
        positionals = [w for w in words[start:start + 1] if not is_option(w) and not is_elided(w)]
        config = positionals[0] if positionals else None
        try:
            resolve_config_path(config)
        except UserError:
            config = DEFAULT_CONFIG  # an input, not a config
        if "config" in {a.dest for a in sub._actions}:
            args = argparse.Namespace(config=config, set=overrides, design=(values.get("design") or [None])[0],
                                      arms=values.get("arms"), out=None)
            problems += check_config(args, words[start - 1] if start else "")
    return [f"{command}\n    {problem}" for problem in dict.fromkeys(problems)]


# --- links ----------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def prose(text: str) -> str:
    """The text without fenced blocks and code spans (their brackets are no links)."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", lambda m: " " * len(m.group(0)), text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than - and _ dropped, spaces -> -."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(text: str) -> set:
    found, seen = set(), {}
    without_blocks = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", without_blocks, re.M):
        slug = anchor(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def link_problems(path: Path, text: Optional[str] = None) -> List[str]:
    text = path.read_text(encoding="utf-8") if text is None else text
    body = prose(text)
    problems = []
    targets = [(m.group(1), body.count("\n", 0, m.start()) + 1) for m in _LINK.finditer(body)]
    targets += [(m.group(1), body.count("\n", 0, m.start()) + 1) for m in _REFERENCE.finditer(body)]
    for target, line in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        where = f"{relative(path)}:{line}: link {target!r}"
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{where}: no such file {relative(linked)}")
            continue
        if fragment and linked.suffix == ".md" and fragment not in anchors(linked.read_text(encoding="utf-8")):
            problems.append(f"{where}: {relative(linked)} has no heading with anchor #{fragment}")
    return problems


# --- the tests ------------------------------------------------------------------------------------

def all_commands() -> Tuple[List[Command], List[str]]:
    commands, problems = [], []
    for path in DOCS:
        found, trouble = extract_commands(path.read_text(encoding="utf-8"), relative(path))
        commands += found
        problems += trouble
    return commands, problems


def test_the_docs_pages_exist():
    names = {path.name for path in DOCS}
    assert {"README.md", "images.md", "training.md", "data.md", "bottomup.md", "ablation.md", "results.md",
            "deployment.md", "speed.md", "extending.md", "reliability.md"} <= names


def test_every_command_block_holds_only_known_commands():
    commands, problems = all_commands()
    assert not problems, "\n".join(problems)
    assert len(commands) >= 40, f"only {len(commands)} commands found: is the extraction broken?"
    for subcommand_name in ("train", "check", "eval", "predict", "export", "viz", "ablate", "bench", "diagnose"):
        assert any(c.program == "heatmapnet" and subcommand_name in c.words[:2] for c in commands), subcommand_name


def test_every_documented_command_is_accepted():
    commands, _ = all_commands()
    problems = [problem for command in commands for problem in check_command(command)]
    assert not problems, f"{len(problems)} documented command(s) would fail:\n" + "\n".join(problems)


def test_every_command_quoted_in_the_prose_names_real_options_and_keys():
    commands = [command for path in DOCS
                for command in inline_commands(path.read_text(encoding="utf-8"), relative(path))]
    assert len(commands) >= 10, f"only {len(commands)} quoted commands found: is the extraction broken?"
    problems = [problem for command in commands for problem in check_inline_command(command)]
    assert not problems, f"{len(problems)} quoted command(s) would fail:\n" + "\n".join(problems)


def test_every_relative_link_points_at_a_file():
    problems = [problem for path in DOCS for problem in link_problems(path)]
    assert not problems, "\n".join(problems)


def test_the_python_examples_run():
    blocks = [(relative(path), line, body) for path in DOCS
              for language, line, body in fenced_blocks(path.read_text(encoding="utf-8")) if language == "python"]
    assert blocks
    for where, line, body in blocks:
        exec(compile(body, f"{where}:{line}", "exec"), {"__name__": "docs_example"})


def test_the_yaml_fragments_fit_the_config_schema():
    from heatmapnet.config import config_from_dict

    blocks = [(relative(path), line, body) for path in DOCS
              for language, line, body in fenced_blocks(path.read_text(encoding="utf-8")) if language == "yaml"]
    for where, line, body in blocks:
        config_from_dict(yaml.safe_load(body), f"{where}:{line}", validate=False)  # a misspelt key raises


def test_the_readme_keeps_the_two_set_up_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [body.strip() for language, _, body in fenced_blocks(readme) if language == ""]
    assert blocks[:2] == ['pip install -e . -c constraints.txt && heatmapnet train',
                          'pip install -e ".[test]" -c constraints.txt && python -m pytest -q']
    assert len(readme.splitlines()) <= 260


BAD_DOC = '''# A page with mistakes

```
heatmapnet train ytf68 --set train.stepz=100
heatmapnet train ytf68 --ot runs/x
heatmapnet trian ytf68
heatmapnet train no_such_config
heatmapnet train ytf68 --set train.steps=many
heatmapnet eval ytf68 --checkpoint DIR/best.pt
heatmapnet ablate ytf68 --arms mse focall
heatmapnet bench --cases targetz
heatmapnet train lsp_mosaic --set model.init_from=runs/lsp/last.pt
heatmapnet train coco_custom --set data.train.ann_fil=...
heatmapnet export --checkpoint DIR/best.pt --out model.onnx [--opset N] [--dynamic-batchh]
python -m heatmapnet.deploy predict faces/ --model model.onnx --chekpoint x.pt
python tools/peers.py everyone
python tools/no_such_tool.py
python tools/train_face.py --set train.batch_sizee=4
rm -rf runs
```

```bash
heatmapnet bench --device cpu|tpu
```

```sh
heatmapnet train ytf68 \\
    --set train.steps=100 data.augmentation.flip_prob=0.5
```

```console
heatmapnet demo --input-size 64
```

```ini
heatmapnet train --hidden-in-an-unchecked-block
```

In the prose, `heatmapnet train ytf68 --set train.lrr=0.1`, `heatmapnet eval ytf68
--checkpoitn x.pt`, `heatmapnet ablate lsp --budget shrot` and `heatmapnet ablate lsp --arms mse
focall` are wrong, `heatmapnet train ytf68 --set train.lr=0.1` is right.

[a link](docs/nowhere.md) and [an anchor](#no-such-heading) and ![a figure](figures/none.png)
'''


def test_the_checker_catches_bad_commands_and_links(tmp_path):
    commands, problems = extract_commands(BAD_DOC, "bad.md")
    assert any("rm: not a program" in p for p in problems), problems
    assert any("'ini'" in p for p in problems), problems
    by_line = {command.where: check_command(command) for command in commands}
    # every command line but the demo one is wrong: each must be reported
    demo = next(c.where for c in commands if "demo" in c.words)
    assert [where for where, found in by_line.items() if not found] == [demo], by_line
    text = "\n".join(problem for found in by_line.values() for problem in found)
    for expected in ("train.stepz", "'--ot'", "'trian'", "no_such_config", "train.steps", "--out",
                     "focall", "targetz", "pretrain", "data.train.ann_fil", "--dynamic-batchh", "--chekpoint",
                     "everyone", "no such script", "train.batch_sizee", "tpu", "flip_prob"):
        assert expected in text, f"{expected!r} not reported:\n{text}"
    quoted = {command.text: check_inline_command(command) for command in inline_commands(BAD_DOC, "bad.md")}
    assert len(quoted) == 5 and not quoted["heatmapnet train ytf68 --set train.lr=0.1"], quoted
    assert "shrot" in "".join(quoted["heatmapnet ablate lsp --budget shrot"])
    assert "focall" in "".join(quoted["heatmapnet ablate lsp --arms mse focall"])
    assert "train.lrr" in "".join(quoted["heatmapnet train ytf68 --set train.lrr=0.1"])
    assert "--checkpoitn" in "".join(quoted["heatmapnet eval ytf68 --checkpoitn x.pt"])
    page = tmp_path / "bad.md"
    page.write_text(BAD_DOC, encoding="utf-8")
    links = "\n".join(link_problems(page))
    for expected in ("docs/nowhere.md", "#no-such-heading", "figures/none.png"):
        assert expected in links, links


def test_a_sound_synopsis_passes():
    doc = """
```
heatmapnet train [CONFIG] [--set KEY=VALUE ...] [--out DIR] [--resume DIR/last.pt]
heatmapnet predict INPUT ... --backend onnx --model model.onnx [--boxes ...] [--out ...] [--render PATH]
heatmapnet bench [--json PATH] [--cases NAME ...] [--quick] [--device cpu|cuda]
heatmapnet viz --image IMAGE --checkpoint PT [--box X,Y,W,H] --out DIR
python tools/train_face.py --set train.steps=10 --out runs/face
python tools/peers.py all --limit 5
python tools/benchmark.py --quick --cases targets
```
"""
    commands, problems = extract_commands(doc, "synopsis.md")
    assert not problems and len(commands) == 7
    for command in commands:
        assert check_command(command) == [], command


def test_anchors_follow_github():
    assert anchor("Real crowds: lsp_mosaic") == "real-crowds-lsp_mosaic"
    assert anchor("`heatmapnet check`") == "heatmapnet-check"
    assert anchor("Fine-tuning") == "fine-tuning"
    assert anchors("# A\n## A\n## Pre-flight: `heatmapnet check`\n```\n# not a heading\n```\n") == {
        "a", "a-1", "pre-flight-heatmapnet-check"}
