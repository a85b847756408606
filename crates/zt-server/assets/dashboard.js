// ZeroTrace dashboard: fills the server-rendered page from the JSON API.
// The token lives in sessionStorage (this tab only) and goes out as a Bearer header.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "zerotrace.token";
  let cursor = null;

  function token() { return sessionStorage.getItem(KEY); }

  async function api(path) {
    const res = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    if (res.status === 401) { signOut(); throw new Error("The token was not accepted."); }
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { const e = await res.json(); msg = e.error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return res;
  }

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    $("app").hidden = true; $("signout").hidden = true; $("signin").hidden = false;
    $("who").textContent = "";
  }

  async function signIn(t) {
    sessionStorage.setItem(KEY, t);
    const companies = (await (await api("/api/v1/companies")).json()).items;
    const select = $("company");
    select.replaceChildren();
    for (const c of companies) {
      const o = text("option", c.name); o.value = c.id; select.appendChild(o);
    }
    $("signin").hidden = true; $("app").hidden = false; $("signout").hidden = false;
    $("who").textContent = t.startsWith("zto_") ? "operator" : "company user";
    if (companies.length === 0) { $("summary").replaceChildren(text("p", "No companies yet.")); return; }
    await showCompany();
  }

  function company() { return encodeURIComponent($("company").value); }

  async function showCompany() {
    const s = await (await api("/api/v1/companies/" + company() + "/summary")).json();
    const cards = [
      ["agents", s.agents], ["apps", s.apps], ["critical", s.findings.critical],
      ["high", s.findings.high], ["medium", s.findings.medium], ["low", s.findings.low],
      ["unknown", s.findings.unknown], ["in KEV", s.kev], ["fixable", s.fixable],
    ];
    $("summary").replaceChildren(...cards.map(([label, n]) => {
      const card = text("div", "", "card");
      card.append(text("div", n, "n"), text("div", label, "l"));
      return card;
    }));
    cursor = null;
    $("findings").tBodies[0].replaceChildren();
    await loadFindings();
  }

  function filterQuery() {
    const q = new URLSearchParams();
    if ($("f-severity").value) q.set("severity", $("f-severity").value);
    q.set("status", $("f-status").value);
    if ($("f-kev").checked) q.set("kev", "true");
    if ($("f-fixable").checked) q.set("fixable", "true");
    if ($("f-q").value.trim()) q.set("q", $("f-q").value.trim());
    return q;
  }

  async function loadFindings() {
    const q = filterQuery();
    q.set("limit", "100");
    if (cursor) q.set("cursor", cursor);
    const page = await (await api("/api/v1/companies/" + company() + "/findings?" + q)).json();
    const body = $("findings").tBodies[0];
    for (const f of page.items) {
      const v = f.vulnerability;
      const tr = document.createElement("tr");
      const sev = text("td", ""); sev.appendChild(text("span", v.severity, "sev sev-" + v.severity));
      const vuln = text("td", v.id);
      if (v.aliases.length) { vuln.appendChild(document.createElement("br")); vuln.appendChild(text("span", v.aliases.join(", "), "alias")); }
      tr.append(sev, vuln,
        text("td", f.package.name + " " + f.package.version + " (" + f.package.ecosystem + ")"),
        text("td", f.hostname),
        text("td", f.fixed_versions.join(", ")),
        text("td", v.kev ? "yes" : ""),
        text("td", v.epss == null ? "" : v.epss.toFixed(3)),
        text("td", f.first_seen.slice(0, 19).replace("T", " ")));
      body.appendChild(tr);
    }
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    $("findings-empty").hidden = body.rows.length > 0;
  }

  async function exportCsv() {
    const q = filterQuery(); q.set("format", "csv");
    const blob = await (await api("/api/v1/companies/" + company() + "/findings?" + q)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "findings.csv"; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  function report(err) { $("signin-error").textContent = err.message; }

  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("signin-error").textContent = "";
    signIn($("token").value.trim()).catch((err) => { signOut(); report(err); });
  });
  $("signout").addEventListener("click", signOut);
  $("company").addEventListener("change", () => showCompany().catch(report));
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault(); cursor = null;
    $("findings").tBodies[0].replaceChildren();
    loadFindings().catch(report);
  });
  $("more").addEventListener("click", () => loadFindings().catch(report));
  $("export").addEventListener("click", () => exportCsv().catch(report));

  if (token()) signIn(token()).catch((err) => { signOut(); report(err); });
})();
