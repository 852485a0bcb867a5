"""The environments by name: `task.source` (the `task=` config group) is the key.

    from sweet_megatron.env import registry
    env = registry.get("synthetic")          # an env.base.Environment
    registry.names()                         # ('synthetic', 'colbench_backend', 'colbench_frontend', 'frontend_synthetic')
    registry.register(MyEnvironment())       # a plug-in: then task.source=<its name> selects it

The built-in environments are registered when this module is imported; nothing else in env/
imports it, so an environment's own modules never depend on the others.
"""

from __future__ import annotations

from sweet_megatron.env.base import Environment
from sweet_megatron.env.colbench_backend.environment import ColBenchBackend
from sweet_megatron.env.colbench_frontend.environment import ColBenchFrontend, FrontendSynthetic
from sweet_megatron.env.synthetic.environment import SyntheticEnvironment


class UnknownEnvironment(KeyError):
    """No environment of that name; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0])


_ENVIRONMENTS: dict[str, Environment] = {}


def register(env: Environment, replace: bool = False) -> Environment:
    """Add an environment under `env.name`; a second one of the same name is an error unless `replace`."""
    if not isinstance(env, Environment):
        raise TypeError(f"register: expected an env.base.Environment instance, got {type(env).__name__}")
    if env.name in _ENVIRONMENTS and not replace:
        raise ValueError(f"register: an environment named {env.name!r} is registered already "
                         f"({type(_ENVIRONMENTS[env.name]).__name__}); pass replace=True to replace it")
    _ENVIRONMENTS[env.name] = env
    return env


def get(name: str) -> Environment:
    """The environment registered as `name`, or UnknownEnvironment naming the registered ones."""
    try:
        return _ENVIRONMENTS[name]
    except KeyError:
        raise UnknownEnvironment(f"task.source={name!r}: no such environment; registered: {', '.join(names())} "
                                 "(`sweet-colbench envs` lists them)") from None


def names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_ENVIRONMENTS)


for _env in (SyntheticEnvironment(), ColBenchBackend(), ColBenchFrontend(), FrontendSynthetic()):
    register(_env)
