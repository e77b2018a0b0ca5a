"""Email templates: Jinja (sandboxed) over MJML, compiled with mjml-python, CSS inlined.

A template lives in `templates/email/<name>/` as `subject.txt`, `body.mjml` and `body.txt`,
with the shared layout `_layout.mjml` and text footer `_footer.txt`. Those files are the
defaults: staff may publish their own versions (stored in the database, see
`newsletter.mail.templates.store`), and `render_email` then renders the published version,
falling back to the last version that rendered well if it fails.

Jinja runs in a `SandboxedEnvironment` with `StrictUndefined`: a template can reach only the
context it is given (no configuration, request, database or Python internals), and a
missing variable is an error rather than a blank in a sent email.

Two rules keep a template from reaching the server or taking it down:

- **Names.** `{% include %}`, `{% import %}`, `{% from … import %}` and `{% extends %}`
  resolve only names of the template set: the email's own files and the layout as given,
  and the `.txt`/`.mjml` files of `templates/email/` whose real path stays inside it
  (`template_set`). Names are looked up as written in that dict, never joined onto a
  path, so `/proc/self/environ`, `//etc/hostname`, `../x` or a symlink out find nothing.
- **Bounds.** Every render of template text (previews, checks, test sends, sends, the
  files included) goes through `render_batch`, which renders one template for many
  contexts in a child process (`newsletter.mail.isolation`) under a CPU-time limit, an
  address-space limit and a deadline, and bounds what the sandbox can build: ranges,
  `**`, `*`, `+`, format widths (`str.format`, `%`, `|format`), padding and filler
  sizes (`center`, `ljust`, `indent`, `wordwrap`, `batch`, `replace`, `join`…), values
  stored in a `namespace`, and each part's output. A breach is a `TemplateRenderError`
  saying which limit, and where when it can.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, update_wrapper
from pathlib import Path
from typing import Any

from flask import current_app, has_app_context
from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2 import filters as jinja_filters
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace
from markupsafe import Markup
from mjml import mjml2html
from premailer import Premailer

from newsletter.config import TEMPLATES_DIR
from newsletter.mail import isolation

EMAIL_TEMPLATES = TEMPLATES_DIR / "email"
GMAIL_CLIP_BYTES = 102 * 1024
LAYOUT = "_layout"  # the shared layout: `_layout.mjml` and the text footer `_footer.txt`
PART_FILES = {"subject": "subject.txt", "mjml": "body.mjml", "text": "body.txt"}
LAYOUT_FILES = {"mjml": "_layout.mjml", "text": "_footer.txt"}
TEMPLATE_SUFFIXES = (".txt", ".mjml")
# What the sandbox lets a template build (bounds on values, checked before building them).
MAX_POWER_EXPONENT = 100
MAX_REPEAT_LENGTH = 1_000_000  # items or characters from `*`, `+`, `batch`, `replace`…
MAX_INT_BITS = 10_000  # about 3,000 digits: any number a template may make can be printed
MAX_WIDTH = 10_000  # a format width or precision, a padding or indent width
# Default limits of one render batch (config: TEMPLATE_CPU_SECONDS, TEMPLATE_MEMORY_MB,
# TEMPLATE_OUTPUT_MB, TEMPLATE_WALL_SECONDS).
CPU_SECONDS = 2
MEMORY_MB = 256
OUTPUT_MB = 4  # characters of one part (subject, text or MJML) after Jinja, in millions
WALL_SECONDS = 10.0


class TemplateRenderError(Exception):
    """A template failed to render or compile; the message says where."""

    def __init__(self, message: str, *, part: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.part = part  # e.g. "edition/body.mjml", "_layout.mjml", "mjml"
        self.line = line


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class TemplateSources:
    """What one email renders from: its own three parts and the shared layout's two."""

    subject: str
    mjml: str
    text: str
    layout_mjml: str
    layout_text: str

    def files(self, name: str) -> dict[str, str]:
        return {
            f"{name}/subject.txt": self.subject,
            f"{name}/body.mjml": self.mjml,
            f"{name}/body.txt": self.text,
            LAYOUT_FILES["mjml"]: self.layout_mjml,
            LAYOUT_FILES["text"]: self.layout_text,
        }


