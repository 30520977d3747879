"""Small voluptuous validators whose messages are written for people.

voluptuous's stock messages (``value must be at most 255``, ``extra keys not allowed``)
say what is wrong but not how to fix it; these validators say both, and normalize as they
go (VIP strings become mappings, durations become floats, addresses become objects).
Each validator raises ``voluptuous.Invalid`` (or ``MultipleInvalid`` with relative paths);
voluptuous prefixes the path as the error travels up.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import voluptuous as vol

Validator = Callable[[Any], Any]

MISSING_MESSAGE = "required key missing"


def show(value: Any) -> str:
    """A value as it would be written in YAML-ish form, for messages."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'priority'?"`` when a close match exists, else ``""``."""
    import difflib  # only for a mistake: the agent does not keep it loaded for nothing

    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise vol.Invalid(f"expected a whole number, got {show(value)}")
        if minimum is not None and value < minimum:
            raise vol.Invalid(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise vol.Invalid(f"must be at most {maximum}")
        return int(value)

    return check


def seconds(minimum: float = 0.0, maximum: float | None = None) -> Validator:
    """A duration in seconds (int or float), returned as float."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = ""
            if isinstance(value, str) and value.rstrip("ms").replace(".", "", 1).isdigit():
                hint = "; write a plain number of seconds, e.g. 0.1 for 100 ms"
            raise vol.Invalid(f"expected a number of seconds, got {show(value)}{hint}")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise vol.Invalid(f"expected a finite number of seconds, got {show(value)}")
        if number < minimum:
            raise vol.Invalid(f"must be at least {minimum:g}")
        if maximum is not None and number > maximum:
            raise vol.Invalid(f"must be at most {maximum:g}")
        return number

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid(f"expected true or false, got {show(value)}")
    return value


def string(max_length: int | None = None, *, what: str = "a string") -> Validator:
    def check(value: Any) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise vol.Invalid(f"expected {what}, got the number {value!r}; quote it: '{value}'")
        if not isinstance(value, str):
            raise vol.Invalid(f"expected {what}, got {show(value)}")
        if not value.strip():
            raise vol.Invalid(f"must not be empty; expected {what}")
        if max_length is not None and len(value) > max_length:
            raise vol.Invalid(f"must be at most {max_length} characters long")
        return value

    return check


def name(value: Any) -> str:
    """A name used for references (instances, scripts, groups): no spaces."""
    text = string(what="a name")(value)
    if any(ch.isspace() for ch in text):
        raise vol.Invalid(f"{text!r} contains whitespace; use letters, digits, '_', '-', '.'")
    return text


def ifname(value: Any) -> str:
    """A Linux interface name: 1..15 bytes, no '/', ':' or whitespace."""
    text = string(what="an interface name")(value)
    if len(text.encode()) > 15:
        raise vol.Invalid(f"interface name {text!r} is longer than 15 characters")
    if text in (".", "..") or any(ch in "/:" or ch.isspace() for ch in text):
        raise vol.Invalid(f"{text!r} is not a valid interface name (no '/', ':' or spaces)")
    return text


def choice(*choices: Any) -> Validator:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in choices:
            listed = ", ".join(str(c) for c in choices)
            hint = did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
            raise vol.Invalid(f"must be one of {listed}; got {show(value)}{hint}")
        return value

    return check


def _no_scope_id(text: str) -> None:
    if "%" in text:
        raise vol.Invalid(
            f"{text!r}: zone ids ('%eth0') are not allowed; the interface is configured separately"
        )


def ip_address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):
        raise vol.Invalid(f"expected an IPv4 or IPv6 address as a string, got {show(value)}")
    _no_scope_id(value)
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise vol.Invalid(f"expected an IPv4 or IPv6 address, got {value!r}") from None


