"""Faster equivalents of the two generic validators every fhir.resources model inherits.

Each R4B model class inherits from `fhir_core.fhirabstractmodel.FHIRAbstractModel` a "before"
validator (`reject_null_complex_elements`) and an "after" validator
(`validate_after_model_construction`), and pydantic runs them for every element of a resource,
the after one twice (the models' own `__init__` validates again). Both recompute, per element,
facts that depend on the class alone: the first walks all of the class's fields through
`is_list_type` (whose 1,024-entry cache thrashes over the models' thousands of fields) and
`is_primitive_type` (uncached); the second rebuilds the required-field and choice-group lists.
On Synthea data that is about half of all model validation time.

`install()` also remembers nested elements that validated (`_remember_valid`): pydantic hands each
nested element of a resource (every CodeableConcept, Reference, Quantity, ...) back to Python, to
fhir-core's `FhirBase.fhir_model_validator`, which validates it as a model of its own, and real data
repeats most of them (the same codes, the same practitioner, the same encounter reference). A
nested element's verdict depends on its model class and its content alone, so an element equal to
one that validated gets that one's model back. Three in four nested elements of Synthea data are
such repeats; validation costs about a third less.

`install()` replaces the two, before the first R4B model class is built (pydantic looks model
validators up by name when it builds a class), with versions that compute those facts once per
class. They decide exactly as the originals do; when an element fails, they call the library's
own code to raise, so the errors are the library's, word for word. They are installed only if
the originals are the code they were written against (a digest of their source); otherwise the
originals stay and validation is merely slower. `tests/fhir/test_model_speedups.py` compares the
verdicts with and without them on the official examples, Synthea and mutated copies of both.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.fhir.jsonio import decimal_text

log = logging.getLogger("fhir_server")

# sha256 of the source of each original these replacements reproduce or call (fhir-core 1.1.12).
KNOWN_SOURCES = {
    "reject_null_complex_elements": (
        "d0d0200524d20d337433d62ea06bc4f14c0b76c50555dcfaa0282bf5cdf85350"
    ),
    "validate_after_model_construction": (
        "016ab95ff060a75a1c85d30dc016014fbbf62f83791ca20204f8d6daec265edb"
    ),
    "_validate_required_primitive_elements": (
        "3120cbe77ecbe66accc2ddf393eefd80e2177d03959692fd8977dc2cfcb8cbd5"
    ),
    "_validate_one_of_many": "b2f9b73fb7cfd1c0dc431ea54223ec60a8f5d7f5a63f41fe57efb6c116308b72",
}
# ... and of `fhir_core.types.FhirBase.fhir_model_validator`, which `_remember_valid` wraps.
NESTED_VALIDATOR_SOURCE = "6a4912d3f8b15f0496e2b330e47bd44c7176927bbb83ad87a2d6830e29aac5d8"
# Nested elements remembered at most (then forgotten all at once): a few thousand hold the codes
# and references a stream of writes repeats. Larger elements (an attachment's data, a contained
# resource) are neither likely repeats nor cheap to keep, so they are not remembered: at most
# ~8192 x (2 KiB of key + its model) of memory.
MEMO_SIZE = 8192
MEMO_MAX_KEY_BYTES = 2048

NullChecked = tuple[tuple[str | None, str], ...]  # (alias, field name) of complex-type lists
ChoiceGroups = tuple[tuple[tuple[str, ...], bool], ...]  # (field names, one required)
AfterPlan = tuple[tuple[str, ...], ChoiceGroups]  # (required primitive fields, choice groups)

_installed: bool | None = None
_null_checked: dict[type, NullChecked] = {}
_after_plans: dict[type, AfterPlan] = {}
_valid_elements: dict[tuple[type, bytes], Any] = {}


def install() -> bool:
    """Install the replacements (once, before any R4B model module is imported); whether they
    are in place."""
    global _installed
    if _installed is not None:
        return _installed
    from fhir_core.fhirabstractmodel import FHIRAbstractModel
    from fhir_core.types import FhirBase

    model: Any = FHIRAbstractModel
    drifted = [name for name, digest in KNOWN_SOURCES.items() if _digest(model, name) != digest]
    if _digest(FhirBase, "fhir_model_validator") != NESTED_VALIDATOR_SOURCE:
        drifted.append("fhir_model_validator")
    if drifted:
        log.warning(
            "fhir-core differs from the version the model-validation speedups were written "
            "for (%s changed); validating with its own code, which is slower",
            ", ".join(drifted),
        )
        _installed = False
        return False
    original_required = model._validate_required_primitive_elements
    original_choices = model._validate_one_of_many

    def reject_null_complex_elements(cls: type, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = _null_checked.get(cls)
        if fields is None:
            fields = _null_checked[cls] = _complex_list_fields(cls)
        for alias, name in fields:
            value = data.get(alias if alias and alias in data else name)
            if isinstance(value, list) and any(item is None for item in value):
                return original_reject(cls, data)  # raises the library's own errors
        return data

    def validate_after_model_construction(self: Any) -> Any:
        plan = _after_plans.get(type(self))
        if plan is None:
            plan = _after_plans[type(self)] = _after_plan(self)
        required, choices = plan
        for key in required:
            if getattr(self, key, None) is None:
                original_required(self)  # raises unless an extension stands in for the value
                break
        for fields, one_required in choices:
            present = sum(getattr(self, f, None) is not None for f in fields)
            if present > 1 or (one_required and not present):
                original_choices(self)  # raises
        return self

    original_reject = model.reject_null_complex_elements.__func__
    model.reject_null_complex_elements = classmethod(reject_null_complex_elements)
    model.validate_after_model_construction = validate_after_model_construction
    _remember_valid(FhirBase)
    _installed = True
    return True


def _remember_valid(base: Any) -> None:
    """Wrap fhir-core's validator of nested elements so that an element equal to one that
    validated returns that one's model. Invalid elements are not remembered: they raise, with
    the library's own errors, every time."""
    original = base.fhir_model_validator.__func__

    def fhir_model_validator(cls: type, value: Any, model_klass: type) -> Any:
        if type(value) is not dict:
            return original(cls, value, model_klass)
        try:
            text = orjson.dumps(value, default=_key_default)
        except TypeError:  # not JSON (an int beyond 64 bits, ...): validate without the memo
            return original(cls, value, model_klass)
        if len(text) > MEMO_MAX_KEY_BYTES:
            return original(cls, value, model_klass)
        key = (model_klass, text)
        found = _valid_elements.get(key)
        if found is None:
            found = original(cls, value, model_klass)
            if len(_valid_elements) >= MEMO_SIZE:
                _valid_elements.clear()
            _valid_elements[key] = found
        return found

    base.fhir_model_validator = classmethod(fhir_model_validator)


