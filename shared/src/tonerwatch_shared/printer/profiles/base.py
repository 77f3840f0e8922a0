"""What one vendor profile holds: identification, private scalars, counters and private decoders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tonerwatch_shared.printer.model import SupplyKind, SupplyState

if TYPE_CHECKING:  # snmp's package imports the printer parser's vendor tables
    from tonerwatch_shared.snmp.types import VarBinds

CounterField = Literal["lifetime_pages", "mono_pages", "colour_pages", "duplex_pages"]


@dataclass(frozen=True)
class Counter:
    """A page counter of a vendor's private MIB: the sum of these OIDs, all of which must answer."""

    field: CounterField
    oids: tuple[str, ...]


@dataclass(frozen=True)
class LevelQuirk:
    """A prtMarkerSuppliesLevel value beyond RFC 3805's -1/-2/-3 a vendor sends, and its meaning."""

    level: int
    state: SupplyState
    flag: str


@dataclass(frozen=True)
class PrivateSupply:
    """A supply read from a vendor's private MIB, before level and state are worked out."""

    key: str  # index of the Supply ("brother.6f")
    description: str
    kind: SupplyKind
    colour: str | None
    level: int | None  # None: only pages left are known
    maximum: int | None
    pages_left: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrivateMib:
    """A vendor's private supply/counter/status objects and the decoder that reads them."""

    source: str  # Supply.source of what it decodes ("brother_private")
    scalars: tuple[str, ...]  # every OID the decoder reads, asked on the first poll
    volatile: tuple[str, ...]  # those that change: asked again on every steady poll
    supplies: Callable[[VarBinds, str | None], list[PrivateSupply]] | None = None  # (values, model)
    counters: Callable[[VarBinds], dict[CounterField, int]] | None = None
    status_text: Callable[[VarBinds], str | None] | None = None
    marks_printer: tuple[str, ...] = ()  # objects only a printer has: present means a printer


@dataclass(frozen=True)
class VendorProfile:
    """Everything known about one maker's agents; every OID list is derived from these."""

    name: str
    enterprise: int  # IANA Private Enterprise Number of sysObjectID
    # (prefix as devices write it at the start of sysDescr/hrDeviceDescr, lower-case; brand shown).
    # OEM badges keep their maker's sysObjectID and show their own name.
    brands: tuple[tuple[str, str], ...]
    # sysObjectID subtrees only printers use: such a device is a printer without any Printer MIB.
    printer_object_ids: tuple[str, ...] = ()
    # IEEE 1284 device ID strings ("MFG:..;MDL:..;") at private OIDs.
    device_ids: tuple[str, ...] = ()
    # Private objects other makers implement too (HP's device ID): asked of every printer.
    shared: tuple[str, ...] = ()
    # Private objects discovery's identifying GET adds for this enterprise; None: the shared ones.
    identify: tuple[str, ...] | None = None
    # Private scalars each tried after the standard object fails.
    model: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()
    firmware: tuple[str, ...] = ()
    counters: tuple[Counter, ...] = ()  # always re-read on a steady poll
    level_quirks: tuple[LevelQuirk, ...] = ()
    private: PrivateMib | None = None

    @property
    def volatile_scalars(self) -> tuple[str, ...]:
        """Private scalars a steady poll reads again: every counter and the decoder's volatile ones."""
        return tuple(
            dict.fromkeys(
                (
                    *(oid for counter in self.counters for oid in counter.oids),
                    *(self.private.volatile if self.private else ()),
                )
            )
        )

    @property
    def scalars(self) -> tuple[str, ...]:
        """Every scalar of the profile, identity first."""
        ordered = (
            *self.device_ids,
            *self.shared,
            *self.model,
            *self.serial,
            *self.firmware,
            *(self.private.scalars if self.private else ()),
            *self.volatile_scalars,
        )
        return tuple(dict.fromkeys(ordered))