def ip_interface(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An address with optional /prefix; no prefix means /32 or /128."""
    if not isinstance(value, str):
        raise vol.Invalid(
            f"expected an IPv4 or IPv6 address with optional /prefix as a string, got {show(value)}"
        )
    _no_scope_id(value)
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError:
        raise vol.Invalid(
            f"expected an IPv4 or IPv6 address with optional /prefix, got {value!r}"
        ) from None


def ip_network_or_default(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """A destination prefix, or the word ``default`` (its family is decided by the route)."""
    if value == "default":
        return "default"
    if not isinstance(value, str):
        raise vol.Invalid(f"expected a prefix like 10.1.0.0/16 or 'default', got {show(value)}")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise vol.Invalid(
            f"expected a prefix like 10.1.0.0/16 or 'default', got {value!r}"
        ) from None
    raise vol.Invalid(f"{value!r} has host bits set; did you mean '{loose}'?")


def list_of(item: Validator, *, min_length: int = 0, what: str = "a list") -> Validator:
    """A list whose items are validated one by one, collecting every item's errors."""

    def check(value: Any) -> list[Any]:
        if value is None and min_length == 0:
            return []
        if not isinstance(value, list):
            raise vol.Invalid(f"expected {what}, got {show(value)}")
        if len(value) < min_length:
            raise vol.Invalid(f"must not be empty; expected {what} with at least {min_length} item")
        out: list[Any] = []
        errors: list[vol.Invalid] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except vol.MultipleInvalid as exc:
                exc.prepend([index])
                errors.extend(exc.errors)
            except vol.Invalid as exc:
                exc.prepend([index])
                errors.append(exc)
        if errors:
            raise vol.MultipleInvalid(errors)
        return out

    return check


def map_of(item: Callable[[str, Any], Any], *, what: str) -> Validator:
    """A mapping of name -> entry (vrrp_scripts, track_files, ...), validated per entry."""

    def check(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise vol.Invalid(f"expected a mapping of name -> {what}, got {show(value)}")
        out: dict[str, Any] = {}
        errors: list[vol.Invalid] = []
        for key, element in value.items():
            try:
                name(key)
                out[key] = item(key, element)
            except vol.MultipleInvalid as exc:
                exc.prepend([key])
                errors.extend(exc.errors)
            except vol.Invalid as exc:
                exc.prepend([key])
                errors.append(exc)
        if errors:
            raise vol.MultipleInvalid(errors)
        return out

    return check


class Struct:
    """A mapping with a fixed set of keys: unknown keys get "did you mean", all errors kept.

    ``fields`` is a voluptuous dict schema using ``vol.Required`` / ``vol.Optional``.
    Unknown keys are reported here (voluptuous would only say "extra keys not allowed"),
    and the known ones are validated by voluptuous with every error collected.
    """

    def __init__(self, fields: Mapping[Any, Any], *, what: str = "a mapping") -> None:
        self.fields = dict(fields)
        self.what = what
        self.allowed = [str(key) for key in self.fields]
        self.schema = vol.Schema(self.fields, extra=vol.PREVENT_EXTRA)

    def __call__(self, value: Any) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise vol.Invalid(f"expected {self.what}, got {show(value)}")
        errors: list[vol.Invalid] = []
        known: dict[str, Any] = {}
        suggested: set[str] = set()
        for key, element in value.items():
            if not isinstance(key, str):
                errors.append(vol.Invalid(f"keys must be strings, got {show(key)}", path=[key]))
            elif key not in self.allowed:
                import difflib

                matches = difflib.get_close_matches(key, self.allowed, n=1, cutoff=0.6)
                if matches:
                    suggested.add(matches[0])
                    hint = f"; did you mean {matches[0]!r}?"
                else:
                    hint = "; allowed keys: " + ", ".join(sorted(self.allowed))
                errors.append(vol.Invalid(f"unknown key{hint}", path=[key]))
            else:
                known[key] = element
        try:
            out = self.schema(known)
        except vol.MultipleInvalid as exc:
            # "adress: unknown key; did you mean 'address'?" already covers "address: missing"
            errors.extend(
                err
                for err in exc.errors
                if not (isinstance(err, vol.RequiredFieldInvalid) and err.path[0] in suggested)
            )
            out = {}
        if errors:
            raise vol.MultipleInvalid(errors)
        return dict(out)


def nullable(validator: Validator) -> Validator:
    """``null`` (or an absent key with default None) is allowed; anything else is validated."""

    def check(value: Any) -> Any:
        return None if value is None else validator(value)

    return check


def required(key: str) -> vol.Required:
    return vol.Required(key, msg=MISSING_MESSAGE)