def _key_default(obj: Any) -> Any:
    """A decimal's bytes in an element's memo key: `D` and its text, which is not JSON, so no
    string, number or object of parsed JSON has the same key (and `1.50` is not `1.5`)."""
    if isinstance(obj, Decimal):
        return orjson.Fragment(b"D" + decimal_text(obj).encode())
    raise TypeError(f"not JSON: {type(obj).__name__}")


def _digest(model: Any, name: str) -> str | None:
    attr = model.__dict__.get(name)
    func = getattr(attr, "__func__", attr)
    try:
        return hashlib.sha256(inspect.getsource(func).encode()).hexdigest()
    except (OSError, TypeError):
        return None


def _complex_list_fields(cls: Any) -> NullChecked:
    """The fields the original checks: lists of complex types, not the `__ext` siblings of
    primitive lists (whose nulls line values up with their extensions)."""
    from fhir_core.utils import is_list_type, is_primitive_type

    return tuple(
        (field.alias, name)
        for name, field in cls.model_fields.items()
        if is_list_type(field) and not is_primitive_type(field) and not name.endswith("__ext")
    )


def _after_plan(instance: Any) -> AfterPlan:
    # Both lists are constants of the generated classes, returned by instance methods.
    cls = type(instance)
    aliases = cls.get_alias_mapping()
    required = tuple(aliases[name] for name, _ in instance.get_required_fields())
    choices = tuple(
        (
            tuple(fields),
            cls.model_fields[fields[0]].json_schema_extra["one_of_many_required"] is True,
        )
        for fields in instance.get_one_of_many_fields().values()
    )
    return required, choices
