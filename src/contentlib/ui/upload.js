// The "new item / upload" dialog: files (one file, an OVA, or an OVF package's files) or an OVF folder go into a
// new or existing item through one update session: add each file (with its SHA-256 when the browser can compute it),
// PUT its bytes to the upload URL with a progress bar, validate, review the preview's certificate warnings (and
// ignore them: warning_behavior), complete, and wait for DONE or ERROR.
import * as api from "./api.js";
import { clear, errorBox, formatBytes, h, modal } from "./dom.js";
import { stateBadge } from "./item.js";

const US = "/content/library/item/update-session";
// A session expires after the server's idle timeout (--update-session-timeout, five minutes by default): while the
// dialog is open it is kept alive three times per timeout, as its first expiration_time tells, between 1 s and 60 s.
function keepAliveEvery(session) {
  const left = Date.parse(session.expiration_time) - Date.now();
  return Number.isFinite(left) ? Math.min(60_000, Math.max(1_000, left / 3)) : 60_000;
}

const WARNING_TEXT = {
  SELF_SIGNED_CERTIFICATE: "The package is signed with a self-signed certificate.",
  EXPIRED_CERTIFICATE: "The signing certificate has expired.",
  NOT_YET_VALID_CERTIFICATE: "The signing certificate is not valid yet.",
  UNTRUSTED_CERTIFICATE: "The signing certificate is not issued by a trusted certificate.",
};

// The OVF rules: a package's manifest and certificate go in before its descriptor, the descriptor before its disks.
function rank(name) {
  const n = name.toLowerCase();
  if (n.endsWith(".mf")) return 0;
  if (n.endsWith(".cert")) return 1;
  if (n.endsWith(".ovf")) return 2;
  return 3;
}

