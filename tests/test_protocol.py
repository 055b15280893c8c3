"""The widgets' comm messages: _protocol lists every one the JS and the Python handlers send."""

from __future__ import annotations

import re
from pathlib import Path

from jupyter_imagine.widgets import _protocol

REPO = Path(__file__).resolve().parents[1]


def test_the_protocol_lists_every_message_the_js_and_python_send():
    for widget, requests in _protocol.REQUESTS.items():
        source = (REPO / "js" / f"{widget}.js").read_text(encoding="utf-8")
        sent = set(re.findall(r'model\.send\(\{ type: "(\w+)"', source))
        assert sent == requests, widget
    sent_back = {
        name: set(re.findall(r'(?:Reply|Request) = \{"type": "(\w+)"',
                             (REPO / "jupyter_imagine" / "widgets" / f"_{name}.py").read_text()))
        for name in _protocol.REPLIES
    }
    assert sent_back == _protocol.REPLIES
    assert _protocol.message_type({"type": "act", "label": "U1"}) == "act"
    assert _protocol.message_type(["act"]) == _protocol.message_type({"type": 3}) == ""
