"""Mail channel against a real SMTP server (aiosmtpd) on 127.0.0.1: content, retries, refusals."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from tonerwatch_alerter.channels.base import DeliveryFailed
from tonerwatch_alerter.channels.mail import MailConfig, MailSender, render
from tonerwatch_alerter.state import PrinterLabel
from tonerwatch_shared.events import AlertResolved, SupplyReplaced, ThresholdCrossed

from ._smtp import Inbox, free_port, make_tls, smtp_server


def route(port: int, **kw: object) -> MailConfig:
    return MailConfig.model_validate(
        {
            "name": "it",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "sender": "tonerwatch@example.org",
            "recipients": ["it@example.org", "facilities@example.org"],
            "timeout_s": 5,
            **kw,
        }
    )


def crossing() -> ThresholdCrossed:
    return ThresholdCrossed(
        source="alerter-test",
        site_id="hq",
        printer_id="ricoh-mpc3002-01",
        alert_id="ricoh-mpc3002-01:1.3:low",
        rule="low",
        severity="warning",
        supply_index="1.3",
        supply_description="Cyan Toner",
        part_number="841742",
        percent=20.0,
        threshold=20.0,
        days_to_empty=6.5,
        message="Cyan Toner low, 20% left (threshold 20%)",
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, s: float) -> None:
        self.calls.append(s)


LABEL = PrinterLabel(
    printer_id="ricoh-mpc3002-01",
    site_id="hq",
    name="Ricoh MP C3002",
    model="RICOH MP C3002",
    location="Finance, 2nd floor",
)


def parts(msg: EmailMessage) -> tuple[str, str]:
    """Return the (plain text, HTML) bodies of a multipart/alternative mail."""
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


async def test_ricoh_cyan_low_mail_reaches_every_recipient() -> None:
    inbox = Inbox()
    event = crossing()
    with smtp_server(inbox) as port:
        assert await MailSender(route(port)).send(event) == 1
    [msg] = inbox.messages
    assert inbox.envelopes == [
        ("tonerwatch@example.org", ["it@example.org", "facilities@example.org"])
    ]
    assert msg["Subject"] == event.message
    assert msg["Message-ID"] == f"<{event.event_id}@tonerwatch>"
    assert msg["X-TonerWatch-Alert-Id"] == "ricoh-mpc3002-01:1.3:low"
    text, rich = parts(msg)
    assert "Part number: 841742" in text and "Days left:   about 6" in text
    assert "Printer page: http://127.0.0.1:8080/printers/ricoh-mpc3002-01" in text
    assert '<a href="http://127.0.0.1:8080/printers/ricoh-mpc3002-01">' in rich
    assert "<td>841742</td>" in rich


def test_mail_names_printer_and_location_and_links_the_ui() -> None:
    event = crossing().model_copy(
        update={
            "percent": 8.0,
            "days_to_empty": 5.2,
            "message": "Low toner: Ricoh MP C3002 (Finance, 2nd floor) — Cyan 8%, about 5 days left",
        }
    )
    msg = render(
        event,
        "tw@example.org",
        ("it@example.org",),
        label=LABEL,
        public_url="https://tw.example.org/",
    )
    assert msg["Subject"] == (
        "Low toner: Ricoh MP C3002 (Finance, 2nd floor) — Cyan 8%, about 5 days left"
    )
    text, rich = parts(msg)
    for row in (
        "Printer:     Ricoh MP C3002",
        "Model:       RICOH MP C3002",
        "Location:    Finance, 2nd floor",
        "Supply:      Cyan Toner",
        "Level:       8%",
        "Threshold:   20%",
        "Days left:   about 5",
        "Part number: 841742",
        "Printer page: https://tw.example.org/printers/ricoh-mpc3002-01",
    ):
        assert row in text, row
    assert "<td>Finance, 2nd floor</td>" in rich
    assert "https://tw.example.org/printers/ricoh-mpc3002-01" in rich


def test_html_body_escapes_what_printers_report() -> None:
    label = LABEL.model_copy(update={"location": "<script>alert(1)</script>"})
    _, rich = parts(render(crossing(), "tw@example.org", ("it@example.org",), label=label))
    assert "<script>" not in rich and "&lt;script&gt;" in rich


def test_site_recipients_replace_the_default_list() -> None:
    cfg = route(25, site_recipients={"branch-ost": ["ost-office@example.org"]})
    assert cfg.recipients_for("branch-ost") == ("ost-office@example.org",)
    assert cfg.recipients_for("hq") == ("it@example.org", "facilities@example.org")
    only_sites = route(25, recipients=[], site_recipients={"hq": ["hq@example.org"]})
    other_site = crossing().model_copy(update={"site_id": "warehouse"})
    assert only_sites.wants(crossing()) and not only_sites.wants(other_site)


async def test_web_ui_recipients_join_the_route_list_once_each() -> None:
    """A route without addresses of its own mails whoever the web UI names for the site."""
    configured = {"hq": ("Facilities@example.org", "hq-lead@example.org")}

    async def lookup(site: str) -> tuple[str, ...]:
        return configured.get(site, ())

    bare = MailSender(route(25, recipients=[]), site_recipients=lookup)
    assert await bare.recipients("hq") == configured["hq"]
    assert await bare.wants(crossing())
    assert not await bare.wants(crossing().model_copy(update={"site_id": "warehouse"}))
    both = MailSender(route(25), site_recipients=lookup)
    # facilities@ is on both lists: mailed once (addresses compare without case).
    assert await both.recipients("hq") == (
        "it@example.org",
        "facilities@example.org",
        "hq-lead@example.org",
    )


async def test_a_printers_own_recipients_get_its_mail_only() -> None:
    """Users answering for a group of printers are mailed about those printers, not their site."""
    group = {("hq", "ricoh-mpc3002-01"): ("finance-lead@example.org", "IT@example.org")}

    async def site_lookup(site: str) -> tuple[str, ...]:
        return ()

    async def printer_lookup(site: str, printer_id: str) -> tuple[str, ...]:
        return group.get((site, printer_id), ())

    sender = MailSender(
        route(25, recipients=[]), site_recipients=site_lookup, printer_recipients=printer_lookup
    )
    other = crossing().model_copy(update={"printer_id": "canon-c3226-02"})
    assert await sender.wants(crossing()) and not await sender.wants(other)
    assert await sender.recipients("hq") == ()
    both = MailSender(route(25), printer_recipients=printer_lookup)
    # it@ is on the route already: mailed once.
    assert await both.recipients("hq", "ricoh-mpc3002-01") == (
        "it@example.org",
        "facilities@example.org",
        "finance-lead@example.org",
    )
    assert await both.recipients("hq", "canon-c3226-02") == (
        "it@example.org",
        "facilities@example.org",
    )
    inbox = Inbox()
    with smtp_server(inbox) as port:
        sender.config = sender.config.model_copy(update={"port": port})
        await sender.send(crossing())
    assert inbox.envelopes == [
        ("tonerwatch@example.org", ["finance-lead@example.org", "IT@example.org"])
    ]


async def test_site_mail_goes_to_the_site_list(tmp_path: Path) -> None:
    inbox = Inbox()
    cfg = route(25, site_recipients={"hq": ["hq-it@example.org"]})
    with smtp_server(inbox) as port:
        await MailSender(cfg.model_copy(update={"port": port})).send(crossing())
    assert inbox.envelopes == [("tonerwatch@example.org", ["hq-it@example.org"])]
    assert inbox.messages[0]["To"] == "hq-it@example.org"


async def test_starttls_with_login_delivers_once(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    inbox = Inbox()
    with smtp_server(inbox, mode="starttls", tls=tls, login=("tw", "s3cret")) as port:
        cfg = route(
            port, security="starttls", username="tw", password="s3cret", ca_file=str(tls.ca_file)
        )
        assert await MailSender(cfg).send(crossing()) == 1
    assert len(inbox.messages) == 1
    assert inbox.logins == ["tw"] and inbox.tls == [True]
    assert inbox.messages[0]["Subject"] == crossing().message


async def test_implicit_tls_with_login_delivers_once(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    inbox = Inbox()
    with smtp_server(inbox, mode="tls", tls=tls, login=("tw", "s3cret")) as port:
        cfg = route(
            port, security="tls", username="tw", password="s3cret", ca_file=str(tls.ca_file)
        )
        assert await MailSender(cfg).send(crossing()) == 1
    assert inbox.logins == ["tw"] and inbox.tls == [True]


async def test_wrong_password_is_a_clear_error_without_hammering(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    inbox = Inbox()
    sleeps = Sleeps()
    with smtp_server(inbox, mode="starttls", tls=tls, login=("tw", "s3cret")) as port:
        cfg = route(
            port, security="starttls", username="tw", password="wrong", ca_file=str(tls.ca_file)
        )
        with pytest.raises(DeliveryFailed) as err:
            await MailSender(cfg, sleep=sleeps).send(crossing())
    assert "refused the login of user 'tw'" in str(err.value) and "535" in str(err.value)
    assert "wrong" not in str(err.value)
    # Not dropped (the consumer retries later, once the password is fixed), not retried at once.
    assert not err.value.permanent and sleeps.calls == [] and inbox.messages == []


async def test_untrusted_certificate_is_a_clear_error(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with smtp_server(Inbox(), mode="starttls", tls=tls) as port:
        cfg = route(port, security="starttls")
        with pytest.raises(DeliveryFailed, match="not trusted"):
            await MailSender(cfg, sleep=Sleeps()).send(crossing())


async def test_temporary_smtp_refusal_is_retried() -> None:
    inbox = Inbox(["451 4.3.0 try again later"])
    sleeps = Sleeps()
    with smtp_server(inbox) as port:
        assert await MailSender(route(port), sleep=sleeps).send(crossing()) == 2
    assert len(inbox.messages) == 1 and len(sleeps.calls) == 1


async def test_permanent_smtp_refusal_is_not_retried() -> None:
    inbox = Inbox(["554 5.7.1 rejected by policy"])
    sleeps = Sleeps()
    with smtp_server(inbox) as port, pytest.raises(DeliveryFailed) as err:
        await MailSender(route(port), sleep=sleeps).send(crossing())
    assert err.value.permanent and "554" in str(err.value)
    assert sleeps.calls == []


async def test_unknown_recipients_are_permanent() -> None:
    inbox = Inbox(refuse_rcpt="550 5.1.1 no such user")
    with smtp_server(inbox) as port, pytest.raises(DeliveryFailed) as err:
        await MailSender(route(port), sleep=Sleeps()).send(crossing())
    assert err.value.permanent


async def test_no_server_is_transient_after_attempts() -> None:
    sleeps = Sleeps()
    with pytest.raises(DeliveryFailed) as err:
        await MailSender(route(free_port(), attempts=2), sleep=sleeps).send(crossing())
    assert not err.value.permanent and len(sleeps.calls) == 1


def test_resolved_mail_subject() -> None:
    event = AlertResolved(
        source="t",
        site_id="hq",
        printer_id="ricoh-mpc3002-01",
        alert_id="ricoh-mpc3002-01:1.3:low",
        rule="low",
        message="Toner replaced: Ricoh MP C3002 — Cyan 4% → 100%",
    )
    msg = render(event, "tw@example.org", ("it@example.org",))
    assert msg["Subject"] == "Resolved: Toner replaced: Ricoh MP C3002 — Cyan 4% → 100%"


def test_replacement_is_mailed_only_when_asked() -> None:
    swap = SupplyReplaced(
        source="t",
        site_id="hq",
        printer_id="ricoh-mpc3002-01",
        supply_index="1.3",
        description="Cyan Toner",
        part_number="841742",
        previous_percent=4,
        percent=100,
    )
    assert not route(25).wants(swap)
    assert route(25, replaced=True).wants(swap)
    msg = render(swap, "tw@example.org", ("it@example.org",), label=LABEL)
    assert msg["Subject"] == (
        "Replaced: Ricoh MP C3002 (Finance, 2nd floor) — Cyan Toner 4% → 100%"
    )
    assert "Part number: 841742" in parts(msg)[0]


def test_password_never_in_repr() -> None:
    cfg = route(25, username="tw", password="hunter2-smtp")
    assert "hunter2-smtp" not in repr(cfg)
