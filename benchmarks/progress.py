"""What `scratch-grad bench` is doing, as it goes, on stderr (stdout keeps the report).

One line per phase, always ("[3/9] timing mlp_784_256_256_10_b128: ..."): the plain periodic lines of
a run that lasts minutes. On a terminal, a tqdm bar of the phase's timing rounds below it, with its
rate and ETA (nothing when stderr is not a terminal). tqdm is imported directly, not through
scratch_grad, which is one of the implementations timed and may be broken mid-rewrite.
"""
import sys
import time


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class BenchProgress:
    def __init__(self, phases, stream=None, enabled=None):
        self.phases = phases          # how many announce() calls to expect, for the [k/n] counter
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled        # None: a live bar only on a terminal
        self.done = 0
        self.started = time.perf_counter()
        self.bar = None

    def say(self, text):
        self._close_bar()
        print(text, file=self.stream, flush=True)

    def announce(self, what, rounds=None, unit="round"):
        """A new phase: its line, and a bar of `rounds` steps on a terminal."""
        self.done += 1
        elapsed = time.perf_counter() - self.started
        self.say(f"[{self.done}/{max(self.phases, self.done)}, {elapsed:.0f} s] {what}")
        live = _is_terminal(self.stream) if self.enabled is None else self.enabled
        if rounds and live:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=rounds, desc="  timing", unit=unit, file=self.stream, leave=False,
                            dynamic_ncols=True)

    def step(self, count=1):
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Silent:
    """The same interface, printing nothing (the default of the suite functions)."""

    def say(self, text):
        pass

    def announce(self, what, rounds=None, unit="round"):
        pass

    def step(self, count=1):
        pass

    def close(self):
        pass
