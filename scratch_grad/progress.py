"""Progress of long commands (parity, fuzz, mutate, bench, train) through tqdm.

On a terminal a live bar with counts, rates and ETA; anywhere else (CI logs, pytest's capture, a
pipe) nothing, so the output stays the report: commands that run for minutes print their own plain
periodic lines there instead (fuzz's status line, bench's "timing ..." lines).

tqdm is imported only when a bar is made, so `import scratch_grad` still needs only NumPy and SciPy.
"""
import sys


def is_terminal(stream):
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:          # a closed stream
        return False


def bar(total=None, desc="", unit="it", stream=None, enabled=None, **options):
    """A tqdm bar on `stream` (default stderr), live only when `stream` is a terminal or `enabled`
    says so; disabled, every method is a cheap no-op. `leave=False`: the bar goes away when closed,
    and what the command prints next takes its place."""
    from tqdm import tqdm
    stream = sys.stderr if stream is None else stream
    live = is_terminal(stream) if enabled is None else bool(enabled)
    options.setdefault("leave", False)
    options.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not live, **options)