function ordered(files) {
  return [...files].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

function isPackage(files) {
  return files.some((f) => /\.(ovf|ova)$/i.test(f.name));
}

function defaultName(files) {
  const main = files.find((f) => /\.(ovf|ova)$/i.test(f.name)) || files[0];
  return main ? main.name.replace(/\.[^.]+$/, "") : "";
}

function canHash(file) {
  return Boolean(globalThis.crypto && crypto.subtle) && !/\.ova$/i.test(file.name) && file.size <= api.SHA256_LIMIT;
}

function rate(bytes, ms) {
  return ms > 0 ? `${formatBytes((bytes * 1000) / ms)}/s` : "";
}

export function uploadDialog({ library, item = null }) {
  let sid = null;
  let created = null; // the item this dialog created: deleted again when the upload is canceled
  let finished = false;
  let keepAlive = null;
  const { body, close } = modal(item ? `Upload to ${item.name}` : `New item in ${library.name}`, {
    onclose: async () => {
      clearInterval(keepAlive);
      if (sid && !finished) await api.post(`${US}/${sid}?action=cancel`).catch(() => {});
      if (created && !finished) await api.del(`/content/library/item/${created}`).catch(() => {});
      if ((sid || created) && api.sessionId()) window.dispatchEvent(new HashChangeEvent("hashchange")); // show what changed
    },
  });

  // -- step 1: choose ------------------------------------------------------------------------------------------
  let chosen = [];
  const name = h("input", { id: "item-name", maxlength: 80 });
  const description = h("input", { id: "item-description" });
  const filesInput = h("input", { id: "upload-files", type: "file", multiple: true });
  const folderInput = h("input", { id: "upload-folder", type: "file", multiple: true, webkitdirectory: true });
  const checksums = h("input", { id: "upload-checksums", type: "checkbox", checked: true });
  const listing = h("div.chosen", { "aria-live": "polite" });
  const error = h("div");
  const start = h("button", { type: "submit", id: "upload-start", disabled: true }, "Upload");
  const pick = (input, other) => {
    other.value = "";
    chosen = ordered(input.files);
    if (!item && !name.value) name.value = defaultName(chosen);
    const total = chosen.reduce((s, f) => s + f.size, 0);
    clear(
      listing,
      chosen.length
        ? h(
            "ul.files",
            chosen.map((f) => h("li", h("span.name", f.name), h("span.muted", formatBytes(f.size)))),
            h("li.total", h("span", `${chosen.length} file(s)`), h("span", formatBytes(total))),
          )
        : null,
    );
    start.disabled = !chosen.length;
  };
  filesInput.addEventListener("change", () => pick(filesInput, folderInput));
  folderInput.addEventListener("change", () => pick(folderInput, filesInput));

  const form = h(
    "form.form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        run().catch((err) => fail(err));
      },
    },
    !item && [
      h("label", { for: "item-name" }, "Item name"),
      name,
      h("label", { for: "item-description" }, "Description (optional)"),
      description,
    ],
    h("label", { for: "upload-files" }, "Files: one file, an OVA, or the files of an OVF package"),
    filesInput,
    h("label", { for: "upload-folder" }, "Or an OVF folder"),
    folderInput,
    listing,
    h("label.check", checksums, " Send SHA-256 checksums computed in the browser (the server verifies them)"),
    error,
    h("div.actions", h("button.secondary", { type: "button", onclick: close }, "Cancel"), start),
  );
  body.append(form);

  // -- step 2: upload --------------------------------------------------------------------------------------------
  const bar = h("progress", { id: "upload-progress", max: 1, value: 0, "aria-label": "Upload progress" });
  const barText = h("p.progress-text", { id: "upload-progress-text", "aria-live": "polite" });
  const steps = h("ol.steps");
  const panel = h("div.upload-panel", bar, barText, steps);

  function step(text) {
    const li = h("li", text);
    steps.append(li);
    return li;
  }

  function fail(err) {
    if (!panel.isConnected) {
      clear(error, errorBox(err.message)); // e.g. the item name is taken: fix it and try again
      start.disabled = false;
      return;
    }
    for (const el of panel.querySelectorAll(".actions")) el.remove();
    panel.append(errorBox(err.message), closeActions());
  }

  function closeActions(...extra) {
    return h("div.actions", extra, h("button.secondary", { type: "button", onclick: close }, "Close"));
  }

  async function run() {
    start.disabled = true;
    let itemId = item && item.id;
    if (!itemId) {
      const spec = { library_id: library.id, name: name.value || defaultName(chosen), description: description.value };
      if (isPackage(chosen)) spec.type = "ovf";
      itemId = await api.post("/content/library/item", spec);
      created = itemId;
    }
    form.replaceWith(panel);
    sid = await api.post(US, { library_item_id: itemId });
    const every = keepAliveEvery(await api.get(`${US}/${sid}`));
    keepAlive = setInterval(() => api.post(`${US}/${sid}?action=keep-alive`, {}).catch(() => {}), every);
    const total = chosen.reduce((s, f) => s + f.size, 0);
    bar.max = Math.max(total, 1);
    const started = performance.now();
    let done = 0;
    for (const file of chosen) {
      const li = step(`${file.name}: `);
      const spec = { name: file.name, source_type: "PUSH", size: file.size };
      if (checksums.checked && canHash(file)) {
        li.append("checksum… ");
        spec.checksum_info = { algorithm: "SHA256", checksum: await api.sha256(file) };
      }
      const info = await api.post(`${US}/${sid}/file`, spec);
      const status = h("span", "uploading");
      li.append(status);
      await api.putFile(info.upload_endpoint.uri, file, (loaded) => {
        const sent = done + loaded;
        bar.value = sent;
        const speed = rate(sent, performance.now() - started);
        barText.textContent = `${formatBytes(sent)} of ${formatBytes(total)} · ${speed}`;
      });
      done += file.size;
      clear(status, h("span.ok", "sent"));
    }
    bar.value = bar.max;
    barText.textContent = `${formatBytes(total)} sent · ${rate(total, performance.now() - started)}`;
    await review(itemId);
  }

  // -- step 3: validate, review warnings, complete ---------------------------------------------------------------
  async function review(itemId) {
    const v = await api.post(`${US}/${sid}/file?action=validate`);
    if (v.has_errors) {
      const li = step("Validation found problems:");
      li.append(
        h(
          "ul.problems",
          (v.missing_files || []).map((n) => h("li", `${n}: missing (the descriptor or manifest names it)`)),
          (v.invalid_files || []).map((f) => h("li", `${f.name}: ${f.error_message.default_message}`)),
        ),
      );
      panel.append(closeActions(cancelButton()));
      return;
    }
    step("Validated: no missing or invalid files.");
    const session = await api.get(`${US}/${sid}`);
    const preview = session.preview_info || { state: "UNAVAILABLE" };
    const warnings = preview.warnings || [];
    const boxes = warnings.map((w) => {
      const id = `ignore-${w.type}`;
      return [w, h("input", { type: "checkbox", id, checked: w.ignored, dataset: { type: w.type } })];
    });
    const submit = h("button", { type: "button", id: "upload-complete" }, "Complete");
    const hint = h("p.muted.small");
    const refresh = () => {
      const blocking = boxes.filter(([, box]) => !box.checked).length;
      submit.disabled = blocking > 0;
      hint.textContent = blocking ? `Ignore the ${blocking} warning(s) to complete, or cancel the upload.` : "";
    };
    for (const [, box] of boxes) box.addEventListener("change", refresh);
    refresh();
    if (preview.certificate_info || warnings.length) {
      const cert = preview.certificate_info;
      panel.append(
        h(
          "section.warnings",
          { "aria-label": "Certificate warnings" },
          h("h3", "Package signature"),
          cert &&
            h(
              "dl.facts.compact",
              h("dt", "Subject"),
              h("dd", cert.subject),
              h("dt", "Issuer"),
              h("dd", cert.issuer),
              h("dt", "Self-signed"),
              h("dd", cert.self_signed ? "Yes" : "No"),
            ),
          warnings.length
            ? h(
                "ul.warning-list",
                boxes.map(([w, box]) =>
                  h(
                    "li.warning",
                    h("strong", w.type),
                    h("span", (w.message && w.message.default_message) || WARNING_TEXT[w.type] || ""),
                    h("label.check", { for: box.id }, box, " Ignore this warning"),
                  ),
                ),
              )
            : h("p.ok", "The certificate raises no warnings."),
        ),
      );
    }
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      try {
        if (boxes.length) {
          const behavior = boxes.map(([w, box]) => ({ type: w.type, ignored: box.checked }));
          await api.patch(`${US}/${sid}`, { warning_behavior: behavior });
        }
        await finish(itemId);
      } catch (err) {
        fail(err);
      }
    });
    panel.append(hint, h("div.actions", cancelButton(), submit));
  }

  function cancelButton() {
    return h(
      "button.secondary",
      {
        type: "button",
        id: "upload-cancel",
        onclick: close, // closing cancels the session
      },
      "Cancel upload",
    );
  }

  async function finish(itemId) {
    await api.post(`${US}/${sid}?action=complete`);
    const li = step("Completing… ");
    let session = await api.get(`${US}/${sid}`);
    for (let i = 0; session.state === "ACTIVE" && i < 1200; i += 1) {
      await api.sleep(500);
      session = await api.get(`${US}/${sid}`);
    }
    finished = true;
    clearInterval(keepAlive);
    li.append(stateBadge(session.state));
    for (const el of panel.querySelectorAll(".actions")) el.remove();
    const result = h("div.result", { id: "upload-result", role: "status", dataset: { state: session.state } });
    if (session.state === "DONE") {
      result.append(h("p.ok", "Done: the item holds the new content."));
    } else {
      const m = session.error_message;
      result.append(errorBox(`The update failed: ${(m && m.default_message) || session.state}`));
    }
    const open = h(
      "a.button",
      {
        href: `#/item/${itemId}`,
        onclick: (e) => {
          e.preventDefault();
          history.pushState(null, "", `#/item/${itemId}`);
          close(); // and the page shown is the item's
        },
      },
      "Open the item",
    );
    panel.append(result, closeActions(open));
  }
}
