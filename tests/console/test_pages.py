"""The console and the kiosk in headless Chromium against the real Face API and ML service.

The fake camera shows `camera_person`; files come from the labelled people. Tests run in file order and build on
each other's enrolments (one set of services and one browser per module keep the cost down).
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

TENANT = "acme"


def sign_in(page, key: str) -> None:
    page.goto("/console")
    form = page.get_by_test_id("signin-form")
    form.get_by_label("API key").fill(key)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def go(page, section: str) -> None:
    page.locator("#nav").get_by_role("button", name=section, exact=True).click()


def choose_tenant(page, tenant: str) -> None:
    page.get_by_label("Tenant", exact=True).fill(tenant)
    page.get_by_label("Tenant", exact=True).dispatch_event("change")


def no_csp_violations(page) -> None:
    assert not [p for p in page.problems if "Content Security Policy" in p], page.problems


def test_pages_carry_a_content_security_policy(console):
    for path in ("/console", "/kiosk", "/console/assets/console.js"):
        answer = httpx.get(console.url + path)
        assert answer.status_code == 200
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert httpx.get(console.url + "/console/assets/..%2Froutes.py").status_code == 404


def test_sign_in_keeps_the_key_in_session_storage_only(page, console):
    page.goto("/console")
    page.get_by_test_id("signin-form").get_by_label("API key").fill("fa_0000000000000000_" + "x" * 43)
    page.get_by_test_id("signin-form").get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("invalid_api_key")

    sign_in(page, console.admin_key)
    assert page.evaluate("sessionStorage.getItem('faceauth.apiKey')") == console.admin_key
    assert page.evaluate("localStorage.length") == 0
    assert not page.context.cookies()
    assert console.admin_key not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('faceauth.apiKey')") is None
    no_csp_violations(page)


def test_enrol_from_files_in_one_batch(page, console, people, faces_dir):
    sign_in(page, console.admin_key)
    choose_tenant(page, TENANT)
    go(page, "Enrol")
    page.locator("#enrol-files").set_input_files([faces_dir / people[0].enrol_photo, faces_dir / people[1].enrol_photo])
    page.get_by_label(f"Face id for {people[0].enrol_photo}").fill("person-0")
    page.get_by_label(f"Face id for {people[1].enrol_photo}").fill("person-1")
    page.get_by_role("button", name="Enrol these photos").click()
    results = page.get_by_test_id("enrol-result")
    expect(results).to_have_count(2)
    for face_id in ("person-0", "person-1"):
        result = page.locator(f"[data-testid=enrol-result][data-face-id={face_id}]")
        expect(result).to_have_attribute("data-outcome", "accepted")
        expect(result.locator("[data-check^=Anti-spoof]")).to_contain_text("passed")
        expect(result.locator("canvas")).to_be_visible()
    no_csp_violations(page)


def test_printed_photo_is_refused_in_plain_words(page, console, shared_dir):
    sign_in(page, console.admin_key)
    choose_tenant(page, TENANT)
    go(page, "Enrol")
    page.locator("#enrol-files").set_input_files([shared_dir / "faces" / "antispoof" / "spoof_print_1.jpg"])
    page.get_by_role("button", name="Enrol these photos").click()
    result = page.get_by_test_id("enrol-result")
    expect(result).to_have_attribute("data-outcome", "refused")
    expect(result).to_have_attribute("data-code", "quality_check_failed")
    expect(result).to_contain_text("spoof suspected")
    expect(result.locator("[data-check^=Anti-spoof]")).to_contain_text("failed")


def test_enrol_from_the_camera(page, console):
    sign_in(page, console.admin_key)
    choose_tenant(page, TENANT)
    go(page, "Enrol")
    page.locator("#enrol-camera").click()
    page.get_by_label("Face id", exact=True).fill("camera-person")
    page.get_by_role("button", name="Capture and enrol").click()
    result = page.locator("[data-testid=enrol-result][data-face-id=camera-person]")
    expect(result).to_have_attribute("data-outcome", "accepted")


def test_the_faces_are_in_the_gallery_with_thumbnails(page, console):
    sign_in(page, console.admin_key)
    choose_tenant(page, TENANT)
    go(page, "Gallery")
    card = page.locator("[data-testid=subject][data-subject-id=person-0]")
    expect(card).to_be_visible()
    thumbnail = card.locator("img")
    expect(thumbnail).to_have_attribute("src", re.compile(r"/v1/images/"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())

    page.get_by_label("Subject id", exact=True).fill("camera-person")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_test_id("subject")).to_have_count(1)
    expect(page.locator("[data-testid=subject][data-subject-id=camera-person]")).to_be_visible()


def test_search_and_verify_find_the_person_and_refuse_an_impostor(page, console, people, faces_dir):
    sign_in(page, console.admin_key)
    choose_tenant(page, TENANT)
    go(page, "Test")
    impostor = faces_dir / people[3].enrol_photo  # never enrolled

    page.get_by_label("Probe photo").set_input_files(faces_dir / people[0].probe_photo)
    matches = page.get_by_test_id("match-list").first
    expect(matches.locator("li").first).to_have_attribute("data-match-id", "person-0")

    page.get_by_label("Probe photo").set_input_files(impostor)
    expect(page.get_by_test_id("test-result")).to_have_count(2)
    impostor_matches = page.get_by_test_id("match-list").first
    expect(impostor_matches.locator("li[data-match-id=person-0]")).to_have_count(0)

    page.get_by_label("Verify (1:1) against a face id").check()
    page.get_by_label("Reference face id (verify)").fill("person-0")
    page.get_by_label("Probe photo").set_input_files(faces_dir / people[0].probe_photo)
    expect(page.get_by_test_id("test-result")).to_have_count(3)
    expect(page.get_by_test_id("test-verdict").first).to_have_attribute("data-matched", "true")
    page.get_by_label("Probe photo").set_input_files(impostor)
    expect(page.get_by_test_id("test-result")).to_have_count(4)
    expect(page.get_by_test_id("test-verdict").first).to_have_attribute("data-matched", "false")


def test_create_and_revoke_a_key(page, console):
    sign_in(page, console.admin_key)
    go(page, "Admin")
    expect(page.get_by_test_id("tenant-counts")).to_contain_text(TENANT)
    page.get_by_label("Tenant (empty: admin key)").fill(TENANT)
    page.get_by_label("Name").fill("front desk")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    key_id = secret.split("_")[1]
    assert httpx.get(f"{console.url}/v1/caller", headers={"X-Api-Key": secret}).json()["tenant"] == TENANT

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"revoke key {key_id}").click()
    expect(page.locator(f"tr[data-key-id='{key_id}'] [data-testid=key-state]")).to_have_text("revoked")
    # The API caches a key it has read for up to 10 s: wait for the revocation to take effect.
    for _ in range(30):
        answer = httpx.get(f"{console.url}/v1/caller", headers={"X-Api-Key": secret})
        if answer.status_code == 401:
            break
        page.wait_for_timeout(500)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def start_kiosk(page, key: str) -> None:
    page.goto("/kiosk")
    page.get_by_label("Tenant API key").fill(key)
    page.get_by_role("button", name="Start the kiosk").click()
    expect(page.get_by_test_id("kiosk-guidance")).to_contain_text("Ready", timeout=30_000)


def test_kiosk_checks_in_an_enrolled_person_once(page, console):
    start_kiosk(page, console.key(TENANT, "kiosk"))
    searches = []
    page.on("request", lambda r: searches.append(r) if r.url.endswith("/v1/faces/search") else None)
    page.get_by_test_id("kiosk-checkin").click()
    page.get_by_test_id("kiosk-checkin").click()  # a second tap: not a second check-in
    result = page.get_by_test_id("kiosk-result")
    result.locator(
        "xpath=self::*[@data-outcome='success' or @data-outcome='refused' or @data-outcome='error']"
    ).wait_for()
    assert result.get_attribute("data-outcome") == "success", result.inner_text()
    expect(result).to_contain_text("camera-person")
    expect(result).to_contain_text("checked in at")
    assert len(searches) == 1
    no_csp_violations(page)


def test_kiosk_refuses_a_stranger(page, console, people, faces_dir):
    console.enrol("other", "someone-else", faces_dir / people[0].enrol_photo)  # the camera person is not here
    start_kiosk(page, console.key("other", "kiosk"))
    page.get_by_test_id("kiosk-checkin").click()
    result = page.get_by_test_id("kiosk-result")
    expect(result).to_have_attribute("data-outcome", "refused")
    expect(result).to_contain_text("Not recognised")


def test_kiosk_verifies_a_badge_and_says_when_the_server_is_down(page, console):
    start_kiosk(page, console.key(TENANT, "kiosk"))
    page.get_by_label("Badge id (optional)").fill("person-1")  # the camera shows someone else
    page.get_by_test_id("kiosk-checkin").click()
    expect(page.get_by_test_id("kiosk-result")).to_have_attribute("data-outcome", "refused")

    # Fault injection: the browser's requests to the API fail as if the server were down.
    page.route("**/v1/faces/**", lambda route: route.abort("connectionrefused"))
    expect(page.get_by_test_id("kiosk-banner")).to_contain_text("cannot be reached", timeout=15_000)
    page.wait_for_timeout(5_500)  # past the cool-down of the last check-in
    page.get_by_test_id("kiosk-checkin").click()
    expect(page.get_by_test_id("kiosk-result")).to_have_attribute("data-outcome", "error")
    page.unroute("**/v1/faces/**")
    expect(page.get_by_test_id("kiosk-banner")).to_be_hidden(timeout=15_000)
