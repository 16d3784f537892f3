"""An import-linter contract for the layering's rules 2 and 3 (docs/architecture/layout.md).

2. Capabilities meet only through each other's `service`: a module of capability X may
   import, of another capability Y, only `Y.service`. (Which module of X imports it is not
   the rule's business: a view may call another capability's service, as the console's
   views will.)
3. Shared modules (everything under the root package that is in no capability) import no
   capability at all. The root package's own module (`create_app`) is the one exception:
   it wires everything together, so it may import anything.

Why not the built-in contracts: `protected` treats each allowed importer as a package, so
allowing the root module allows every module under it; `forbidden` needs the shared
modules listed (a new one would escape) and follows indirect imports, which would blame
a module for what a module it imports does. Only direct imports count here: a chain
through a shared module is caught where it crosses, at the shared module.

Every subpackage of the root must be declared a capability or shared machinery, so a new
one (the console, say) is a decision someone writes down, not a silent default.

Found by `lint-imports` through `contract_types` in pyproject.toml, as
`lint.capabilities.CapabilitiesContract`: lint-imports puts the directory it runs in on
sys.path, so it runs from the repository's root (as `make lint` does). A dev tool only:
never shipped, never imported by the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.application import contract_utils
from importlinter.domain.imports import ImportExpression, Module

#: The rules' names, as the report heads them.
THROUGH_SERVICE = "Capabilities meet only through each other's service"
SHARED = "Shared modules import no capability"
UNDECLARED = "Every subpackage is declared a capability or shared machinery"


@dataclass(frozen=True)
class Violation:
    """An import that crosses a line: `importer` -> `imported`, on `lines`."""

    rule: str
    importer: str
    imported: str
    lines: tuple[int | None, ...]


class CapabilitiesContract(Contract):
    """Options: `root` (the package), `capabilities` (its capabilities: subpackages, or a
    module such as the CLI that meets them as a capability does), `shared_packages` (its
    subpackages that are shared machinery), `service` (the module a capability is entered
    through: "service"), `ignore_imports` (the exceptions, each commented where declared)
    and `unmatched_ignore_imports_alerting` (default "error": a stale exception fails)."""

    type_name = "capabilities"

    root = fields.ModuleField()
    capabilities = fields.ListField(subfield=fields.ModuleField())
    shared_packages = fields.ListField(subfield=fields.ModuleField(), required=False)
    service = fields.StringField(required=False, default="service")
    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)
    unmatched_ignore_imports_alerting = fields.EnumField(
        contract_utils.AlertLevel, default=contract_utils.AlertLevel.ERROR
    )

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        removal = contract_utils.remove_ignored_imports_and_report(
            graph=graph,
            ignore_imports=list(cast("set[ImportExpression] | None", self.ignore_imports) or ()),
            unmatched_alerting=cast(
                "contract_utils.AlertLevel", self.unmatched_ignore_imports_alerting
            ),
        )
        layout = Layout(
            root=cast("Module", self.root).name,
            capabilities=_names(self.capabilities),
            shared=_names(self.shared_packages),
            service=cast("str", self.service),
        )
        undeclared, crossings = layout.undeclared(graph), layout.crossings(graph)
        return ContractCheck(
            kept=not (undeclared or crossings),
            warnings=list(removal.warnings),
            ignored_import_count=removal.ignored_import_count,
            metadata={"undeclared": undeclared, "crossings": crossings},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        _render(UNDECLARED, check.metadata["undeclared"])
        for rule in (THROUGH_SERVICE, SHARED):
            crossings: list[Violation] = check.metadata["crossings"]
            _render(rule, [_describe(found) for found in crossings if found.rule == rule])


@dataclass(frozen=True)
class Layout:
    """Who owns which module, and so which of its imports cross a line."""

    root: str
    capabilities: tuple[str, ...]
    shared: tuple[str, ...]
    service: str

    def owner(self, module: str) -> str | None:
        """The capability `module` belongs to; None for the root and shared modules."""
        for capability in self.capabilities:
            if module == capability or module.startswith(f"{capability}."):
                return capability
        return None

    def undeclared(self, graph: ImportGraph) -> list[str]:
        """Subpackages nobody declared, and declared names that are not there."""
        declared = set(self.capabilities) | set(self.shared)
        packages = {child for child in graph.find_children(self.root) if graph.find_children(child)}
        return [
            f"- {name}: a subpackage, declared neither" for name in sorted(packages - declared)
        ] + [f"- {name}: declared, not found" for name in sorted(declared - graph.modules)]

    def crossings(self, graph: ImportGraph) -> list[Violation]:
        """Every direct import that breaks rule 2 or rule 3."""
        found = []
        for importer in sorted(graph.modules):
            if importer == self.root or not importer.startswith(f"{self.root}."):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                rule = self.broken_by(importer, imported)
                if rule is not None:
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = tuple(detail["line_number"] for detail in details)
                    found.append(Violation(rule, importer, imported, lines))
        return found

    def broken_by(self, importer: str, imported: str) -> str | None:
        """The rule `importer` breaks by importing `imported`, if any."""
        owner = self.owner(imported)
        if owner is None or owner == self.owner(importer):
            return None  # shared machinery, or within one capability
        if self.owner(importer) is None:
            return SHARED
        if imported != f"{owner}.{self.service}":
            return THROUGH_SERVICE
        return None


def _names(modules: Any) -> tuple[str, ...]:
    return tuple(module.name for module in cast("list[Module] | None", modules) or ())


def _render(rule: str, lines: list[str]) -> None:
    if lines:
        output.print_error(f"{rule}:", bold=True)
        output.new_line()
        for line in lines:
            output.print_error(line, bold=False)
        output.new_line()


def _describe(violation: Violation) -> str:
    lines = ", ".join(str(line) for line in violation.lines if line is not None)
    where = f" (l.{lines})" if lines else ""
    return f"- {violation.importer} -> {violation.imported}{where}"
