"""A fake front end for widget protocol tests: captures what a widget sends, feeds it messages."""

from __future__ import annotations


class Wire:
    def __init__(self, widget):
        self.widget = widget
        self.sent: list[tuple[dict, list]] = []
        widget.send = lambda content, buffers=None: self.sent.append((content, buffers or []))

    def request(self, kind, args=None, rid="r1", **extra):
        msg = {"type": "request", "id": rid, "kind": kind, "args": args if args is not None else {}}
        msg.update(extra)
        return self.raw(msg)

    def raw(self, msg):
        """Send one message; return the single reply it got (background requests are waited for)."""
        self.sent.clear()
        self.widget._on_msg(self.widget, msg, [])
        self.widget.wait(120)
        replies = [c for c, _ in self.sent if c.get("type") == "reply"]
        assert len(replies) == 1, self.sent
        return replies[0]

    def progress(self) -> list[dict]:
        return [c for c, _ in self.sent if c.get("type") == "progress"]
