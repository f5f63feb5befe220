"""Screenshots of the console's pages and the kiosk for docs/CONSOLE.md.

    python -m bench.screenshots --faces <shared>/faces --out docs/img

Starts the ML service and a Face API on embedded stores in a temporary folder, enrols a few photos, and drives
Debian's Chromium (headless, a fake camera showing one of the photos) through each page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.servers.browser import camera_video, chromium_args, chromium_path
from bench.servers.services import FaceauthService, api_env, ml_env, spoof_model_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True, help="the shared faces folder (deepface/, antispoof/)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    deepface = args.faces / "deepface"
    photos = ["img1.jpg", "img17.jpg", "img20.jpg"]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ml_settings = {**spoof_model_env(args.faces.parent), "ML_SERVICE_AUTO_FETCH": "false"}
        ml = FaceauthService("ml", ml_env(ml_settings), log_path=work / "ml.log", ready_timeout=120)
        with ml:
            env = api_env(ml.url, work / "data")
            made = subprocess.run(
                [sys.executable, "-m", "faceauth.cli", "keys", "create", "--admin", "--name", "screenshots"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            admin = made.stdout.strip().splitlines()[-1]
            api = FaceauthService("api", env, log_path=work / "api.log", ready_timeout=60)
            with api, httpx.Client(base_url=api.url, headers={"X-Api-Key": admin}, timeout=60) as http:
                for i, name in enumerate(photos[:2]):
                    files = {"file": (name, (deepface / name).read_bytes())}
                    http.post("/v1/faces/insert", data={"tenant": "acme", "id": f"employee-{i + 1}"}, files=files)
                kiosk_key = http.post("/v1/keys", json={"tenant": "acme", "name": "entrance kiosk"}).json()["key"]
                http.post("/v1/keys", json={"tenant": "acme", "name": "HR laptop"})
                video = camera_video(deepface / photos[0], work / "camera.y4m")
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=chromium_path(), args=chromium_args(video))
                    shoot(browser, api.url, admin, kiosk_key, deepface, args.faces / "antispoof", photos, args.out)
                    browser.close()
    print(f"screenshots written to {args.out}")


# The test photos are third-party pictures that must not be copied into the repository: every photo, thumbnail
# and camera picture is blurred past recognition in the screenshots (the injected style needs bypass_csp).
_BLUR = "img, canvas.photo, video { filter: blur(18px) saturate(0.6); }"


def _blurred(page) -> None:
    page.add_style_tag(content=_BLUR)


def shoot(browser, url, admin, kiosk_key, deepface, antispoof, photos, out: Path) -> None:
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.grant_permissions(["camera"], origin=url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto("/console")
    _blurred(page)
    page.screenshot(path=out / "console-signin.png")
    page.fill("#api-key", admin)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("[data-testid=subject] img[src]")
    page.wait_for_timeout(800)
    _blurred(page)
    page.screenshot(path=out / "console-gallery.png", full_page=True)
    page.click("#nav button[data-page=enrol]")
    page.set_input_files("#enrol-files", [deepface / photos[2], antispoof / "spoof_print_1.jpg"])
    page.click("#enrol-send")
    page.wait_for_selector("[data-testid=enrol-result] >> nth=1")
    _blurred(page)
    page.screenshot(path=out / "console-enrol.png", full_page=True)
    page.click("#nav button[data-page=test]")
    page.set_input_files("#test-file", deepface / "img10.jpg")
    page.wait_for_selector("[data-testid=test-result]")
    _blurred(page)
    page.screenshot(path=out / "console-test.png", full_page=True)
    page.click("#nav button[data-page=admin]")
    page.wait_for_selector("tr[data-key-id]")
    _blurred(page)
    page.screenshot(path=out / "console-admin.png", full_page=True)
    phone = browser.new_context(base_url=url, viewport={"width": 390, "height": 844}, bypass_csp=True)
    mobile = phone.new_page()
    mobile.goto("/console")
    mobile.fill("#api-key", admin)
    mobile.click("#signin button[type=submit]")
    mobile.wait_for_selector("[data-testid=subject] img[src]")
    mobile.wait_for_timeout(800)
    _blurred(mobile)
    mobile.screenshot(path=out / "console-phone.png")
    phone.close()
    page.goto("/kiosk")
    page.fill("#kiosk-key", kiosk_key)
    page.click("#kiosk-setup button")
    page.wait_for_selector("text=Ready")
    _blurred(page)
    page.screenshot(path=out / "kiosk-ready.png")
    page.click("[data-testid=kiosk-checkin]")
    page.wait_for_selector("[data-testid=kiosk-result][data-outcome=success]")
    _blurred(page)
    page.screenshot(path=out / "kiosk-success.png")
    context.close()


if __name__ == "__main__":
    main()
