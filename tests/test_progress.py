"""Progress bars: plain lines (no carriage returns, no cursor moves) when the stream is not a terminal."""
import io

from fairseq_shiftadd.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_redirected_progress_writes_plain_lines() -> None:
    log = io.StringIO()
    for _ in progress(range(50), desc="valid loss", file=log, interval=0.0, total=50):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b[" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("valid loss") for line in lines)
    assert "50/50" in lines[-1] and text.endswith("\n")


def test_terminal_keeps_tqdm_bar_and_disabled_prints_nothing() -> None:
    tty = _Terminal()
    for _ in progress(range(3), desc="search", file=tty, mininterval=0):
        pass
    assert "\r" in tty.getvalue()  # a live bar on a terminal
    quiet = io.StringIO()
    for _ in progress(range(3), desc="search", file=quiet, enabled=False):
        pass
    assert quiet.getvalue() == ""


def test_manual_updates_and_close_in_a_log() -> None:
    log = io.StringIO()
    with progress(total=4, desc="download", file=log, interval=0.0, unit="B") as bar:
        for _ in range(4):
            bar.update(1)
    assert "\r" not in log.getvalue() and "4/4" in log.getvalue().splitlines()[-1]