def template_names() -> list[str]:
    """Every email there is a default for (a folder with a subject), sorted."""
    return sorted(
        p.name for p in EMAIL_TEMPLATES.iterdir() if p.is_dir() and (p / "subject.txt").is_file()
    )


def default_parts(name: str) -> dict[str, str]:
    """The files' text of one email (or of the layout, `LAYOUT`): {"subject", "mjml", "text"}."""
    if name == LAYOUT:
        return {
            "subject": "",
            **{k: (EMAIL_TEMPLATES / f).read_text("utf-8") for k, f in LAYOUT_FILES.items()},
        }
    if name not in template_names():
        raise KeyError(name)
    return {k: (EMAIL_TEMPLATES / name / f).read_text("utf-8") for k, f in PART_FILES.items()}


def default_sources(name: str) -> TemplateSources:
    own, layout = default_parts(name), default_parts(LAYOUT)
    return TemplateSources(own["subject"], own["mjml"], own["text"], layout["mjml"], layout["text"])


def template_set(root: Path | None = None) -> dict[str, str]:
    """Every file a template may include, import or extend, by name (`_footer.txt`,
    `edition/body.mjml`): the `.txt` and `.mjml` files of `templates/email/` whose real
    path is inside it. A symlink out of the folder is left out, and a linked folder is not
    entered."""
    base = (root or EMAIL_TEMPLATES).resolve()
    found: dict[str, str] = {}
    for folder, _dirs, names in os.walk(base):  # followlinks=False
        for file in names:
            path = Path(folder) / file
            if file.startswith(".") or not file.endswith(TEMPLATE_SUFFIXES):
                continue
            real = path.resolve()
            if real.is_relative_to(base) and real.is_file():
                found[path.relative_to(base).as_posix()] = real.read_text("utf-8")
    return found


def template_files(name: str, sources: TemplateSources) -> dict[str, str]:
    """All a render of `name` from `sources` can load: the template set, with the email's
    own parts and the layout as given in place of their files."""
    return {**template_set(), **sources.files(name)}


class _SourcesLoader(BaseLoader):
    """The template set by name, looked up as written: nothing is read from disk here,
    and no name is ever joined onto a path."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def get_source(
        self, environment: Any, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if isinstance(template, str) and template in self.files:
            return self.files[template], template, lambda: True
        raise TemplateNotFound(
            template, f"{str(template)[:80]!r} is not one of this email's templates"
        )


def _too_long(length: int) -> None:
    if length > MAX_REPEAT_LENGTH:
        raise OverflowError("that value would be too long")


def _check_width(value: Any, what: str = "width") -> None:
    if isinstance(value, int) and abs(value) > MAX_WIDTH:
        raise OverflowError(f"a {what} over {MAX_WIDTH} is not allowed")
    if isinstance(value, str) and len(value) > MAX_WIDTH:
        raise OverflowError(f"a {what} over {MAX_WIDTH} characters is not allowed")


_SPEC_NUMBER = re.compile(r"\d+")
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


def _check_spec_numbers(numbers: Sequence[str]) -> None:
    for number in numbers:
        if len(number) > 6 or int(number) > MAX_WIDTH:
            raise OverflowError(f"a format width or precision over {MAX_WIDTH} is not allowed")


def _check_printf(fmt: str, values: Any) -> None:
    """`%` formatting: no width or precision over MAX_WIDTH, written or given by `*`."""
    star = False
    for match in _PRINTF.finditer(fmt):
        for number in match.groups():
            if number == "*":
                star = True
            elif number:
                _check_spec_numbers([number])
    if star:
        items = values if isinstance(values, tuple) else (values,)
        for item in items:
            _check_width(item, "format width or precision")


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_spec_numbers(_SPEC_NUMBER.findall(format_spec))
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


class _BoundedNamespace(Namespace):
    """`namespace()`, whose values cannot grow past MAX_REPEAT_LENGTH (a loop doubling a
    string stops there, not at the memory limit)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(value, str | list | tuple | dict):
            _too_long(len(value))
        super().__setitem__(name, value)


