// The console's shell: sign-in, the hash router (#/documents, #/ask, #/jobs, #/jobs/ID), links.

import { api, apiKey, signIn, signOut } from "./api.js";
import { fromTemplate, hideError, showError } from "./dom.js";
import * as ask from "./ask.js";
import * as documents from "./documents.js";
import * as jobs from "./jobs.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let leave = null; // the current view's cleanup
let signInMessage = null;

function signInView() {
  main.replaceChildren(fromTemplate("view-signin"));
  const form = document.getElementById("signin-form");
  const input = document.getElementById("api-key");
  const error = document.getElementById("signin-error");
  // The reason for the last sign-out stays shown until the next sign-in, whatever the route.
  if (signInMessage) showError(error, signInMessage);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    hideError(error);
    const key = input.value.trim();
    try {
      // Any authenticated read checks the key; this one is the cheapest.
      await api("/v1/jobs?limit=1", { key });
    } catch (failure) {
      showError(error, failure);
      input.focus();
      return;
    }
    signIn(key);
    signInMessage = null;
    if (!location.hash || location.hash === "#/") location.hash = "#/documents";
    else route();
  });
  input.focus();
  return null;
}

const VIEWS = { documents, ask, jobs };

function route() {
  if (leave) leave();
  leave = null;
  const signedIn = Boolean(apiKey());
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  if (!signedIn) {
    document.title = "Sign in · ragq";
    signInView();
    return;
  }
  const [, name = "documents", ...rest] = location.hash.replace(/^#/, "").split("/");
  const view = VIEWS[name] ?? documents;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  leave = view.render(main, rest.map(decodeURIComponent)) ?? null;
  const heading = main.querySelector("h1");
  document.title = `${heading?.textContent.trim() ?? "ragq"} · ragq`;
  if (heading && document.activeElement === document.body) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

window.addEventListener("ragq:unauthorized", (event) => {
  if (!apiKey()) return;
  signOut();
  signInMessage = event.detail;
  route();
});

signOutButton.addEventListener("click", () => {
  signOut();
  route();
});

window.addEventListener("hashchange", () => {
  document.activeElement?.blur();
  route();
});

async function showLinks() {
  try {
    const response = await fetch("config.json");
    const links = await response.json();
    const flower = document.getElementById("link-flower");
    if (links.flower) {
      // ":5555" means Flower beside the API, on the host the browser used.
      flower.href = links.flower.startsWith(":")
        ? `${location.protocol}//${location.hostname}${links.flower}/`
        : links.flower;
      flower.hidden = false;
    }
    const grafana = document.getElementById("link-grafana");
    if (links.grafana) {
      grafana.href = links.grafana;
      grafana.hidden = false;
    }
  } catch {
    // The links are a convenience; the console works without them.
  }
}

showLinks();
route();
