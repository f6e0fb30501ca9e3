"""The web UI at /ui/ (issue 13 point 2, docs/ui.md), driven in Debian's headless Chromium with Playwright.

Static serving is checked with plain HTTP in tests/test_ui_static.py; everything here goes through the browser
against a real server: the login (a wrong password shown as an
error, logout, an ended session back to the login page), the libraries list and a new library with its published
URL, an item's files with sizes and checksums, uploads through the file inputs (a file of several MB with the
progress bar moving under a throttled upload, a signed OVF package whose certificate warnings are ignored, an OVF
folder, an OVA), download links, trusted certificates, and an item's update-session history. Each result is also
checked through /api.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ovfkit as k
import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess, self_signed_pem
from cryptography import x509
from cryptography.x509.oid import NameOID

CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/ensure-chromium.sh); Playwright's own download is not reachable
TIMEOUT_MS = 30_000


# -- the browser -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) at 1280x800; confirm() dialogs are accepted; script errors
    and anything the Content-Security-Policy refused fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    pg.on("dialog", lambda d: d.accept())
    yield pg
    context.close()
    assert not errors, errors


def login(page: Any, server: ServerProcess, password: str = ADMIN_PASSWORD) -> None:
    page.goto(server.base + "/ui/")
    page.fill("#login-user", ADMIN_USER)
    page.fill("#login-password", password)
    page.click("form.login button[type=submit]")


def logged_in(page: Any, server: ServerProcess, where: str = "#/libraries") -> None:
    login(page, server)
    page.wait_for_selector("h1:text-is('Libraries')")
    page.goto(server.base + "/ui/" + where)


def session_id(page: Any) -> str:
    return str(page.evaluate("sessionStorage.getItem('contentlib.session')"))


def no_proxy_env() -> None:
    os.environ.pop("REQUESTS_CA_BUNDLE", None)


# -- login, logout, an ended session -------------------------------------------------------------------------------
def test_login_wrong_password_then_libraries_and_logout(page: Any, server: ServerProcess) -> None:
    login(page, server, password="not the password")
    alert = page.locator("form.login [role=alert]")
    alert.wait_for()
    assert "Wrong user name or password" in alert.inner_text()
    assert session_id(page) == "None"
    page.fill("#login-password", ADMIN_PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("h1:text-is('Libraries')")
    assert page.inner_text("#user-name") == ADMIN_USER
    page.focus("a.skip")  # the skip link focuses the content and keeps the route
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.url.endswith("#/libraries")
    sid = session_id(page)
    api = Api(server.base, login=False)
    api.http.headers["vmware-api-session-id"] = sid
    assert api.get("/api/session").json()["user"] == ADMIN_USER
    page.click("#logout")
    page.wait_for_selector("form.login")
    assert "logged out" in page.inner_text("form.login")
    assert api.get("/api/session").status_code == 401  # DELETE /api/session ended it on the server


def test_another_user_logs_in_with_their_role(page: Any, server: ServerProcess, api: Api) -> None:
    """The UI's users are the API's: a ReadOnly user made with `contentlib user add` sees the libraries, and what
    the role does not allow is refused by the API with its message, shown in the page."""
    name, password = f"viewer-{uuid.uuid4().hex[:6]}@example.local", "Viewer!23-test"
    proc = subprocess.run(
        [sys.executable, "-m", "contentlib", "user", "add", name, "--role", "ReadOnly", *server.store_args()],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = f"ui-ro-{uuid.uuid4().hex[:6]}"
    api.create_library(shown)
    page.goto(server.base + "/ui/")
    page.fill("#login-user", name)
    page.fill("#login-password", password)
    page.click("form.login button[type=submit]")
    page.wait_for_selector(f"a:text-is('{shown}')")
    assert page.inner_text("#user-name") == name
    page.click("#new-library")
    page.fill("#lib-name", f"ui-ro-new-{uuid.uuid4().hex[:6]}")
    page.click("dialog button[type=submit]")
    alert = page.locator("dialog [role=alert]")
    alert.wait_for()
    refused = api.post(
        "/api/content/local-library",
        json={"name": "x", "type": "LOCAL", "storage_backings": [{"type": "OTHER", "storage_uri": "file:///x"}]},
        headers={"vmware-api-session-id": session_id(page)},
    )
    assert refused.status_code == 403
    assert alert.inner_text() == " ".join(m["default_message"] for m in refused.json()["messages"])


def test_ended_session_returns_to_login(page: Any, server: ServerProcess, api: Api) -> None:
    lib = api.create_library()
    logged_in(page, server, f"#/library/{lib}")
    page.wait_for_selector("#new-item")
    other = Api(server.base, login=False)
    other.http.headers["vmware-api-session-id"] = session_id(page)
    assert other.delete("/api/session").status_code == 204
    page.click("a:text-is('Libraries')")
    page.wait_for_selector("form.login")
    assert "Your session has ended" in page.inner_text("form.login")
    assert session_id(page) == "None"


# -- libraries ---------------------------------------------------------------------------------------------------
def test_libraries_list_and_new_published_library(page: Any, server: ServerProcess, api: Api) -> None:
    existing = f"ui-list-{uuid.uuid4().hex[:6]}"
    lib = api.create_library(existing)
    api.create_item(lib)
    api.put_files(api.create_item(lib), {"a.bin": b"a" * 1000})
    logged_in(page, server)
    row = page.locator("tr", has=page.locator(f"a:text-is('{existing}')"))
    assert row.locator("td").nth(2).inner_text() == "2"
    assert row.locator("td").nth(3).inner_text() == "1000 B"  # the sum of its items' sizes
    assert row.locator("td").nth(1).inner_text() == "Local"

    name = f"ui-new-{uuid.uuid4().hex[:6]}"
    page.click("#new-library")
    page.fill("#lib-name", name)
    page.fill("#lib-description", "made in the browser")
    page.check("#lib-published")
    page.click("dialog button[type=submit]")
    page.wait_for_selector(f"h1:text-is('{name}')")
    new_id = page.url.rsplit("/", 1)[1]
    info = api.get(f"/api/content/library/{new_id}").json()
    assert info["name"] == name and info["description"] == "made in the browser"
    assert info["publish_info"]["published"] is True
    assert page.inner_text("#publish-url") == info["publish_info"]["publish_url"]
    assert info["publish_info"]["publish_url"].endswith(f"/cls/vcsp/lib/{new_id}/lib.json")

    page.goto(server.base + "/ui/#/libraries")
    row = page.locator("tr", has=page.locator(f"a:text-is('{name}')"))
    assert row.locator(".badge").inner_text() == "Published"


def test_new_library_error_is_shown(page: Any, server: ServerProcess) -> None:
    logged_in(page, server)
    page.click("#new-library")
    page.fill("#lib-name", "bad backing")
    page.fill("#lib-storage", "not a uri")
    page.click("dialog button[type=submit]")
    alert = page.locator("dialog [role=alert]")
    alert.wait_for()
    assert alert.inner_text()  # the server's message, shown as it is
    assert page.locator("dialog").is_visible()


# -- an item's page, download links, history ---------------------------------------------------------------------
def test_item_page_files_and_download_link(page: Any, server: ServerProcess, api: Api) -> None:
    lib = api.create_library()
    item = api.create_item(lib, "ui-files")
    files = {"readme.txt": b"hello from the UI test\n", "data.bin": os.urandom(300_000)}
    api.put_files(item, files)
    logged_in(page, server, f"#/item/{item}")
    page.wait_for_selector("h2:text-is('Files')")
    listed = api.item_files(item)
    for name, data in files.items():
        row = page.locator("tr", has=page.locator(f"span.name:text-is('{name}')"))
        assert row.locator("td").nth(1).locator("span").get_attribute("title") == f"{len(data)} bytes"
        info = listed[name]["checksum_info"]
        assert row.locator("code.checksum").inner_text().replace("\n", "") == f"{info['algorithm']} {info['checksum']}"
        assert info["checksum"] == hashlib.new(info["algorithm"].lower(), data).hexdigest()
        row.locator("button:text-is('Get link')").click()
        link = row.locator("a.download")
        link.wait_for()
        assert link.get_attribute("download") == name
        no_proxy_env()
        got = requests.get(str(link.get_attribute("href")), timeout=30)
        assert got.status_code == 200 and got.content == data
    size = int(api.get(f"/api/content/library/item/{item}").json()["size"])
    assert size == sum(map(len, files.values()))


def test_item_history_shows_done_and_canceled_sessions(page: Any, server: ServerProcess, api: Api) -> None:
    item = api.create_item()
    done = api.create_session(item)
    api.upload(done, "a.txt", b"a")
    api.complete(done)
    canceled = api.create_session(item)
    assert api.post(f"/api/content/library/item/update-session/{canceled}?action=cancel").status_code == 204
    logged_in(page, server, f"#/item/{item}")
    table = page.locator("table[aria-label='Update sessions']")
    table.wait_for()
    for sid, state in ((done, "DONE"), (canceled, "CANCELED")):
        row = table.locator("tr", has=page.locator(f"code:text-is('{sid}')"))
        assert row.locator(".badge").inner_text() == state
    changes = page.locator("table[aria-label='Content changes']")
    assert done in changes.inner_text()


# -- uploads -------------------------------------------------------------------------------------------------------
def open_upload(page: Any, server: ServerProcess, api: Api) -> str:
    lib = api.create_library()
    logged_in(page, server, f"#/library/{lib}")
    page.click("#new-item")
    return lib


def wait_done(page: Any) -> str:
    result = page.locator("#upload-result")
    result.wait_for(timeout=120_000)
    return str(result.get_attribute("data-state"))


def item_of(page: Any) -> str:
    """The item the finished upload went into (its "Open the item" link)."""
    href = page.locator("#upload-result ~ .actions a.button").get_attribute("href")
    return str(href).rsplit("/", 1)[1]


def only_session(api: Api, item: str) -> dict[str, Any]:
    (sid,) = api.get(f"/api/content/library/item/update-session?library_item_id={item}").json()
    return api.session(sid)


PROGRESS_SPY = """
window.__progress = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.id === "upload-progress") window.__progress.push([Number(r.target.value), Number(r.target.max)]);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""


