"""A densemtl node in a process of its own, started as a user starts it and stopped as
``ros2 launch`` stops it (SIGINT), for the live bag replay, the demo, the node benchmark and
the console tests.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

MODULE_COMMAND = (sys.executable, "-m", "densemtl_ros.node")
"""The ``densemtl-node`` console script's ``console_main``, run without the script."""
STOP_TIMEOUT = 15.0


def node_arguments(image_topic: str | None = None, camera_info_topic: str | None = None,
                   parameters: Mapping[str, object] | None = None) -> list[str]:
    """``--ros-args`` remapping the node's camera topics and setting ``parameters``
    (booleans spelled as ROS spells them)."""
    arguments = ["--ros-args"]
    for name, topic in (("image", image_topic), ("camera_info", camera_info_topic)):
        if topic:
            arguments += ["-r", f"{name}:={topic}"]
    for name, value in (parameters or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        arguments += ["-p", f"{name}:={text}"]
    return arguments


class NodeProcess:
    """``command`` (the node) with ``arguments`` in a subprocess (a context manager that stops
    it). Its merged stdout and stderr go to ``log_path``, or without one are kept line by line
    (:attr:`output`, :meth:`wait_for_line`). ``environment_defaults`` are set where the
    environment lacks them (a DDS profile the caller's ROS side uses too)."""

    def __init__(self, arguments: Sequence[str] = (), *,
                 command: Sequence[str] = MODULE_COMMAND, log_path: Path | None = None,
                 environment_defaults: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        environment = dict(os.environ)
        for name, value in (environment_defaults or {}).items():
            environment.setdefault(name, value)
        environment["PYTHONUNBUFFERED"] = "1"  # lines arrive as the node logs them
        environment["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
        self.command = [*command, *arguments]
        self._log = open(log_path, "w") if log_path else None
        self.process = subprocess.Popen(
            self.command, cwd=cwd, env=environment, text=True, stderr=subprocess.STDOUT,
            stdout=self._log if self._log else subprocess.PIPE)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        if self._log is None:
            self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def output(self) -> str:
        """What the node wrote so far (empty when it writes to a log file)."""
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, pattern: re.Pattern, timeout: float) -> str | None:
        """The first output line matching ``pattern``; None once the process ended or the
        time is up."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if pattern.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self.running and not self._reader.is_alive()):
                    return None
                self._changed.wait(min(remaining, 0.5))

    def wait(self, timeout: float) -> int:
        """The exit code once the node has ended (``subprocess.TimeoutExpired`` if it has not
        within ``timeout`` seconds), with all its output read."""
        code = self.process.wait(timeout=timeout)
        if self._reader.is_alive():
            self._reader.join(timeout=5.0)
        return code

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ctrl-C, and the exit code (``subprocess.TimeoutExpired`` if it does not stop)."""
        self.process.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Interrupt the node if it runs, killing it if it does not stop within ``timeout``;
        its exit code."""
        if self.running:
            try:
                self.interrupt(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.process.returncode

    def kill(self) -> None:
        """End it at once (a test that failed left it running)."""
        if self.running:
            self.process.kill()
        self.wait(timeout=10.0)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
