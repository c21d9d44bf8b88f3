"""Every function of the library takes at most 8 parameters: a longer list is a bundle that wants
a small object (a frozen dataclass such as prompts.PromptFormat or selfalign.Measuring)."""

import dataclasses
import importlib
import inspect
import pkgutil

import culturealign

MAX_PARAMETERS = 8


def library_functions():
    """(qualified name, function) of every function and method defined in lib/culturealign, the
    __init__ that @dataclass writes left out (its fields are the object, not a parameter list)."""
    for info in pkgutil.walk_packages(culturealign.__path__, prefix="culturealign."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    generated = attr == "__init__" and dataclasses.is_dataclass(obj)
                    if inspect.isfunction(member) and not generated:
                        yield f"{module.__name__}.{name}.{attr}", member


def parameter_count(function) -> int:
    return sum(p.name not in ("self", "cls") for p in inspect.signature(function).parameters.values())


def test_no_library_function_takes_more_than_eight_parameters():
    counts = {name: parameter_count(f) for name, f in library_functions()}
    assert len(counts) > 100, "the walk over lib/culturealign found too few functions"
    over = {name: n for name, n in counts.items() if n > MAX_PARAMETERS}
    assert not over, f"functions with more than {MAX_PARAMETERS} parameters: {over}"


def test_the_count_sees_keyword_only_parameters_and_skips_self():
    class Example:
        def method(self, a, b=1, *, c=2, **rest):
            pass

    assert parameter_count(Example.method) == 4
