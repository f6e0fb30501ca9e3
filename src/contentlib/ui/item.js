// An item's page: its facts, its files (size, checksum, a download link each) and its update-session history.
import * as api from "./api.js";
import { clear, deleteButton, errorBox, formatBytes, formatTime, h, table } from "./dom.js";
import { uploadDialog } from "./upload.js";

const STATE_CLASS = { DONE: "ok", ACTIVE: "info", ERROR: "bad", CANCELED: "muted" };

export function stateBadge(state) {
  return h(`span.badge.${STATE_CLASS[state] || "muted"}`, state);
}

// The update sessions the API still keeps for the item (the caller's, ended ones for the retention period), newest
// content version first, joined with the item's change log (which keeps every content change).
async function history(itemId) {
  const ids = await api.get(`/content/library/item/update-session?library_item_id=${itemId}`);
  const sessions = await Promise.all(
    ids.map((id) =>
      api
        .get(`/content/library/item/update-session/${id}`)
        .then((s) => ({ ...s, id }))
        .catch(() => null),
    ),
  );
  const changes = await api.get(`/content/library/item/${itemId}/changes`).catch(() => []);
  return { sessions: sessions.filter(Boolean), changes };
}

function sessionMessage(s) {
  if (s.error_message) return s.error_message.default_message || s.error_message.id;
  if (s.state === "ACTIVE") return `In progress (${s.client_progress}%)`;
  return "";
}

function downloadCell(item, file) {
  const cell = h("span");
  const button = h(
    "button.secondary.small",
    {
      type: "button",
      "aria-label": `Download link for ${file.name}`,
      onclick: async () => {
        button.disabled = true;
        button.textContent = "Preparing…";
        try {
          const ds = await api.post("/content/library/item/download-session", { library_item_id: item.id });
          const path = `/content/library/item/download-session/${ds}/file`;
          let info = await api.post(`${path}?action=prepare`, { file_name: file.name });
          for (let i = 0; info.status !== "PREPARED" && i < 600; i += 1) {
            if (info.status === "ERROR") throw new Error(`${file.name} could not be prepared.`);
            await api.sleep(500);
            info = await api.get(`${path}?file_name=${encodeURIComponent(file.name)}`);
          }
          clear(
            cell,
            h("a.button.small.download", { href: info.download_endpoint.uri, download: file.name }, "Download"),
          );
        } catch (err) {
          clear(cell, errorBox(err.message));
        }
      },
    },
    "Get link",
  );
  cell.append(button);
  return cell;
}

export async function itemPage(main, id) {
  const item = await api.get(`/content/library/item/${id}`);
  const [lib, files, past] = await Promise.all([
    api.get(`/content/library/${item.library_id}`),
    api.get(`/content/library/item/${id}/file`),
    history(id),
  ]);
  document.title = `${item.name} — Content Library`;
  files.sort((a, b) => a.name.localeCompare(b.name));
  const local = lib.type === "LOCAL";
  const facts = [
    ["Library", h("a", { href: `#/library/${lib.id}` }, lib.name)],
    ["Type", item.type || "—"],
    ["Size", formatBytes(item.size)],
    ["Version", item.version],
    ["Content version", item.content_version],
    ["Cached", item.cached ? "Yes" : "No"],
    ["Created", formatTime(item.creation_time)],
    ["Modified", formatTime(item.last_modified_time)],
  ];
  const sessions = past.sessions.sort(
    (a, b) =>
      Number(b.library_item_content_version) - Number(a.library_item_content_version) ||
      String(b.expiration_time).localeCompare(String(a.expiration_time)),
  );
  clear(
    main,
    h(
      "nav.crumbs",
      { "aria-label": "Breadcrumb" },
      h("a", { href: "#/libraries" }, "Libraries"),
      " / ",
      h("a", { href: `#/library/${lib.id}` }, lib.name),
      " / ",
      item.name,
    ),
    h(
      "div.page-head",
      h("h1", item.name),
      local &&
        h(
          "button",
          { type: "button", id: "upload-to-item", onclick: () => uploadDialog({ library: lib, item }) },
          "Upload files",
        ),
    ),
    item.description && h("p.muted", item.description),
    h("dl.facts", facts.map(([k, v]) => h("div", h("dt", k), h("dd", v)))),
    h(
      "section.card",
      h("h2", "Files"),
      table(
        [
          ["Name", (f) => h("span.name", f.name)],
          ["Size", (f) => h("span", { title: `${f.size} bytes` }, formatBytes(f.size))],
          [
            "Checksum",
            (f) => {
              const c = f.checksum_info;
              return c ? h("code.checksum", { title: c.checksum }, `${c.algorithm} ${c.checksum}`) : "—";
            },
          ],
          ["Version", (f) => f.version],
          ["", (f) => downloadCell(item, f)], // a subscribed item's file not cached yet is fetched by prepare
        ],
        files,
        "No files.",
        "Files",
      ),
    ),
    h(
      "section.card",
      h("h2", "Update sessions"),
      h("p.muted.small", "Sessions are kept for a while after they end; the content changes below are kept for good."),
      table(
        [
          ["Session", (s) => h("code", s.id)],
          ["State", (s) => stateBadge(s.state)],
          ["From content version", (s) => s.library_item_content_version],
          ["Expires / expired", (s) => formatTime(s.expiration_time)],
          ["Message", (s) => sessionMessage(s)],
        ],
        sessions,
        "No update sessions kept for this item.",
        "Update sessions",
      ),
      h("h3", "Content changes"),
      table(
        [
          ["Version", (c) => c.version],
          ["Time", (c) => formatTime(c.time)],
          ["User", (c) => c.user || "—"],
          ["Message", (c) => c.short_message || ""],
        ],
        [...past.changes].reverse(),
        "No content changes yet.",
        "Content changes",
      ),
    ),
    local &&
      h(
        "div.danger-zone",
        deleteButton("Delete item", `Delete the item “${item.name}”?`, async () => {
          await api.del(`/content/library/item/${item.id}`);
          location.hash = `#/library/${item.library_id}`;
        }),
      ),
  );
}
