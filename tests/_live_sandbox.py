"""A sandbox served over real HTTP on loopback for the tests (a module of its own: test files
import it by this name, which no other folder's conftest shadows)."""

from __future__ import annotations

__all__ = ["LOOPBACK_TIMEOUT", "LiveSandbox"]

#: Seconds a test's own httpx client waits for the sandbox over loopback: the engine's default
#: ``http_timeout``. httpx's own default of 5 s is too short for a picture drawn on a busy
#: two-core CI machine, and these tests are not about timeouts.
LOOPBACK_TIMEOUT = 30.0


class LiveSandbox:
    """A sandbox app served by uvicorn on 127.0.0.1 in a thread: ``.url``, ``.app``, ``.state``."""

    def __init__(self, speed: float = 1000.0) -> None:
        import socket
        import threading
        import time

        import uvicorn

        from jupyter_imagine.sandbox import create_app

        self.app = create_app(speed=speed)
        self.state = self.app.state.sandbox
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
