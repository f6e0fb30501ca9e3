"""Write the web UI's screenshots (docs/ui-*.png): start a server with a fresh data dir, fill it with sample
libraries, items and a signed OVF package, and photograph the pages in Debian's headless Chromium at 1280x800.

    .venv/bin/python tools/ui_screenshots.py [OUT_DIR]   # default: docs/

Needs /usr/bin/chromium (scripts/ensure-chromium.sh) and the test extra (Playwright); it borrows the test suite's
server process and OVF helpers (tests/conftest.py, tests/ovfkit.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.pop("REQUESTS_CA_BUNDLE", None)

import ovfkit as k  # noqa: E402
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}


def sample_data(api: Api) -> tuple[str, str]:
    """Libraries and items to show; the ids of the library and the item photographed."""
    images = api.create_library(
        "Golden images",
        description="Templates and ISO images for the lab clusters.",
        publish_info={"published": True, "authentication_method": "NONE"},
    )
    api.create_library("Team sandbox", description="Scratch space.")
    api.create_library("Appliances")
    ubuntu = api.create_item(images, "ubuntu-24.04-server", description="Cloud image, hardened", type="iso")
    api.put_files(ubuntu, {"ubuntu-24.04-server.iso": k.disk_bytes("iso", 3_400_000)})
    sid = api.create_session(ubuntu)
    api.upload(sid, "notes.txt", b"first try\n")
    api.post(f"/api/content/library/item/update-session/{sid}?action=cancel")
    api.put_files(ubuntu, {"README.txt": b"Login: ubuntu / cloud-init\n"})
    pkg = k.build_package("photon-5", disks={"photon-5-disk1.vmdk": k.disk_bytes("photon", 1_800_000)})
    photon = api.create_item(images, "photon-5", type="ovf")
    api.put_files(photon, pkg.files)
    win = api.create_item(images, "windows-2022-eval", type="iso")
    api.put_files(win, {"windows-2022-eval.iso": k.disk_bytes("win", 5_200_000)})
    return images, ubuntu


def shoot(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="contentlib-ui-shots-"))
    server = ServerProcess(work / "data", pg=None, s3=None)
    server.start()
    try:
        api = Api(server.base)
        library, item = sample_data(api)
        signed = k.build_package("nginx-appliance", signer=k.self_signed(cn="appliances.example.com"))
        for name, data in signed.files.items():
            (work / name).write_bytes(data)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page: Any = browser.new_page(viewport=VIEWPORT)
            page.goto(server.base + "/ui/")
            page.fill("#login-user", ADMIN_USER)
            page.screenshot(path=str(out / "ui-login.png"))
            page.fill("#login-password", ADMIN_PASSWORD)
            page.click("form.login button[type=submit]")
            page.wait_for_selector("h1:text-is('Libraries')")
            page.screenshot(path=str(out / "ui-libraries.png"))
            page.goto(f"{server.base}/ui/#/library/{library}")
            page.wait_for_selector("#publish-url")
            page.screenshot(path=str(out / "ui-library.png"))
            page.goto(f"{server.base}/ui/#/item/{item}")
            page.wait_for_selector("table[aria-label='Update sessions']")
            page.screenshot(path=str(out / "ui-item.png"))
            page.goto(f"{server.base}/ui/#/library/{library}")
            page.click("#new-item")
            page.set_input_files("#upload-files", [str(work / n) for n in signed.files])
            page.click("#upload-start")
            page.wait_for_selector("section.warnings")
            page.check("#ignore-SELF_SIGNED_CERTIFICATE")
            page.screenshot(path=str(out / "ui-upload-warning.png"))
            page.click("#upload-cancel")
            # An upload part-way: the browser sends at 2 MB/s (DevTools network emulation).
            (work / "rocky-9.4-minimal.iso").write_bytes(k.disk_bytes("rocky", 12_000_000))
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            throttle = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2_000_000}
            cdp.send("Network.emulateNetworkConditions", throttle)
            page.click("#new-item")
            page.set_input_files("#upload-files", str(work / "rocky-9.4-minimal.iso"))
            page.click("#upload-start")
            page.wait_for_function(
                "() => { const p = document.getElementById('upload-progress'); return p && p.value > p.max * 0.4; }",
                timeout=60_000,
            )
            page.screenshot(path=str(out / "ui-upload-progress.png"))
            page.click("dialog button[aria-label=Close]")
            k.trust(api, k.make_ca(cn="Lab Root CA").cert)
            k.trust(api, k.self_signed(cn="appliances.example.com").cert)
            page.goto(f"{server.base}/ui/#/certificates")
            page.wait_for_selector("code.fingerprint")
            page.screenshot(path=str(out / "ui-certificates.png"))
            browser.close()
    finally:
        server.destroy()
    for png in sorted(out.glob("ui-*.png")):
        print(f"{png} {png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    shoot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
