"""The demo's background imports."""

from __future__ import annotations

import sys

from ml.demo_cli import preload


def test_preload_imports_in_the_background_and_skips_what_fails() -> None:
    sys.modules.pop("colorsys", None)
    thread = preload(("loopline_no_such_module", "colorsys"))
    thread.join(timeout=60)
    assert not thread.is_alive()
    # the missing module did not stop the next one
    assert "colorsys" in sys.modules
    assert "loopline_no_such_module" not in sys.modules
