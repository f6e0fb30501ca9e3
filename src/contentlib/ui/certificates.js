// The trusted certificates: the ones OVF signatures (and https publishers) are checked against; add and remove.
import * as api from "./api.js";
import { clear, errorBox, formatTime, h, table } from "./dom.js";
import { describe } from "./x509.js";

const TRUST = "/content/trusted-certificates";

function pemLines(pem) {
  return pem.trim().split("\n");
}

export async function certificatesPage(main) {
  document.title = "Trusted certificates — Content Library";
  const { certificates } = await api.get(TRUST);
  for (const c of certificates) c.info = describe(c.cert_text);
  const error = h("div");
  const text = h("textarea", {
    id: "cert-text",
    rows: 6,
    placeholder: "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----",
    spellcheck: false,
  });
  const file = h("input", { id: "cert-file", type: "file", accept: ".pem,.crt,.cer,.cert,text/plain" });
  file.addEventListener("change", async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const add = h("button", { type: "submit", id: "cert-add" }, "Add certificate");
  const form = h(
    "form.form",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        add.disabled = true;
        clear(error);
        try {
          await api.post(TRUST, { cert_text: text.value });
          await certificatesPage(main);
        } catch (err) {
          clear(error, errorBox(err.message));
          add.disabled = false;
        }
      },
    },
    h("label", { for: "cert-text" }, "PEM certificate"),
    text,
    h("label", { for: "cert-file" }, "Or read it from a file"),
    file,
    error,
    h("div.actions", add),
  );
  const remove = (c) =>
    h(
      "button.danger.small",
      {
        type: "button",
        "aria-label": `Remove certificate ${c.certificate}`,
        onclick: async (e) => {
          if (!confirm("Remove this trusted certificate?")) return;
          e.target.disabled = true;
          try {
            await api.del(`${TRUST}/${c.certificate}`);
            await certificatesPage(main);
          } catch (err) {
            e.target.replaceWith(errorBox(err.message));
          }
        },
      },
      "Remove",
    );
  clear(
    main,
    h("div.page-head", h("h1", "Trusted certificates")),
    h(
      "p.muted",
      "A signed OVF package whose certificate chains to one of these raises no UNTRUSTED_CERTIFICATE warning.",
    ),
    h(
      "section.card",
      table(
        [
          ["Subject", (c) => (c.info ? c.info.subject : "—")],
          ["Issuer", (c) => (c.info ? c.info.issuer : "—")],
          [
            "Valid",
            (c) => {
              if (!c.info) return "—";
              const expired = c.info.notAfter && c.info.notAfter < new Date();
              return [
                `${formatTime(c.info.notBefore)} – ${formatTime(c.info.notAfter)}`,
                expired && [" ", h("span.badge.bad", "Expired")],
              ];
            },
          ],
          ["SHA-256 fingerprint", (c) => h("code.fingerprint", c.certificate)],
          [
            "Text",
            (c) => h("details", h("summary", `PEM (${pemLines(c.cert_text).length} lines)`), h("pre", c.cert_text)),
          ],
          ["", remove],
        ],
        certificates,
        "No trusted certificates.",
        "Trusted certificates",
      ),
    ),
    h("section.card", h("h2", "Add a certificate"), form),
  );
}
