"""Which SQS operations a batchq component can call, derived from the source (no import, no run).

A function-level call graph of ``include/batchq``, built from the AST:

- nodes are module-level functions and class methods (``batchq.sqs:send_bodies``,
  ``batchq.worker.runner:Worker.run``);
- an edge goes to every batchq function or class a body names (imports resolved, relative ones too; a
  class stands for all its methods), to ``self.m``/``cls.m`` in the same class, and — for a method call
  on an object whose type the AST cannot know (``self.hook.send_bodies(...)``) — to every method of
  that name in the modules the component imports at all (an over-approximation: it can only add);
- a leaf is a call of a method named like an SQS operation (botocore's service model gives the names,
  as in ``tests/unit/test_layering.py``) on anything but a batchq module.

A component is a set of entries — a module (every function and class it defines) or one function
(``module:qualname``) — and nodes not to walk into, each with its reason; its operations are those
reachable from the entries. :func:`iam_actions` maps operations to IAM actions (the batch operations
are authorised by their single-message action).
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "include" / "batchq"

#: IAM authorises a batch call with the single-message action (SQS API reference, "Actions").
BATCH_TO_SINGLE = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


@functools.cache
def sqs_operations() -> dict[str, str]:
    """boto3 method name → SQS operation name (``send_message_batch`` → ``SendMessageBatch``)."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("sqs")
    return {xform_name(name): name for name in model.operation_names}


def iam_actions(operations: Iterable[str]) -> frozenset[str]:
    """IAM actions that authorise ``operations`` (SQS operation names)."""
    return frozenset(f"sqs:{BATCH_TO_SINGLE.get(op, op)}" for op in operations)