def _center(value: Any, width: int = 80) -> str:
    _check_width(width)
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width)
    step = len(width) if isinstance(width, str) else int(width)
    _too_long(len(str(s)) + (str(s).count("\n") + 1) * max(step, 0))
    return jinja_filters.do_indent(s, width, first, blank)


def _wordwrap(environment: Any, s: Any, width: int = 79, *args: Any, **kwargs: Any) -> str:
    _check_width(width)
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    if wrapstring:
        _too_long(len(str(s)) * (len(str(wrapstring)) + 1))
    return jinja_filters.do_wordwrap(environment, s, width, *args, **kwargs)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None and isinstance(linecount, int):
        _too_long(linecount)
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int):
        _too_long(slices)
    return jinja_filters.sync_do_slice(value, slices, fill_with)


def _replace_length(s: str, old: str, new: str, count: int | None = None) -> int:
    hits = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _too_long(_replace_length(str(s), str(old), str(new), count))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    strings = [len(item) for item in items if isinstance(item, str)]
    _too_long(sum(strings) + len(str(d)) * max(len(items) - 1, 0))
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Markup:
    _check_width(indent, "JSON indent")
    return jinja_filters.do_tojson(eval_ctx, value, indent)


def _bound_filters() -> dict[str, Callable[..., Any]]:
    """The filters that can build something much bigger than their input, bounded. Each
    keeps its original's `pass_*` marker, so Jinja calls it the same way."""
    originals: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "center": (jinja_filters.do_center, _center),
        "indent": (jinja_filters.do_indent, _indent),
        "wordwrap": (jinja_filters.do_wordwrap, _wordwrap),
        "batch": (jinja_filters.do_batch, _batch),
        "slice": (jinja_filters.sync_do_slice, _slice),
        "replace": (jinja_filters.do_replace, _replace),
        "join": (jinja_filters.sync_do_join, _join),
        "format": (jinja_filters.do_format, _format),
        "tojson": (jinja_filters.do_tojson, _tojson),
    }
    bounded: dict[str, Callable[..., Any]] = {}
    for name, (original, guard) in originals.items():
        guard.__dict__.update(original.__dict__)  # jinja_pass_arg
        bounded[name] = guard
    return bounded


_BOUNDED_FILTERS = _bound_filters()
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_method_call(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`str` and `bytes` methods whose result can be much longer than the string."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(method, "__name__", "")
    if name in _WIDTH_METHODS:
        for arg in (*args[:1], kwargs.get("width"), kwargs.get("tabsize")):
            _check_width(arg)
        if name == "expandtabs":
            _too_long(len(owner) * (int(args[0]) if args and isinstance(args[0], int) else 8))
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            count = args[2] if len(args) > 2 else kwargs.get("count")
            _too_long(_replace_length(owner, old, new, count))  # type: ignore[arg-type]
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple) else ()
        strings = [len(item) for item in items if isinstance(item, str | bytes)]
        _too_long(sum(strings) + len(owner) * max(len(items) - 1, 0))


