"""Which names a notebook cell binds, and which it reads before binding them.

A "your turn" check uses :func:`bound_names` to tell which cell last set the learner's answer
(:mod:`sa_course.your_turn`); the lesson tests use :class:`NameFlow` to find every name a
section needs from elsewhere, so that no later cell rebinds it. Both read the code only (the
Python syntax tree, after IPython's own ``%magic`` rewriting); nothing is run. Names bound
inside a function, a lambda or a comprehension stay there; a function's body counts as read
where the function is defined.
"""
from __future__ import annotations

import ast
import builtins
import re

#: Names a kernel provides without a cell binding them.
KERNEL_NAMES = frozenset(dir(builtins)) | {"get_ipython", "display", "In", "Out", "exit", "quit"}

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
#: ``name = ...``, ``a, b += ...`` at the start of a line: the fallback for code that does not parse.
_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:[-+*/%@&|^]|//|\*\*|<<|>>)?=(?!=)",
                       re.MULTILINE)


def python_source(code: str) -> str:
    """The cell as plain Python: IPython's ``%magic`` and ``!shell`` lines rewritten as calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(code)
    except Exception:
        return code


def parse(code: str) -> ast.Module | None:
    """The cell's syntax tree, or None when it is not valid Python."""
    try:
        return ast.parse(python_source(code))
    except (SyntaxError, ValueError):
        return None


def bound_names(code: str) -> set[str]:
    """Every name the cell binds at its top level (assignments, loops, imports, ``def``...).

    For a cell that does not parse (a learner's syntax error), the names that its lines
    assign to, as far as a pattern can tell."""
    tree = parse(code)
    if tree is None:
        return {name.strip() for match in _ASSIGNED.findall(code) for name in match.split(",")}
    flow = NameFlow()
    flow.run_tree(tree)
    return flow.bound


def _names(node, ctx) -> set[str]:
    """Names with context ``ctx`` (Load or Store) in ``node``, not looking into nested scopes;
    the names a nested scope reads from outside count as loaded."""
    found = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Name) and isinstance(current.ctx, ctx):
            found.add(current.id)
        if isinstance(current, _SCOPES):
            if ctx is ast.Load:
                found |= _free(current)
            continue
        stack.extend(ast.iter_child_nodes(current))
    return found


def _free(scope) -> set[str]:
    """Names a function, lambda, class or comprehension reads that it does not bind itself."""
    inner = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = scope.args
        inner = {arg.arg for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if arg}
    reads, stores = set(), set()
    for child in ast.walk(scope):
        if isinstance(child, ast.Name):
            (stores if isinstance(child.ctx, ast.Store) else reads).add(child.id)
        elif isinstance(child, ast.arg) and child is not scope:
            stores.add(child.arg)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and child is not scope:
            stores.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            stores |= {alias.asname or alias.name.split(".")[0] for alias in child.names}
    return reads - stores - inner


class NameFlow:
    """Statements in the order they run: ``inputs`` collects each name read before the flow
    itself bound it, ``bound`` every name bound. Feed it cells with :meth:`run`."""

    def __init__(self):
        self.inputs: set[str] = set()
        self.bound: set[str] = set()

    def run(self, code: str) -> None:
        tree = parse(code)
        if tree is None:
            raise SyntaxError(f"not valid Python: {code[:60]!r}")
        self.run_tree(tree)

    def run_tree(self, tree: ast.Module) -> None:
        for statement in tree.body:
            self._statement(statement)

    def _read(self, *nodes) -> None:
        for node in nodes:
            if node is not None:
                self.inputs |= (_names(node, ast.Load) - self.bound) - KERNEL_NAMES

    def _bind(self, *targets) -> None:
        for target in targets:
            if target is not None:
                self._read(target)          # x[i] = ... and x.a = ... read x
                self.bound |= _names(target, ast.Store)

    def _block(self, statements) -> None:
        for statement in statements:
            self._statement(statement)

    def _statement(self, s) -> None:
        if isinstance(s, ast.Assign):
            self._read(s.value)
            self._bind(*s.targets)
        elif isinstance(s, ast.AugAssign):
            self._read(s.value)
            if isinstance(s.target, ast.Name):
                self.inputs |= {s.target.id} - self.bound - KERNEL_NAMES
            self._bind(s.target)
        elif isinstance(s, ast.AnnAssign):
            self._read(s.value, s.annotation)
            self._bind(s.target)
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            self._read(s.iter)
            self._bind(s.target)
            self._block(s.body + s.orelse)
        elif isinstance(s, (ast.While, ast.If)):
            self._read(s.test)
            self._block(s.body + s.orelse)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                self._read(item.context_expr)
                self._bind(item.optional_vars)
            self._block(s.body)
        elif isinstance(s, ast.Try):
            self._block(s.body)
            for handler in s.handlers:
                self._read(handler.type)
                if handler.name:
                    self.bound.add(handler.name)
                self._block(handler.body)
            self._block(s.orelse + s.finalbody)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._read(s)
            self.bound.add(s.name)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            self.bound |= {alias.asname or alias.name.split(".")[0] for alias in s.names}
        else:
            self._read(s)
            self.bound |= _names(s, ast.Store)
