// The libraries list, a library's page (its items, its published URL) and the "new library" dialog.
import * as api from "./api.js";
import { clear, deleteButton, errorBox, formatBytes, formatTime, h, modal, table } from "./dom.js";
import { uploadDialog } from "./upload.js";

const TYPE_LABEL = { LOCAL: "Local", SUBSCRIBED: "Subscribed" };
const SIZE_ITEMS = 200; // a library's size is the sum of its items' sizes: read for libraries up to this many items

async function libraryInfos() {
  const ids = await api.get("/content/library");
  const libs = await Promise.all(ids.map((id) => api.get(`/content/library/${id}`).catch(() => null)));
  const infos = libs.filter(Boolean);
  await Promise.all(
    infos.map(async (l) => {
      const items = await api.get(`/content/library/item?library_id=${l.id}`);
      l.item_count = items.length;
      if (items.length <= SIZE_ITEMS) {
        const details = await Promise.all(items.map((i) => api.get(`/content/library/item/${i}`)));
        const sizes = details.map((x) => x.size || 0);
        l.size = sizes.reduce((a, b) => a + b, 0);
      }
    }),
  );
  return infos.sort((a, b) => a.name.localeCompare(b.name));
}

export function publishUrl(lib) {
  const p = lib.publish_info;
  return p && p.published && p.publish_url ? p.publish_url : null;
}

export async function librariesPage(main) {
  document.title = "Libraries — Content Library";
  const libs = await libraryInfos();
  const rows = table(
    [
      [
        "Name",
        (l) => [h("a", { href: `#/library/${l.id}` }, l.name), l.description && h("div.muted.small", l.description)],
      ],
      ["Type", (l) => TYPE_LABEL[l.type] || l.type],
      ["Items", (l) => String(l.item_count)],
      ["Size", (l) => formatBytes(l.size)],
      ["Published", (l) => (publishUrl(l) ? h("span.badge.ok", "Published") : h("span.muted", "No"))],
      ["Version", (l) => l.version],
      ["Modified", (l) => formatTime(l.last_modified_time)],
    ],
    libs,
    "No libraries yet. Create one to start.",
    "Libraries",
  );
  clear(
    main,
    h(
      "div.page-head",
      h("h1", "Libraries"),
      h("button", { type: "button", id: "new-library", onclick: () => newLibraryDialog() }, "New library"),
    ),
    h("section.card", rows),
  );
}

function newLibraryDialog() {
  const { body, close } = modal("New library");
  const name = h("input", { id: "lib-name", required: true, maxlength: 80 });
  const description = h("textarea", { id: "lib-description", rows: 2 });
  const uri = h("input", { id: "lib-storage", value: "file:///var/lib/contentlib", required: true });
  const published = h("input", { id: "lib-published", type: "checkbox" });
  const error = h("div");
  const submit = h("button", { type: "submit" }, "Create");
  body.append(
    h(
      "form.form",
      {
        onsubmit: async (e) => {
          e.preventDefault();
          submit.disabled = true;
          clear(error);
          const spec = {
            name: name.value,
            description: description.value,
            type: "LOCAL",
            storage_backings: [{ type: "OTHER", storage_uri: uri.value }],
          };
          if (published.checked) spec.publish_info = { published: true, authentication_method: "NONE" };
          try {
            const id = await api.post("/content/local-library", spec);
            close();
            location.hash = `#/library/${id}`;
          } catch (err) {
            clear(error, errorBox(err.message));
            submit.disabled = false;
          }
        },
      },
      h("label", { for: "lib-name" }, "Name"),
      name,
      h("label", { for: "lib-description" }, "Description"),
      description,
      h("label", { for: "lib-storage" }, "Storage URI"),
      uri,
      h("label.check", published, " Publish this library (a VCSP feed other servers can subscribe to)"),
      error,
      h("div.actions", h("button.secondary", { type: "button", onclick: close }, "Cancel"), submit),
    ),
  );
  name.focus();
}

function copyButton(text) {
  return h(
    "button.secondary.small",
    {
      type: "button",
      onclick: async (e) => {
        try {
          await navigator.clipboard.writeText(text);
          e.target.textContent = "Copied";
        } catch {
          e.target.textContent = "Select and copy";
        }
      },
    },
    "Copy",
  );
}

export async function libraryPage(main, id) {
  const lib = await api.get(`/content/library/${id}`);
  document.title = `${lib.name} — Content Library`;
  const ids = await api.get(`/content/library/item?library_id=${id}`);
  const items = (await Promise.all(ids.map((i) => api.get(`/content/library/item/${i}`).catch(() => null))))
    .filter(Boolean)
    .sort((a, b) => a.name.localeCompare(b.name));
  const url = publishUrl(lib);
  const total = items.reduce((sum, i) => sum + (i.size || 0), 0);
  const facts = [
    ["Type", TYPE_LABEL[lib.type] || lib.type],
    ["Items", `${items.length} (${formatBytes(total)})`],
    ["Version", lib.version],
    ["Storage", (lib.storage_backings || []).map((b) => b.storage_uri || b.datastore_id).join(", ") || "—"],
    ["Created", formatTime(lib.creation_time)],
    ["Modified", formatTime(lib.last_modified_time)],
  ];
  if (lib.subscription_info) facts.push(["Subscribed to", lib.subscription_info.subscription_url]);
  const local = lib.type === "LOCAL";
  clear(
    main,
    h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("a", { href: "#/libraries" }, "Libraries"), " / ", lib.name),
    h(
      "div.page-head",
      h("h1", lib.name),
      local &&
        h(
          "button",
          { type: "button", id: "new-item", onclick: () => uploadDialog({ library: lib }) },
          "New item / Upload",
        ),
    ),
    lib.description && h("p.muted", lib.description),
    h("dl.facts", facts.map(([k, v]) => h("div", h("dt", k), h("dd", v)))),
    url &&
      h(
        "section.card.published",
        { "aria-label": "Published" },
        h("h2", "Published"),
        h("p", "Subscribers use this URL", lib.publish_info.authentication_method === "BASIC" ? " (Basic auth):" : ":"),
        h("p.url", h("code", { id: "publish-url" }, url), " ", copyButton(url)),
      ),
    h(
      "section.card",
      h("h2", "Items"),
      table(
        [
          ["Name", (i) => h("a", { href: `#/item/${i.id}` }, i.name)],
          ["Type", (i) => i.type || "—"],
          ["Size", (i) => formatBytes(i.size)],
          ["Content version", (i) => i.content_version],
          ["Modified", (i) => formatTime(i.last_modified_time)],
        ],
        items,
        local ? "No items yet. Use “New item / Upload”." : "No items.",
        "Items",
      ),
    ),
    local &&
      h(
        "div.danger-zone",
        deleteButton("Delete library", `Delete the library “${lib.name}” and all its items?`, async () => {
          await api.del(`/content/local-library/${lib.id}`);
          location.hash = "#/libraries";
        }),
      ),
  );
}
