// ZeroTrace dashboard: our own small script. The pages are rendered by the server; this only
// signs in and out, and keeps an open page current from the live event stream (SSE):
// `summary` events update the counts at once, and events that change findings make the page
// fetch its own view again (debounced) and swap it in. The session is an HttpOnly cookie:
// no token is ever kept here.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const body = document.body;

  function csrf() {
    const m = document.querySelector('meta[name="zt-csrf"]');
    return m ? m.content : "";
  }

  function showError(message) {
    const banner = $("error");
    if (banner) banner.textContent = message || "";
  }

  async function errorText(res) {
    try {
      const e = await res.json();
      // The API names the field it refuses: say which, as the form shows it.
      if (e && e.error && e.error.message) {
        return e.error.field ? e.error.field + ": " + e.error.message : e.error.message;
      }
    } catch (_) { /* not JSON */ }
    return res.status + " " + res.statusText;
  }

  function signInAgain() {
    location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
  }

  // --- decisions: the analysis form of a vulnerability or a finding -------------------------
  // Delegated from the document: live updates swap the findings table (and its forms) in.
  // A "Decide" button opens its dialog (modal: Escape closes it, the browser's own way);
  // closing it, by Escape or a button, gives the focus back to the button.
  document.addEventListener("click", (e) => {
    const t = e.target instanceof Element ? e.target : null;
    if (!t) return;
    const opener = t.closest("button[data-decide]");
    if (opener) {
      const d = document.getElementById(opener.dataset.decide);
      if (!(d instanceof HTMLDialogElement) || d.open) return;
      const err = d.querySelector("[data-form-error]");
      if (err) err.textContent = "";
      d.addEventListener("close", () => { if (opener.isConnected) opener.focus(); }, { once: true });
      d.showModal();
      return;
    }
    const closer = t.closest("dialog [data-close]");
    if (closer) closer.closest("dialog").close();
  });
  document.addEventListener("submit", async (e) => {
    const f = e.target;
    if (!(f instanceof HTMLFormElement) || !f.matches("form[data-analysis]")) return;
    {
      e.preventDefault();
      const fd = new FormData(f);
      const body = { vuln_id: f.dataset.vuln, state: fd.get("state"), suppress: fd.get("suppress") === "on" };
      const justification = fd.get("justification");
      if (justification) body.justification = justification;
      const response = fd.get("response");
      if (response) body.response = [response];
      // The vulnerability view names a package; a finding's row its package version and,
      // unless unticked, its host.
      const scope = {};
      const pkg = fd.get("package");
      if (pkg) {
        scope.package = { name: pkg };
        const version = fd.get("package_version");
        if (version) scope.package.version = version;
      }
      const agent = fd.get("agent_id");
      if (agent) scope.agent_ids = [agent];
      if (Object.keys(scope).length) body.scope = scope;
      const until = fd.get("expires_at");
      if (until) body.expires_at = until + "T23:59:59Z";
      const comment = fd.get("comment");
      if (comment) body.comment = comment;
      const res = await fetch(f.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-ZeroTrace-CSRF": csrf() },
        body: JSON.stringify(body),
      });
      if (res.ok) location.reload();
      else if (res.status === 401) signInAgain();
      else {
        // In the form: the page's banner is behind the modal dialog.
        const message = await errorText(res);
        const err = f.querySelector("[data-form-error]");
        if (err) err.textContent = message;
        else showError(message);
      }
    }
  });

  // --- notification rules: create, send a test, delete -----------------------------------
  // The form becomes the API's JSON body; the API checks every field and names the one it
  // refuses, which is shown in the form.
  const ruleForm = document.querySelector("form[data-rule-form]");
  if (ruleForm) {
    const list = (v) => String(v || "").split(",").map((x) => x.trim()).filter((x) => x);
    ruleForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const fd = new FormData(ruleForm);
      const destination = { kind: fd.get("kind") };
      if (fd.get("url")) destination.url = fd.get("url");
      if (list(fd.get("to")).length) destination.to = list(fd.get("to"));
      if (fd.get("secret")) destination.secret = fd.get("secret");
      const body = {
        name: fd.get("name") || "",
        events: fd.getAll("events"),
        kev_only: fd.get("kev_only") === "true",
        digest_minutes: Number(fd.get("digest_minutes") || 0),
        destination: destination,
      };
      if (fd.get("min_severity")) body.min_severity = fd.get("min_severity");
      if (list(fd.get("tags")).length) body.tags = list(fd.get("tags"));
      const err = ruleForm.querySelector("[data-form-error]");
      err.textContent = "";
      const res = await fetch(ruleForm.dataset.ruleForm, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-ZeroTrace-CSRF": csrf() },
        body: JSON.stringify(body),
      });
      if (res.ok) location.reload();
      else if (res.status === 401) signInAgain();
      else err.textContent = "The rule was not created: " + (await errorText(res));
    });
  }
  document.addEventListener("click", async (e) => {
    const t = e.target instanceof Element ? e.target : null;
    const button = t && t.closest("button[data-rule-test], button[data-rule-delete]");
    if (!button) return;
    const status = $("rule-status");
    const testing = button.hasAttribute("data-rule-test");
    if (!testing && !window.confirm("Delete the rule \u201c" + button.dataset.ruleName + "\u201d?")) return;
    button.disabled = true;
    try {
      const res = await fetch(testing ? button.dataset.ruleTest : button.dataset.ruleDelete, {
        method: testing ? "POST" : "DELETE",
        credentials: "same-origin",
        headers: { "X-ZeroTrace-CSRF": csrf() },
      });
      if (res.status === 401) return signInAgain();
      if (!res.ok) throw new Error(await errorText(res));
      if (!testing) return location.reload();
      const r = await res.json();
      if (status) {
        status.textContent = r.ok
          ? "Test message delivered (" + r.status + "), delivery id " + r.delivery_id + "."
          : "Test message failed: " + (r.status ? r.status + " " : "") + (r.error || "") +
            ", delivery id " + r.delivery_id + ".";
      }
    } catch (err) {
      showError((testing ? "Sending the test failed: " : "Deleting the rule failed: ") + err.message);
    } finally {
      button.disabled = false;
    }
  });

  // --- sign-in ----------------------------------------------------------------------------
  const form = $("signin-form");
  if (form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = $("token");
      const token = input.value.trim();
      const button = form.querySelector("button");
      showError("");
      button.disabled = true;
      try {
        const res = await fetch("/api/v1/session", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ token: token }),
          credentials: "same-origin",
        });
        if (!res.ok) throw new Error(await errorText(res));
        input.value = "";
        location.assign(form.dataset.next || "/");
      } catch (err) {
        showError("Signing in failed: " + err.message);
        input.focus();
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- sign-out ---------------------------------------------------------------------------
  const signout = $("signout");
  if (signout) {
    signout.addEventListener("click", async () => {
      try {
        const res = await fetch("/api/v1/session", {
          method: "DELETE",
          headers: { "X-ZeroTrace-CSRF": csrf() },
          credentials: "same-origin",
        });
        // 401: the session had ended already.
        if (!res.ok && res.status !== 401) throw new Error(await errorText(res));
        location.assign("/signin");
      } catch (err) {
        showError("Signing out failed: " + err.message);
      }
    });
  }

  // --- filter forms: plain GET forms; empty fields are left out of the URL ----------------
  for (const f of document.querySelectorAll("form.filters")) {
    f.addEventListener("submit", () => {
      for (const el of f.elements) if (el.name && el.value === "") el.disabled = true;
    });
  }
  // Back to a page from the browser's cache: its fields are usable again.
  window.addEventListener("pageshow", () => {
    for (const el of document.querySelectorAll("form.filters [disabled]")) el.disabled = false;
  });

  // --- live updates -----------------------------------------------------------------------
  const stream = body.dataset.stream;
  if (!stream || !window.EventSource) return;
  const live = $("live");
  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  }

  function formatCount(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }

  // The counts of a `summary` event into the elements that show them.
  function applySummary(s) {
    const values = {
      agents: s.agents, apps: s.apps, kev: s.kev, fixable: s.fixable, overdue: s.overdue,
      "findings.total": 0,
    };
    for (const k of ["critical", "high", "medium", "low", "unknown"]) {
      const v = (s.findings && s.findings[k]) || 0;
      values["findings." + k] = v;
      values["findings.total"] += v;
    }
    let scope = null;
    if (body.dataset.company) {
      if (s.company_id !== body.dataset.company) return;
      scope = document;
    } else {
      scope = document.querySelector('[data-company="' + s.company_id + '"]');
    }
    if (!scope) return;
    for (const el of scope.querySelectorAll("[data-count]")) {
      const v = values[el.dataset.count];
      if (v !== undefined) el.textContent = formatCount(v);
    }
  }

  // The view again from the server: a quarter second after the first event of a burst, at
  // most one request at a time and one a second (a busy company sends many events), not
  // while the viewer is typing in one of its fields, and not while the tab is hidden (it
  // catches up when shown).
  const view = $("view");
  const SETTLE_MS = 250;
  const SPACING_MS = 1000;
  let timer = null;
  let inflight = false;
  let again = false;
  let failed = false;
  let lastStart = 0;
  let hiddenPending = false;

  function scheduleRefresh() {
    if (document.hidden) { hiddenPending = true; return; }
    if (timer) return;
    const wait = Math.max(SETTLE_MS, lastStart + SPACING_MS - Date.now());
    timer = setTimeout(refresh, wait);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && hiddenPending) { hiddenPending = false; scheduleRefresh(); }
  });

  function typing() {
    const a = document.activeElement;
    return a && view && view.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
  }

  async function refresh() {
    timer = null;
    if (inflight) { again = true; return; }
    if (typing()) {
      document.activeElement.addEventListener("blur", scheduleRefresh, { once: true });
      return;
    }
    // Not under an open decision dialog either: the swap would take it away.
    const dialog = view.querySelector("dialog[open]");
    if (dialog) {
      dialog.addEventListener("close", scheduleRefresh, { once: true });
      return;
    }
    inflight = true;
    lastStart = Date.now();
    try {
      const res = await fetch(location.href, {
        headers: { "X-ZeroTrace-Fragment": "1" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (res.status === 401) { signInAgain(); return; }
      if (!res.ok) throw new Error(res.status + " " + res.statusText);
      swap(await res.text());
      if (failed) { showError(""); failed = false; }
    } catch (err) {
      failed = true;
      showError("Updating this page failed (" + err.message + "); it shows what it showed before.");
    } finally {
      inflight = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }

  // Replaces the view's content, keeping the focus on the same link or button if it is there.
  function swap(html) {
    const active = document.activeElement;
    let key = null;
    if (active && view.contains(active)) key = active.getAttribute("href") || active.id || null;
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    view.replaceChildren(tpl.content);
    if (key) {
      for (const el of view.querySelectorAll("a[href], [id]")) {
        if (el.getAttribute("href") === key || el.id === key) { el.focus(); break; }
      }
    }
    view.dataset.refreshed = String(Date.now());
  }

  const events = new EventSource(stream);
  events.addEventListener("open", () => setLive("on", "live"));
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      // Refused for good (the session ended, or the company is gone): say so.
      setLive("off", "offline");
      fetch(location.href, { headers: { "X-ZeroTrace-Fragment": "1" }, credentials: "same-origin" })
        .then((res) => {
          if (res.status === 401) signInAgain();
          else showError("Live updates stopped; reload the page to resume them.");
        })
        .catch(() => showError("Live updates stopped; reload the page to resume them."));
    } else {
      setLive("off", "reconnecting…");
    }
  });
  events.addEventListener("summary", (e) => {
    try { applySummary(JSON.parse(e.data)); } catch (_) { /* not ours */ }
  });
  for (const type of ["findings.changed", "report.processed", "agent.enrolled", "knowledge.updated"]) {
    events.addEventListener(type, scheduleRefresh);
  }
  // The stream could not replay what was missed: the page is out of date as a whole.
  events.addEventListener("resync", () => location.reload());
  window.addEventListener("pagehide", () => events.close());
})();
