// The shell: login, the hash router (#/libraries, #/library/ID, #/item/ID, #/certificates) and the top bar.
import * as api from "./api.js";
import { certificatesPage } from "./certificates.js";
import { clear, errorBox, h } from "./dom.js";
import { itemPage } from "./item.js";
import { libraryPage, librariesPage } from "./libraries.js";

const main = document.getElementById("main");
let loginNotice = "";

let generation = 0;

const routes = [
  [/^#\/libraries$/, librariesPage, "libraries"],
  [/^#\/library\/([^/]+)$/, libraryPage, "libraries"],
  [/^#\/item\/([^/]+)$/, itemPage, "libraries"],
  [/^#\/certificates$/, certificatesPage, "certificates"],
];

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("user").hidden = !signedIn;
}

function loginPage() {
  generation += 1; // a page still loading is not shown
  showChrome(false);
  document.title = "Log in — Content Library";
  const error = h("div", { "aria-live": "assertive" });
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form.card.login",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        clear(error);
        try {
          await api.login(user.value, password.value);
          signedIn(user.value);
          loginNotice = "";
          if (!location.hash || location.hash === "#/login") location.hash = "#/libraries";
          else route();
        } catch (err) {
          clear(error, errorBox(err.status === 401 ? "Wrong user name or password." : err.message));
          password.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h1", "Log in"),
    h("p.muted", "Use the same user name and password as for the API."),
    loginNotice && h("p.notice", { role: "status" }, loginNotice),
    h("label", { for: "login-user" }, "User name"),
    user,
    h("label", { for: "login-password" }, "Password"),
    password,
    error,
    submit,
  );
  clear(main, h("div.center", form));
  user.focus();
}

async function route() {
  if (!api.sessionId()) return loginPage();
  showChrome(true);
  const hash = location.hash || "#/libraries";
  for (const [pattern, page, section] of routes) {
    const m = hash.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    // Each page renders into a view of its own, shown once it is ready, unless another route started meanwhile.
    const mine = (generation += 1);
    const view = h("div.view");
    const loading = setTimeout(() => {
      if (mine === generation) clear(main, h("p.muted", { "aria-busy": "true" }, "Loading…"));
    }, 150);
    try {
      await page(view, ...m.slice(1).map(decodeURIComponent));
      if (mine === generation) clear(main, view);
    } catch (err) {
      if (!api.sessionId() || mine !== generation) return; // the session ended (the login page is shown), or stale
      clear(main, h("h1", "Something went wrong"), errorBox(err.message), h("a", { href: "#/libraries" }, "Libraries"));
    } finally {
      clearTimeout(loading);
    }
    return;
  }
  location.hash = "#/libraries";
}

api.setOnExpired(() => {
  loginNotice = "Your session has ended. Log in again.";
  document.querySelectorAll("dialog").forEach((d) => d.close());
  loginPage();
});

document.getElementById("logout").addEventListener("click", async () => {
  await api.logout();
  loginNotice = "You are logged out.";
  loginPage();
});

window.addEventListener("hashchange", route);

// The skip link focuses the page's content; the hash is the router's, so it must not follow its href.
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

async function start() {
  if (api.sessionId()) {
    try {
      const info = await api.get("/session");
      document.getElementById("user-name").textContent = info.user;
    } catch {
      // 401 already showed the login page
    }
  }
  route();
}

export function signedIn(user) {
  document.getElementById("user-name").textContent = user;
}

start();