def module_name(path: Path, package_root: Path = PACKAGE) -> str:
    parts = ["batchq", *path.relative_to(package_root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, target: str | None, level: int) -> str:
    if not level:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


@dataclass
class ModuleInfo:
    name: str
    #: local name → ``"batchq.x"`` (a module) or ``"batchq.x:f"`` (a name in a module)
    bindings: dict[str, str] = field(default_factory=dict)
    #: ``"f"`` / ``"Class.m"`` → body node
    functions: dict[str, ast.AST] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    imports: set[str] = field(default_factory=set)


def parse_module(source: str, name: str, is_package: bool = False) -> ModuleInfo:
    tree = ast.parse(source)
    info = ModuleInfo(name)
    for node in ast.walk(tree):  # every import, also those inside functions (lazy imports)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("batchq"):
                    info.imports.add(alias.name)
                    info.bindings[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "batchq"
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.module, node.level)
            if not base.startswith("batchq"):
                continue
            info.imports.add(base)
            for alias in node.names:
                info.bindings[alias.asname or alias.name] = f"{base}:{alias.name}"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            info.classes[node.name] = [m.name for m in methods]
            info.functions[node.name] = node  # class body: decorators, class attributes
            for m in methods:
                info.functions[f"{node.name}.{m.name}"] = m
    return info


class Package:
    """The call graph of a package tree (``include/batchq`` unless told otherwise)."""

    def __init__(self, modules: dict[str, ModuleInfo]):
        self.modules = modules

    @classmethod
    def from_tree(cls, package_root: Path = PACKAGE) -> Package:
        modules = {}
        for path in sorted(package_root.rglob("*.py")):
            name = module_name(path, package_root)
            modules[name] = parse_module(path.read_text(), name, path.name == "__init__.py")
        return cls(modules)

    @classmethod
    def from_sources(cls, sources: dict[str, str]) -> Package:
        """For tests: ``{"batchq.x": source}`` (a name ending in ``__init__`` is a package)."""
        return cls({name: parse_module(src, name) for name, src in sources.items()})

    # -- resolution --------------------------------------------------------------------------------

    def _symbol_nodes(self, ref: str) -> list[str]:
        """Graph nodes a binding (``batchq.x:f``) stands for; follows re-exports of a package."""
        module, _, name = ref.partition(":")
        seen = set()
        while module in self.modules and (module, name) not in seen:
            seen.add((module, name))
            info = self.modules[module]
            if name in info.classes:
                return [f"{module}:{name}"] + [f"{module}:{name}.{m}" for m in info.classes[name]]
            if name in info.functions:
                return [f"{module}:{name}"]
            target = info.bindings.get(name)
            if not target:
                break
            if ":" not in target:  # ``from batchq import sqs`` where sqs is a module
                return []
            module, _, name = target.partition(":")
        return []

    def _module_of(self, ref: str) -> str | None:
        """The batchq module a binding names, if it names one (``from batchq import sqs`` → batchq.sqs)."""
        if ":" not in ref:
            return ref if ref in self.modules else None
        module, _, name = ref.partition(":")
        full = f"{module}.{name}"
        return full if full in self.modules else None

    def import_closure(self, entries: Iterable[str]) -> set[str]:
        todo, seen = list(entries), set()
        while todo:
            m = todo.pop()
            if m in seen or m not in self.modules:
                continue
            seen.add(m)
            for imp in self.modules[m].imports:
                todo.append(imp)
                for ref in self.modules[m].bindings.values():
                    sub = self._module_of(ref)
                    if sub:
                        todo.append(sub)
        return seen

    # -- edges -------------------------------------------------------------------------------------

    def edges(self, node: str, scope: set[str]) -> tuple[set[str], set[str]]:
        """``(callees, sqs operations)`` of one graph node; ``scope`` = modules for by-name dispatch."""
        module, _, qual = node.partition(":")
        info = self.modules[module]
        body = info.functions[qual]
        cls = qual.split(".")[0] if "." in qual or qual in info.classes else None
        callees: set[str] = set()
        ops: set[str] = set()
        nested_defs = body.body if isinstance(body, ast.ClassDef) else [body]
        for top in nested_defs:
            if isinstance(body, ast.ClassDef) and isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef):
                continue  # methods are their own nodes
            for n in ast.walk(top):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                    if n.id in info.bindings and ":" in info.bindings[n.id]:
                        callees.update(self._symbol_nodes(info.bindings[n.id]))
                    elif n.id in info.functions and n.id != qual:
                        callees.update(self._symbol_nodes(f"{module}:{n.id}"))
                elif isinstance(n, ast.Attribute):
                    recv = n.value
                    if isinstance(recv, ast.Name) and recv.id in info.bindings:
                        sub = self._module_of(info.bindings[recv.id])
                        if sub:  # ``sqs.send_bodies`` through a module alias
                            callees.update(self._symbol_nodes(f"{sub}:{n.attr}"))
                            continue
                    if isinstance(recv, ast.Name) and recv.id in ("self", "cls") and cls and n.attr in info.classes.get(cls, []):
                        callees.add(f"{module}:{cls}.{n.attr}")
                        continue
                    if n.attr in sqs_operations():
                        # Called, or passed on as a bound method (``_run_batch(client.send_message_batch, ...)``).
                        ops.add(sqs_operations()[n.attr])
                        continue
                    # A method of an object of unknown type: every method of that name in scope.
                    for m in scope:
                        for c, methods in self.modules[m].classes.items():
                            if n.attr in methods:
                                callees.add(f"{m}:{c}.{n.attr}")
        return callees, ops

    def _check_node(self, node: str) -> None:
        module, _, qual = node.partition(":")
        if module not in self.modules or (qual and qual not in self.modules[module].functions):
            raise KeyError(f"no such module or function: {node}")

    def operations(self, entries: Iterable[str], excluded: Iterable[str] = ()) -> dict[str, list[str]]:
        """SQS operation → one call path to it (entry node first), over everything reachable from
        ``entries`` (modules, or ``module:qualname`` functions), not walking into the nodes ``excluded``.

        :raises KeyError: an entry or an excluded node does not exist (a stale name fails loudly).
        """
        entries, excluded = list(entries), set(excluded)
        for node in [*entries, *excluded]:
            self._check_node(node)
        entry_modules = sorted({e.partition(":")[0] for e in entries})
        scope = self.import_closure(entry_modules)
        starts = [e for e in entries if ":" in e] + [f"{m}:{q}" for m in entries if ":" not in m for q in self.modules[m].functions]
        parent: dict[str, str | None] = {n: None for n in starts if n not in excluded}
        queue = deque(parent)
        found: dict[str, list[str]] = {}
        while queue:  # breadth first: the path reported is a shortest one
            node = queue.popleft()
            callees, ops = self.edges(node, scope)
            for op in ops:
                found.setdefault(op, self._path(parent, node))
            for callee in sorted(callees):
                if callee not in parent and callee not in excluded:
                    parent[callee] = node
                    queue.append(callee)
        return found

    @staticmethod
    def _path(parent: dict[str, str | None], node: str) -> list[str]:
        path = [node]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])  # type: ignore[arg-type]
        return path[::-1]


@functools.cache
def package() -> Package:
    return Package.from_tree()
