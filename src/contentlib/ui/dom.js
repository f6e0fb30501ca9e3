// A tiny DOM builder: every text goes in as a text node (never as HTML), so names from the server cannot inject
// markup. h("tag.class", {attr: value, onclick: fn}, child, ...) -> HTMLElement.

export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function formatBytes(n) {
  if (n === undefined || n === null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let value = Number(n);
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// A table: columns are [heading, (row) -> cell content]; an empty list shows `empty`.
export function table(columns, rows, empty, label) {
  if (!rows.length) return h("p.empty", empty);
  return h(
    "table",
    { "aria-label": label },
    h("thead", h("tr", columns.map(([name]) => h("th", { scope: "col" }, name)))),
    h("tbody", rows.map((row) => h("tr", columns.map(([, cell]) => h("td", cell(row)))))),
  );
}

// A modal <dialog> with a title, a body and a close button; returns {dialog, body, close}.
export function modal(title, { onclose } = {}) {
  const body = h("div.dialog-body");
  const dialog = h(
    "dialog",
    { "aria-labelledby": "dialog-title" },
    h(
      "header.dialog-head",
      h("h2", { id: "dialog-title" }, title),
      h("button.icon", { type: "button", "aria-label": "Close", onclick: () => dialog.close() }, "×"),
    ),
    body,
  );
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onclose) onclose();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, body, close: () => dialog.close() };
}

export function errorBox(message) {
  return h("p.error", { role: "alert" }, message);
}

// A "Delete ..." button: asks `question`, runs `remove`, shows the server's refusal beside the button.
export function deleteButton(label, question, remove) {
  const error = h("span");
  return h(
    "div",
    h(
      "button.danger",
      {
        type: "button",
        onclick: async () => {
          if (!confirm(question)) return;
          try {
            await remove();
          } catch (err) {
            clear(error, errorBox(err.message));
          }
        },
      },
      label,
    ),
    error,
  );
}