def test_upload_file_with_progress(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    path = tmp_path / "disk-image.bin"
    path.write_bytes(data)
    page.add_init_script(PROGRESS_SPY)
    # Uploads leave the browser at 3 MB/s (DevTools network emulation), so that the bar is seen part-way.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 3 * 1024 * 1024},
    )
    added: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: added.append(r.post_data_json) if r.method == "POST" and r.url.endswith("/file") else None,
    )
    lib = open_upload(page, server, api)
    page.set_input_files("#upload-files", str(path))
    assert page.input_value("#item-name") == "disk-image"
    page.click("#upload-start")
    page.locator("#upload-complete").wait_for(timeout=120_000)
    # The file was added with its size and the SHA-256 WebCrypto computed (the server verified it on receipt).
    assert added == [
        {
            "name": "disk-image.bin",
            "source_type": "PUSH",
            "size": len(data),
            "checksum_info": {"algorithm": "SHA256", "checksum": hashlib.sha256(data).hexdigest()},
        }
    ]
    seen = page.evaluate("window.__progress")
    assert seen[-1] == [len(data), len(data)]
    assert any(0 < value < len(data) for value, _ in seen), seen  # the bar moved through the middle
    assert re.search(r"sent · [\d.]+ (KB|MB)/s", page.inner_text("#upload-progress-text"))
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    item = item_of(page)
    page.click("#upload-result ~ .actions a.button")
    page.wait_for_selector("h1:text-is('disk-image')")
    row = page.locator("tr", has=page.locator("span.name:text-is('disk-image.bin')"))
    assert row.locator("td").nth(1).locator("span").get_attribute("title") == f"{len(data)} bytes"
    info = api.item_files(item)["disk-image.bin"]
    assert info["size"] == len(data)
    algorithm, checksum = info["checksum_info"]["algorithm"], info["checksum_info"]["checksum"]
    assert checksum == hashlib.new(algorithm.lower(), data).hexdigest()  # (the browser's SHA-256 was verified)
    assert checksum in row.locator("code.checksum").inner_text().replace("\n", "")
    assert api.get(f"/api/content/library/item/{item}").json()["library_id"] == lib
    assert api.download(item, "disk-image.bin") == data
    sessions = page.locator("table[aria-label='Update sessions']")
    assert "DONE" in sessions.inner_text()


