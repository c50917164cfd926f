"""Names as a coordinator types them, in Debian's Chromium against a real ``timebank serve``
(the set-up of tests/test_console_browser.py): "sian llyr" typed without accents finds Siân
Llŷr in the typeahead and the members search; two Tom Smiths are told apart by their
membership numbers, in the typeahead and in the choices of a form sent without picking.
No sleeps: every step waits for a state of the page."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests import test_console_browser as shared
from tests.test_console_browser import sign_in

pytestmark = pytest.mark.slow

with contextlib.suppress(ImportError):  # a dev dependency; the shared site fixture says so
    from playwright.sync_api import Page, expect

# the browser suite's server, browser and page, with this module's people added
site_base, browser, context, page = shared.site, shared.browser, shared.context, shared.page


@pytest.fixture(scope="module")
def site(site_base: dict[str, Any]) -> dict[str, Any]:
    ok = site_base["ok"]
    people = {
        "sian": ok(
            "post",
            "/v1/timebanks/riverside/members",
            {"display_name": "Siân Llŷr", "external_ref": "M-0007", "locality": "Bala"},
        ),
        "tom1": ok(
            "post",
            "/v1/timebanks/riverside/members",
            {"display_name": "Tom Smith", "external_ref": "M-0101", "locality": "Irvine"},
        ),
        "tom2": ok(
            "post",
            "/v1/timebanks/riverside/members",
            {"display_name": "Tom Smith", "external_ref": "M-0102", "locality": "Kilwinning"},
        ),
    }
    return {**site_base, "named": people}


def test_typing_sian_llyr_without_accents_finds_sian_llyr(page: Page, site: dict[str, Any]) -> None:
    sign_in(page, "broker@riverside.example")
    page.goto("/console/riverside/exchanges/new")
    box = page.get_by_role("combobox", name="Who gave the time")
    box.fill("sian llyr")
    option = page.get_by_role("option", name="Siân Llŷr")
    expect(option).to_have_count(1)
    expect(option).to_contain_text("M-0007 · Bala")
    option.click()
    expect(box).to_have_value("Siân Llŷr")
    pick = site["named"]["sian"]["id"]
    expect(page.locator('input[name="provider_id"]')).to_have_value(pick)

    page.goto("/console/riverside/members")
    page.get_by_label("Search by name or membership number").fill("LLYR")
    results = page.locator("#members-results")
    expect(results).to_contain_text("Siân Llŷr")
    expect(results).to_contain_text("M-0007")
    expect(results).not_to_contain_text("May Reid")

    # registering her again without accents (and a Cyrillic "а") is allowed, with a warning
    page.goto("/console/riverside/members/new")
    page.get_by_label("Full name").fill("Siаn Llyr")
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("is registered.")
    warning = page.locator("[data-lookalikes]")
    expect(warning).to_contain_text("Check this is not someone already registered")
    expect(warning.get_by_role("link", name="Siân Llŷr")).to_be_visible()
    expect(warning).to_contain_text("M-0007")
    shared.check_page(page, "names-lookalike-warning")


def test_two_tom_smiths_are_told_apart_by_their_membership_numbers(
    page: Page, site: dict[str, Any]
) -> None:
    sign_in(page, "broker@riverside.example")
    page.goto("/console/riverside/exchanges/new")
    box = page.get_by_role("combobox", name="Who gave the time")
    box.fill("tom smith")
    options = page.get_by_role("option", name="Tom Smith")
    expect(options).to_have_count(2)
    expect(options.nth(0)).to_contain_text("M-0101 · Irvine")
    expect(options.nth(1)).to_contain_text("M-0102 · Kilwinning")
    page.get_by_role("option", name="M-0102").click()
    expect(box).to_have_value("Tom Smith")
    expect(page.locator('input[name="provider_id"]')).to_have_value(site["named"]["tom2"]["id"])

    # typed without picking: the form comes back with the two as choices, told apart
    page.goto("/console/riverside/exchanges/new")
    box = page.get_by_role("combobox", name="Who gave the time")
    box.fill("Tom Smith")
    box.press("Escape")
    recipient = page.get_by_role("combobox", name="Who received it")
    recipient.fill("Priya Shah")
    recipient.press("Escape")
    page.get_by_label("Hours").fill("1")
    page.get_by_label("Category").select_option(index=1)
    page.get_by_role("button", name="Record the exchange").click()
    expect(page.locator(".error-summary")).to_contain_text("More than one person is called")
    shared.check_page(page, "names-choices")
    page.get_by_label("M-0101", exact=False).check()
    page.get_by_role("button", name="Record the exchange").click()
    expect(page.get_by_role("status")).to_have_text("The exchange is recorded.")
    tom1 = site["named"]["tom1"]
    balance = site["ok"]("get", f"/v1/timebanks/riverside/members/{tom1['id']}/balance")
    assert balance["balance_minutes"] == 60
    tom2 = site["named"]["tom2"]
    other = site["ok"]("get", f"/v1/timebanks/riverside/members/{tom2['id']}/balance")
    assert other["balance_minutes"] == 0
