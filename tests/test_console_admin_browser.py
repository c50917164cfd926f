"""Console users in a real browser (issue 27): an admin adds a coordinator, who signs in with
the one-time password and must choose their own; the coordinator forgets it, the admin gives
a new one-time password, and the coordinator signs in with it and chooses again. axe-core on
each new page at desktop and phone width."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import test_console_browser as cb
from tests.test_console_browser import check_page, sign_in

pytestmark = pytest.mark.slow

site = cb.site
browser = cb.browser
context = cb.context
page = cb.page


def _choose_password(page: Page, one_time: str, new: str) -> None:
    expect(page).to_have_url(re.compile(r"/console/password$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose your password")
    page.get_by_label("The one-time password you were given").fill(one_time)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")


def test_a_new_coordinator_and_a_forgotten_password_each_get_a_one_time_password(
    page: Page, site: dict[str, Any]
) -> None:
    sign_in(page, "admin@riverside.example")
    page.goto("/console/riverside/admin/users")
    page.get_by_label("Email address").fill("cerys@riverside.example")
    page.get_by_label("Role", exact=True).select_option("broker")
    page.get_by_role("button", name="Add the user").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("User added")
    check_page(page, "user-added")
    one_time = page.locator("#one-time-password").inner_text()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, "cerys@riverside.example", one_time)
    check_page(page, "choose-password")
    page.goto("/console/riverside/members")  # nothing else until they choose
    expect(page).to_have_url(re.compile(r"/console/password$"))
    weak = "password1234"
    page.get_by_label("The one-time password you were given").fill(one_time)
    page.get_by_label("New password", exact=True).fill(weak)
    page.get_by_label("New password again").fill(weak)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".error-message").first).to_contain_text("too easy to guess")
    _choose_password(page, one_time, "heron lantern quarry")
    page.get_by_role("link", name="Go on to the console").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
    page.get_by_role("button", name="Sign out").click()

    # forgotten: the admin gives a new one-time password
    sign_in(page, "admin@riverside.example")
    page.goto("/console/riverside/admin/users")
    check_page(page, "console-users")
    page.get_by_role("button", name="New one-time password cerys@riverside.example").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New one-time password")
    again = page.locator("#one-time-password").inner_text()
    assert again != one_time
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, "cerys@riverside.example", "heron lantern quarry")
    expect(page.locator(".error-message").first).to_contain_text("not right")
    sign_in(page, "cerys@riverside.example", again)
    _choose_password(page, again, "walnut ferry compass")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "cerys@riverside.example", "walnut ferry compass")
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