def test_upload_item_name_taken_then_another(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    path = tmp_path / "taken.txt"
    path.write_bytes(b"taken\n")
    lib = open_upload(page, server, api)
    api.create_item(lib, "taken")
    page.set_input_files("#upload-files", str(path))
    assert page.input_value("#item-name") == "taken"
    page.click("#upload-start")
    alert = page.locator("dialog form [role=alert]")
    alert.wait_for()
    assert "already exists" in alert.inner_text()  # the API's ALREADY_EXISTS message
    page.fill("#item-name", "not taken")
    page.click("#upload-start")
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    assert api.item_files(item_of(page))["taken.txt"]["size"] == 6


def test_upload_into_existing_item(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    item = api.create_item(name="ui-existing")
    api.put_files(item, {"a.txt": b"first\n", "b.txt": b"old b\n"})
    (tmp_path / "b.txt").write_bytes(b"new b, longer\n")
    (tmp_path / "c.txt").write_bytes(b"c\n")
    logged_in(page, server, f"#/item/{item}")
    page.click("#upload-to-item")
    assert page.locator("#item-name").count() == 0  # no new item: the files go into this one
    page.set_input_files("#upload-files", [str(tmp_path / "b.txt"), str(tmp_path / "c.txt")])
    page.click("#upload-start")
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    page.click("#upload-result ~ .actions a.button")
    page.locator("span.name:text-is('c.txt')").wait_for()
    files = api.item_files(item)
    assert {n: f["size"] for n, f in files.items()} == {"a.txt": 6, "b.txt": 14, "c.txt": 2}
    sessions = page.locator("table[aria-label='Update sessions'] .badge").all_inner_texts()
    assert sessions == ["DONE", "DONE"]


def write_package(folder: Path, pkg: k.Package) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in pkg.files.items():
        (folder / name).write_bytes(data)
    return [str(folder / n) for n in pkg.files]


def test_upload_signed_ovf_ignore_warning(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    signer = k.self_signed()
    pkg = k.build_package("signed", signer=signer)
    paths = write_package(tmp_path / "pkg", pkg)
    open_upload(page, server, api)
    page.set_input_files("#upload-files", paths)
    assert page.input_value("#item-name") == "signed"
    chosen = page.locator(".chosen li .name").all_inner_texts()
    assert chosen[:3] == ["signed.mf", "signed.cert", "signed.ovf"]  # the order OVF needs
    page.click("#upload-start")
    warnings = page.locator("section.warnings")
    warnings.wait_for(timeout=120_000)
    assert k.oneline(signer.cert.subject) in warnings.inner_text()
    types = page.locator("li.warning strong").all_inner_texts()
    assert "SELF_SIGNED_CERTIFICATE" in types
    assert page.locator("#upload-complete").is_disabled()  # a warning not ignored would fail the session
    for t in types:
        page.check(f"#ignore-{t}")
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    item = item_of(page)
    session = only_session(api, item)
    assert session["state"] == "DONE"
    assert {w["type"]: w["ignored"] for w in session["warning_behavior"]} == dict.fromkeys(types, True)
    assert {n: f["size"] for n, f in api.item_files(item).items()} == {n: len(d) for n, d in pkg.kept().items()}
    assert api.get(f"/api/content/library/item/{item}").json()["type"] == "ovf"


def test_session_kept_alive_while_reviewing(page: Any, tmp_path: Path) -> None:
    """On a server whose update sessions expire after 3 idle seconds, the dialog keeps its session alive while the
    warnings are reviewed; when another client cancels it meanwhile, complete is refused and the dialog shows the
    API's message."""
    pkg = k.build_package("slow", signer=k.self_signed())
    paths = write_package(tmp_path / "pkg", pkg)
    args = ["--update-session-timeout", "3", "--sweep-interval", "0.25"]
    with private_server(tmp_path / "data", args) as srv:
        api = Api(srv.base)
        open_upload(page, srv, api)
        page.set_input_files("#upload-files", paths)
        page.click("#upload-start")
        page.locator("section.warnings").wait_for(timeout=120_000)
        (sid,) = api.get("/api/content/library/item/update-session").json()
        first = api.session(sid)["expiration_time"]
        deadline = time.monotonic() + 60  # several timeouts pass: the keep-alives move the expiration on
        while api.session(sid)["expiration_time"] == first and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(4)  # longer than the timeout: only the keep-alives keep it ACTIVE
        assert api.session(sid)["state"] == "ACTIVE"
        assert api.post(f"/api/content/library/item/update-session/{sid}?action=cancel").status_code == 204
        for box in page.locator("li.warning input[type=checkbox]").all():
            box.check()
        page.click("#upload-complete")
        alert = page.locator(".upload-panel [role=alert]")
        alert.wait_for()
        refused = api.patch(f"/api/content/library/item/update-session/{sid}", json={"warning_behavior": []})
        assert refused.status_code == 400
        assert alert.inner_text() == " ".join(m["default_message"] for m in refused.json()["messages"])
        page.click(".upload-panel button:text-is('Close')")
        page.locator("dialog").wait_for(state="detached")


def test_upload_ovf_folder(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    pkg = k.build_package("folder-vm", disks={"folder-vm-disk1.vmdk": k.disk_bytes("f1", 200_000)})
    write_package(tmp_path / "folder-vm", pkg)
    open_upload(page, server, api)
    page.set_input_files("#upload-folder", str(tmp_path / "folder-vm"))
    assert page.input_value("#item-name") == "folder-vm"
    page.click("#upload-start")
    page.locator("#upload-complete").wait_for(timeout=120_000)
    assert page.locator("section.warnings").count() == 0  # unsigned: no certificate to review
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    item = item_of(page)
    assert {n: f["size"] for n, f in api.item_files(item).items()} == {n: len(d) for n, d in pkg.kept().items()}


def test_upload_ova(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    pkg = k.build_package("appliance")
    path = tmp_path / "appliance.ova"
    path.write_bytes(k.package_ova(pkg))
    open_upload(page, server, api)
    page.set_input_files("#upload-files", str(path))
    page.click("#upload-start")  # the checksum box stays on: an .ova is sent without one (the server unpacks it)
    page.locator("#upload-complete").wait_for(timeout=120_000)
    page.click("#upload-complete")
    assert wait_done(page) == "DONE"
    item = item_of(page)
    files = api.item_files(item)
    assert {n: f["size"] for n, f in files.items()} == {n: len(d) for n, d in pkg.kept().items()}
    for name, data in pkg.kept().items():
        assert api.download(item, name) == data


def test_upload_invalid_package_shows_problems_and_cancels(
    page: Any, server: ServerProcess, api: Api, tmp_path: Path
) -> None:
    pkg = k.build_package("broken")
    del pkg.files["broken-disk1.vmdk"]  # the descriptor names a disk that is not uploaded
    paths = write_package(tmp_path / "broken", pkg)
    lib = open_upload(page, server, api)
    page.set_input_files("#upload-files", paths)
    page.click("#upload-start")
    problems = page.locator("ul.problems")
    problems.wait_for(timeout=120_000)
    assert "broken-disk1.vmdk" in problems.inner_text()
    (item,) = api.get(f"/api/content/library/item?library_id={lib}").json()
    assert only_session(api, item)["state"] == "ACTIVE"
    sid = api.get(f"/api/content/library/item/update-session?library_item_id={item}").json()[0]
    page.evaluate("document.querySelector('main > .view').dataset.before = 'cancel'")
    page.click("#upload-cancel")
    # The page is shown anew once the session is canceled and the item the dialog made for it is deleted.
    page.locator("main > .view:not([data-before])").wait_for()
    assert "No items yet" in page.inner_text("main")
    assert page.locator("dialog").count() == 0
    assert api.get(f"/api/content/library/item/{item}").status_code == 404
    assert api.get(f"/api/content/library/item/update-session/{sid}").status_code == 404  # gone with its item


# -- trusted certificates ------------------------------------------------------------------------------------------
def test_trusted_certificates_add_and_remove(page: Any, server: ServerProcess, api: Api) -> None:
    pem, der = self_signed_pem()
    fingerprint = hashlib.sha256(der).hexdigest()
    logged_in(page, server, "#/certificates")
    page.wait_for_selector("h1:text-is('Trusted certificates')")
    page.fill("#cert-text", "not a certificate")
    page.click("#cert-add")
    page.locator("form [role=alert]").wait_for()
    page.fill("#cert-text", pem)
    page.click("#cert-add")
    code = page.locator(f"code.fingerprint:text-is('{fingerprint}')")
    code.wait_for()
    row = page.locator("tr", has=code)
    cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert row.locator("td").nth(0).inner_text() == f"CN={cn}"  # subject and issuer read from the DER in the page
    assert row.locator("td").nth(1).inner_text() == f"CN={cn}"
    listed = [c["certificate"] for c in api.get("/api/content/trusted-certificates").json()["certificates"]]
    assert fingerprint in listed
    page.click(f"button[aria-label='Remove certificate {fingerprint}']")
    code.wait_for(state="detached")
    assert api.get(f"/api/content/trusted-certificates/{fingerprint}").status_code == 404

    ca = k.make_ca()  # a CA with a longer name, added through the API
    k.trust(api, ca.cert)
    try:
        page.reload()
        row = page.locator("tr", has=page.locator(f"code.fingerprint:text-is('{k.cert_id(ca.cert)}')"))
        assert row.locator("td").nth(0).inner_text() == f"C=US, O=contentlib tests, CN={ca.cn}"
        valid = row.locator("td").nth(2).inner_text()
        assert "Expired" not in valid and str(ca.cert.not_valid_after_utc.year) in valid
    finally:
        k.untrust(api, ca.cert)


# -- HTTPS (the default) ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def private_server(data_dir: Path, args: list[str] | None = None, http: bool = True) -> Iterator[ServerProcess]:
    """A server of the test's own. Made and dropped in a thread: with CONTENTLIB_TEST_PG its database is created
    with asyncio.run, which cannot run in this thread while Playwright's event loop does."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        srv = pool.submit(ServerProcess, data_dir, args, None, http).result()
        try:
            srv.start()
            yield srv
        finally:
            pool.submit(srv.destroy).result()


@pytest.fixture()
def https_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with private_server(tmp_path / "https-data", http=False) as srv:
        yield srv


def test_ui_over_https_uploads_with_checksum(browser: Any, https_server: ServerProcess, tmp_path: Path) -> None:
    """The default server speaks HTTPS (a self-signed certificate, accepted here): the UI logs in, and an upload
    goes to the https upload URL with a SHA-256 from WebCrypto (a secure context)."""
    srv = https_server
    api = Api(srv.base)
    lib = api.create_library()
    path = tmp_path / "small.txt"
    path.write_bytes(b"over https\n" * 1000)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    try:
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        logged_in(pg, srv, f"#/library/{lib}")
        pg.click("#new-item")
        pg.set_input_files("#upload-files", str(path))
        pg.click("#upload-start")
        pg.click("#upload-complete")
        assert wait_done(pg) == "DONE"
        assert "checksum…" in pg.locator("ol.steps").inner_text()
        item = item_of(pg)
        assert api.download(item, "small.txt") == path.read_bytes()
    finally:
        context.close()


def test_delete_item_then_library(page: Any, server: ServerProcess, api: Api) -> None:
    lib = api.create_library()
    item = api.create_item(lib, "ui-doomed")
    logged_in(page, server, f"#/item/{item}")
    page.click("button.danger:text-is('Delete item')")  # the confirm() is accepted (the page fixture)
    page.wait_for_url(f"**#/library/{lib}")
    assert api.get(f"/api/content/library/item/{item}").status_code == 404
    page.click("button.danger:text-is('Delete library')")
    page.wait_for_url("**#/libraries")
    assert api.get(f"/api/content/library/{lib}").status_code == 404
