"""The differential suite needs Lightning Fabric (a test-only dependency); without it, it skips."""

import pytest

pytest.importorskip("lightning.fabric", reason="lightning is not installed (scripts/setup.sh installs it for tests)")