class EmailSandbox(SandboxedEnvironment):
    """Jinja's sandbox, narrowed further for templates staff edit.

    - Attribute access is the sandbox's: nothing starting with "_" (so no `__class__`,
      `__globals__`, `__init__` walks), no function internals, `str.format` checked.
    - Only the globals a template needs (`range`, `dict`, `namespace`): `lipsum`, `cycler`
      and `joiner` are gone, so they cannot be used as a way in.
    - What a template builds is bounded before it is built: `**` (exponent and result),
      `*` and `+` (lengths, number sizes), format widths and precisions (`str.format`,
      `%`, `|format`), padding and filler sizes (`center`/`ljust`/`rjust`/`zfill`,
      `indent`, `wordwrap`, `batch`, `slice`, `replace`, `join`), values kept in a
      `namespace`. So `9**9**9` or `"x" * 10**10` fail at once instead of hanging; what
      slips through meets the batch's CPU and memory limits (`render_batch`).
    """

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.globals["namespace"] = _BoundedNamespace
        self.filters.update(_BOUNDED_FILTERS)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER_EXPONENT:
                raise OverflowError(f"exponent over {MAX_POWER_EXPONENT} is not allowed")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and abs(left).bit_length() * right > MAX_INT_BITS
            ):
                raise OverflowError("that number would be too big")
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_REPEAT_LENGTH
                ):
                    raise OverflowError("that repetition would be too long")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS
            ):
                raise OverflowError("that number would be too big")
            return operator.mul(left, right)
        if operator_ == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _too_long(len(left) + len(right))
            return operator.add(left, right)
        if operator_ == "%":
            if isinstance(left, str):
                _check_printf(left, right)
            return operator.mod(left, right)
        return super().call_binop(context, operator_, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own `str.format`/`format_map` wrapper, with widths bounded."""
        if getattr(value, "__name__", None) not in ("format", "format_map"):
            return None
        owner = getattr(value, "__self__", None)
        if not isinstance(owner, str) or super().wrap_str_format(value) is None:
            return None
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else _BoundedFormatter(self)
        )
        str_type = type(owner)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(owner, args, kwargs))

        return update_wrapper(wrapper, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


@lru_cache(maxsize=32)
def _environment(files: tuple[tuple[str, str], ...]) -> EmailSandbox:
    return EmailSandbox(
        loader=_SourcesLoader(dict(files)),
        undefined=StrictUndefined,
        # MJML is XML-ish: escape values in it; text parts and subjects stay as written.
        autoescape=lambda name: bool(name and name.endswith((".mjml", ".html"))),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def environment_for(name: str, sources: TemplateSources) -> EmailSandbox:
    """The environment `name` renders in from `sources`. In the app process it is used to
    parse (the checks); rendering happens in `render_batch`'s child."""
    return _files_environment(template_files(name, sources))


def _files_environment(files: dict[str, str]) -> EmailSandbox:
    return _environment(tuple(sorted(files.items())))


_MJML_POSITION = re.compile(r"at position (\d+):(\d+)")


def compile_mjml(source: str) -> str:
    try:
        html = mjml2html(source)
    except ValueError as exc:
        message, line = str(exc), None
        match = _MJML_POSITION.search(message)
        if match:
            line = source.count("\n", 0, int(match.group(1))) + 1
            message += f" (line {line} of the MJML after Jinja)"
        raise TemplateRenderError(f"MJML error: {message}", part="mjml", line=line) from exc
    return inline_css(html)


def inline_css(html: str) -> str:
    # Network off: a template must never make the renderer fetch a stylesheet.
    return Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=True,  # keeps @media rules for mobile clients
        # A dark-mode @media rule must say !important to win over the inlined colours.
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def _where(exc: BaseException, files: dict[str, str]) -> tuple[str | None, int | None]:
    """The template file and line an error was raised at, from Jinja's rewritten
    traceback (or the syntax error itself)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in files:
            found = (frame.filename, frame.lineno)
    return found


def describe_error(
    exc: BaseException, files: dict[str, str], limits: RenderLimits | None = None
) -> TemplateRenderError:
    part, line = _where(exc, files)
    kind = "syntax error" if isinstance(exc, TemplateSyntaxError) else "error"
    if isinstance(exc, isolation.CpuLimitExceeded | MemoryError):
        kind, text = "limit", (limits or RenderLimits()).message(_LIMIT_KIND[type(exc)])
    else:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    where = f"{part}, line {line}" if part and line else (part or "template")
    return TemplateRenderError(f"{where}: {kind}: {text}", part=part, line=line)


_LIMIT_KIND: dict[type[BaseException], str] = {
    isolation.CpuLimitExceeded: "cpu",
    MemoryError: "memory",
}


@dataclass(frozen=True)
class RenderLimits:
    """The bounds of one render batch (see `render_batch`)."""

    cpu_seconds: int = CPU_SECONDS
    memory_mb: int = MEMORY_MB
    output_mb: int = OUTPUT_MB
    wall_seconds: float = WALL_SECONDS

    @classmethod
    def current(cls) -> RenderLimits:
        """The app's configured limits, or the defaults outside an app."""
        if not has_app_context():
            return cls()
        cfg = current_app.config
        return cls(
            cpu_seconds=max(1, int(cfg.get("TEMPLATE_CPU_SECONDS", CPU_SECONDS))),
            memory_mb=max(16, int(cfg.get("TEMPLATE_MEMORY_MB", MEMORY_MB))),
            output_mb=max(1, int(cfg.get("TEMPLATE_OUTPUT_MB", OUTPUT_MB))),
            wall_seconds=float(cfg.get("TEMPLATE_WALL_SECONDS", WALL_SECONDS)),
        )

    @property
    def output_chars(self) -> int:
        return self.output_mb * 1024 * 1024

    def process(self) -> isolation.Limits:
        return isolation.Limits(
            cpu_seconds=self.cpu_seconds,
            memory_bytes=self.memory_mb * 1024 * 1024,
            wall_seconds=max(self.wall_seconds, self.cpu_seconds + 1.0),
        )

    def message(self, kind: str) -> str:
        if kind == "cpu":
            return f"the template took longer than {self.cpu_seconds} s of CPU time to render"
        if kind == "memory":
            return f"the template used more than {self.memory_mb} MB of memory"
        if kind == "wall":
            return f"the template took longer than {self.wall_seconds:g} s to render"
        if kind == "output":
            return f"the template's output is over {self.output_mb} MB"
        return (
            f"the renderer was stopped: the template took longer than {self.cpu_seconds} s "
            f"of CPU time or used more than {self.memory_mb} MB of memory"
        )


@dataclass(frozen=True)
class Rendering:
    """One context's outcome in a batch. `mjml` is the MJML after Jinja (None when Jinja
    failed); `html` is None when Jinja or the MJML failed; `error` says why."""

    subject: str = ""
    text: str = ""
    mjml: str | None = None
    html: str | None = None
    error: TemplateRenderError | None = None

    @property
    def email(self) -> RenderedEmail:
        if self.error is not None:
            raise self.error
        assert self.html is not None  # noqa: S101 (no error means the HTML was built)
        return RenderedEmail(subject=self.subject, text=self.text, html=self.html)


@dataclass(frozen=True)
class _Batch:
    """What the child renders: one email, its template set, and the contexts."""

    name: str
    files: dict[str, str]
    contexts: list[dict[str, Any]]
    keep_going: bool
    limits: RenderLimits = RenderLimits()


class _OutputTooLong(Exception):
    pass


def _render_part(env: EmailSandbox, file: str, context: dict[str, Any], limit: int) -> str:
    chunks: list[str] = []
    size = 0
    for chunk in env.get_template(file).generate(context):
        size += len(chunk)
        if size > limit:
            raise _OutputTooLong(file)
        chunks.append(chunk)
    return "".join(chunks)


def _error_row(error: TemplateRenderError) -> tuple[str, str | None, int | None]:
    return (error.message, error.part, error.line)


def _render_one(
    batch: _Batch, env: EmailSandbox, context: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """One context, in the child: (the row, whether the batch must stop)."""
    name, files, limits = batch.name, batch.files, batch.limits
    row: dict[str, Any] = {"subject": "", "text": "", "mjml": None, "html": None, "error": None}
    try:
        subject = _render_part(env, f"{name}/subject.txt", context, limits.output_chars)
        row["text"] = _render_part(env, f"{name}/body.txt", context, limits.output_chars)
        mjml_source = _render_part(env, f"{name}/body.mjml", context, limits.output_chars)
    except _OutputTooLong as exc:
        error = TemplateRenderError(f"{exc.args[0]}: limit: {limits.message('output')}")
        row["error"] = _error_row(error)
        return row, False
    except Exception as exc:  # a staff-edited template can raise anything
        row["error"] = _error_row(describe_error(exc, files, limits))
        return row, isinstance(exc, isolation.CpuLimitExceeded | MemoryError)
    # A subject is one line: collapse whatever whitespace the template left.
    row["subject"], row["mjml"] = " ".join(subject.split()), mjml_source
    try:
        row["html"] = compile_mjml(mjml_source)
    except TemplateRenderError as exc:
        row["error"] = _error_row(exc)
    except (isolation.CpuLimitExceeded, MemoryError) as exc:
        row["error"] = _error_row(describe_error(exc, files, limits))
        return row, True
    except Exception as exc:  # e.g. the CSS inliner choking on what a template made
        error = TemplateRenderError(f"{name}: the HTML could not be built: {exc}")
        row["error"] = _error_row(error)
    return row, False


def render_in_process(batch: _Batch) -> list[dict[str, Any]]:
    """`render_batch`'s work, run in its child (and by the zygote, to warm up): stops at
    the first error unless `keep_going`, and always once a CPU or memory limit is reached
    (the budget is spent)."""
    env = _files_environment(batch.files)
    rows = []
    for context in batch.contexts:
        row, spent = _render_one(batch, env, context)
        rows.append(row)
        if spent or (row["error"] is not None and not batch.keep_going):
            break
    return rows


def start_renderer(samples: Sequence[tuple[str, Sequence[dict[str, Any]]]] = ()) -> None:
    """Start the process children are forked from, now (in the background). `samples`:
    (email, contexts) it renders once with the files before forking, which fills the CSS
    inliner's caches of parsed styles for every child (a staff version mostly reuses the
    layout's styles)."""
    isolation.start(
        [
            (render_in_process, _Batch(n, template_files(n, default_sources(n)), list(c), True))
            for n, c in samples
        ]
    )


def render_batch(
    name: str,
    sources: TemplateSources,
    contexts: Sequence[dict[str, Any]],
    *,
    keep_going: bool = False,
) -> list[Rendering]:
    """Render email `name` from `sources` once per context, in one child process under
    the app's `RenderLimits`: the one way template text is rendered.

    Returns one `Rendering` per context rendered. Without `keep_going` it stops at the
    first failure, which is then the last item; a CPU or memory limit always stops the
    batch. Raises `TemplateRenderError` when the child is stopped (CPU, deadline) or dies
    before it can say which context broke."""
    limits = RenderLimits.current()
    batch = _Batch(name, template_files(name, sources), list(contexts), keep_going, limits)
    try:
        rows = isolation.run(render_in_process, batch, limits.process())
    except isolation.LimitExceeded as exc:
        message = limits.message(exc.kind)
        raise TemplateRenderError(f"{name}: limit: {message}") from None
    except RuntimeError as exc:  # a bug in the renderer, not the template
        raise TemplateRenderError(f"{name}: the renderer failed: {exc}") from exc
    out = []
    for row in rows:
        error = row["error"]
        out.append(
            Rendering(
                subject=row["subject"],
                text=row["text"],
                mjml=row["mjml"],
                html=row["html"],
                error=TemplateRenderError(error[0], part=error[1], line=error[2])
                if error
                else None,
            )
        )
    return out


def render_many(
    name: str, sources: TemplateSources, contexts: Sequence[dict[str, Any]]
) -> list[RenderedEmail]:
    """Every context rendered, or the first failure raised (`TemplateRenderError`)."""
    return [rendering.email for rendering in render_batch(name, sources, contexts)]


def render_sources(name: str, sources: TemplateSources, context: dict[str, Any]) -> RenderedEmail:
    """Render one email from the given sources. Any failure of the template, whatever it
    is (syntax, undefined variable, a sandbox refusal, a limit, a division by zero),
    becomes a `TemplateRenderError` saying which part and line."""
    [rendering] = render_batch(name, sources, [context])
    return rendering.email


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    """Render an email from its published version (see `newsletter.mail.templates.store`), or
    from the files outside an app or before the staff area is set up."""
    if has_app_context():
        store = current_app.extensions.get("email_templates")
        if store is not None:
            return store.render(name, [context])[0]
    return render_sources(name, default_sources(name), context)


_WARM_MJML = (
    "<mjml><mj-head><mj-style>.a { color: #111; }</mj-style></mj-head><mj-body>"
    '<mj-section><mj-column><mj-text css-class="a">warm</mj-text></mj-column></mj-section>'
    "</mj-body></mjml>"
)


def warm_up() -> None:
    """Compile every email's files, the CSS validator's patterns (compiled lazily, the
    first time each property is seen) and one small email, so that processes forked
    after this (the render children) start with all of it done."""
    import cssutils

    for name in template_names():
        env = environment_for(name, default_sources(name))
        for part in PART_FILES.values():
            env.get_template(f"{name}/{part}")
    for properties in getattr(cssutils.profile, "_profilesProperties", {}).values():
        for pattern in properties.values():
            getattr(pattern, "ensure", lambda: None)()
    compile_mjml(_WARM_MJML)
