"""Progress bars for long CLI work (init, evidence export, relay catch-up, benchmarks).

A bar is drawn with Rich on stderr only when stderr is a terminal and the caller did not ask for
machine output (``--json``): scripts, pipes and tests see nothing, and stdout stays the result.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Update = Callable[[int, int], None]  # (done, total)


def bars_wanted(*, quiet: bool = False) -> bool:
    """Whether to draw progress: stderr is a terminal and the output is not for a machine."""
    return not quiet and sys.stderr.isatty()


def make_progress(*, quiet: bool = False) -> Progress:
    """A transient Rich progress display on stderr; disabled (draws nothing) when
    ``bars_wanted`` is false."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not bars_wanted(quiet=quiet),
    )


@contextmanager
def progress_bar(description: str, *, quiet: bool = False) -> Iterator[Update]:
    """A bar for one task; yields ``update(done, total)``, a no-op when nothing is drawn."""
    with make_progress(quiet=quiet) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def stages(title: str, total: int, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A bar over ``total`` named stages; yields ``stage(label)``, called as each one starts.
    Without a terminal each stage is one ``label ...`` line on stderr instead (for CI logs)."""
    with make_progress(quiet=quiet) as progress:
        task = progress.add_task(title, total=total)
        started = 0

        def stage(label: str) -> None:
            nonlocal started
            if progress.disable and not quiet:
                print(f"{label} ...", file=sys.stderr, flush=True)
            progress.update(task, completed=started, description=f"{title}: {label}")
            started += 1

        yield stage
        progress.update(task, completed=total)
