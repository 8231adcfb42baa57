"""Every hook is documented: each argument has a :param:, the return value a :returns:, and an example."""

import inspect

import pytest

from weft import hookspecs

HOOKS = [obj for name, obj in vars(hookspecs).items() if name.startswith("weft_") and inspect.isfunction(obj)]


def test_hooks_exist_for_every_kind():
    prefixes = {h.__name__.split("_")[1] for h in HOOKS}
    assert {"accelerator", "precision", "strategy", "environment", "validate"} <= prefixes
    assert len(HOOKS) >= 40


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.__name__)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(hook)
    assert doc, f"{hook.__name__} has no docstring"
    for param in inspect.signature(hook).parameters:
        assert f":param {param}:" in doc, f"{hook.__name__}: argument {param!r} is undocumented"
    assert ":returns:" in doc, f"{hook.__name__}: return value undocumented"
    assert "Example::" in doc and "@hookimpl" in doc, f"{hook.__name__}: no example implementation"
    assert "versionadded" in doc, f"{hook.__name__}: no versionadded"


def test_every_hook_is_a_registered_spec():
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for hook in HOOKS:
        assert getattr(pm.hook, hook.__name__).spec is not None


def test_weft_reexports_hookimpl():
    import weft

    assert weft.hookimpl is hookspecs.hookimpl
